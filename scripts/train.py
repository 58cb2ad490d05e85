#!/usr/bin/env python
"""Train any model of the project:  python scripts/train.py MODEL [flags]   (MODEL --help for its flags)

Every run writes into --out DIR (default runs/<model>-<time>): metrics.json, samples.npz or the
RL metrics, checkpoint.npz (Ctrl-C saves it; --resume DIR continues exactly) and PNG figures.
`--seeds 0-9 --workers 2 --out DIR` runs one process per seed into DIR/seed-S/ and writes
DIR/summary.json and DIR/summary.png (see nets/sweep.py).
Exit codes: 0 done, 2 usage error, 3 training diverged (non-finite loss), 130 interrupted (checkpoint saved).
"""
import argparse
import importlib
import json
import os
import signal
import sys

RL_COMMANDS = ("dqn", "reinforce", "es", "actor-critic")
# The RL agents' networks are tiny: BLAS threads only add overhead there, and with one thread the
# float results (so the whole training run) do not depend on the machine's core count. This must be
# set before NumPy is imported; an explicit OPENBLAS_NUM_THREADS from the user wins.
if len(sys.argv) > 1 and sys.argv[1] in RL_COMMANDS:
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))                   # scripts/cli
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, if not installed

import numpy as np  # noqa: E402

from nets import rundir  # noqa: E402
from nets.flags import OneLineParser, parse_seeds  # noqa: E402
from nets.sweep import watch_parent  # noqa: E402
from nets.harness import STOP_SIGNALS, TrainingDiverged, UsageError  # noqa: E402

# subcommand -> module in scripts/cli that registers it
COMMANDS = {
    "vae": "cli.vae", "cvae": "cli.vae",
    "dcgan": "cli.dcgan", "wgan-gp": "cli.wgan_gp",
    "flow": "cli.flow",
    "conv-vae": "cli.conv_vae",
    "revnet": "cli.revnet",
    "char-lm": "cli.char_lm", "seq-memory": "cli.char_lm",
    "made": "cli.autoregressive", "pixelcnn": "cli.autoregressive",
    "dqn": "cli.rl", "reinforce": "cli.rl", "es": "cli.rl", "actor-critic": "cli.rl",
    "tabular": "cli.tabular",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="MODEL", required=True)
    for module_name in dict.fromkeys(COMMANDS.values()):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:       # that family has not landed yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    name = f"train.py {args.command}"
    # outside the training loop SIGTERM and SIGHUP stop the command like Ctrl-C (its folder is cleaned up)
    previous = {s: signal.signal(s, interrupt) for s in STOP_SIGNALS if s != signal.SIGINT}
    try:
        if args.seeds is not None:
            return run_many(args, argv)
        watch_parent()
        start(args)
        with np.errstate(all="ignore"):          # a diverging loss is reported once, by the harness
            args.run(args)
    except UsageError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"{name}: diverged: {error}", file=sys.stderr)
        return 3
    except OSError as error:                     # a filesystem fault outside a checkpoint write
        where = f"{error.filename}: " if error.filename else ""
        print(f"{name}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{name}: error: out of memory; use smaller sizes (--batch-size, --hidden, ...)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        held = rundir.held()
        kept = ("the last periodic checkpoint stays in " + held[-1]
                if held and os.path.exists(os.path.join(held[-1], "checkpoint.npz")) else "no checkpoint was written")
        print(f"{name}: aborted; {kept}", file=sys.stderr)
        return 130
    finally:
        rundir.release_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def interrupt(signum, frame):
    """SIGTERM or SIGHUP outside the training loop: stop as Ctrl-C does, once (a repeat would cut the
    clean-up short)."""
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt


def start(args) -> None:
    """The engine and the thread count of a single run: a resumed run takes its own (resume is exact)."""
    from autodiff import backend_from_environment, use_backend
    from nets.harness import read_checkpoint
    from nets.threads import configure_threads
    requested = args.threads or ("1" if args.command in RL_COMMANDS else None)
    saved = {}
    if args.resume:
        try:
            saved = read_checkpoint(args.resume)["meta"]
        except UsageError:
            pass                              # the command itself reports a bad --resume
    requested = requested or saved.get("threads")
    use_backend(args.backend or saved.get("backend") or backend_from_environment())
    try:
        args.thread_count = configure_threads(requested)
    except ValueError as error:
        raise UsageError(f"--threads: {error}") from None


def summary_metrics(module, model: str):
    """The module's headline metrics {key: "lower" | "higher"} for `model` (SUMMARY_METRICS, either keyed by
    model name or shared by the module's commands); None for the RL agents, whose summary is built in."""
    table = getattr(module, "SUMMARY_METRICS", None)
    if table is None or model in RL_COMMANDS:
        return None
    return table.get(model, table) if all(isinstance(v, dict) for v in table.values()) else table


def run_many(args, argv) -> int:
    """--seeds: one process per seed (nets.sweep), then DIR/summary.json and DIR/summary.png. A new sweep
    records its flags in DIR/sweep.json; a resumed one runs every seed with the recorded flags."""
    from nets import sweep
    out = args.resume or args.out
    if out is None:
        raise UsageError("--seeds needs --out DIR (or --resume DIR to continue a multi-seed run)")
    seeds, flags = parse_seeds(args.seeds), sweep.without_sweep_flags(argv)
    if args.resume:
        if sweep.unrecorded(out):                 # a sweep from before sweep.json: its flags are the ones given now
            print(f"{out}: no sweep.json (an older sweep): recording the flags given now", file=sys.stderr)
            sweep.record(out, seeds, flags)
        saved = sweep.recorded(out)
        check_same_flags(out, saved, args, flags, seeds)
        flags = [saved["command"], *saved["flags"]]
        rundir.claim(out, "--resume", fresh=False)
    else:
        rundir.claim(out)                         # a folder in use or holding a run is refused
        sweep.record(out, seeds, flags)
    module = importlib.import_module(COMMANDS[args.command])
    headline = summary_metrics(module, args.command)
    codes = sweep.run_seeds(os.path.abspath(__file__), flags, seeds, out, args.workers, rl=headline is None)
    summary = sweep.write_summary(out, args.command, seeds, headline)
    sweep.save_summary_figure(os.path.join(out, "summary.png"), out, summary)
    failed = {s: c for s, c in codes.items() if c != 0}
    print(json.dumps({"out": out, "finished": len(summary["seeds"]), "of": len(seeds), "failed": failed,
                      "fractions": summary["fractions"],
                      "statistics": {k: {m: v.get(m) for m in ("median", "iqm", "iqm_95ci")}
                                     for k, v in summary["statistics"].items()}}))
    return 0 if not failed and not summary["unfinished_seeds"] else (130 if 130 in failed.values() else 1)


def check_same_flags(out: str, saved: dict, args, flags: list, seeds: list) -> None:
    """A resumed sweep runs with its recorded flags: a flag given again must have the recorded value."""
    if saved["command"] != args.command:
        raise UsageError(f"--resume {out}: that folder holds a {saved['command']} sweep, not {args.command}")
    if seeds != saved["seeds"]:
        raise UsageError(f"--seeds {args.seeds} differs from the sweep's {saved['seeds']} (recorded in "
                         f"{out}/sweep.json)")
    before = vars(build_parser().parse_args([saved["command"], *saved["flags"]]))
    for key, value in vars(build_parser().parse_args(flags)).items():
        if value is not None and key not in ("run", "command", "workers") and value != before.get(key):
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} {value} differs from the sweep's {before.get(key)} (recorded in "
                             f"{out}/sweep.json); a sweep resumes with its own flags")


if __name__ == "__main__":
    sys.exit(main())
