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

from nets.harness import TrainingDiverged, UsageError, parse_seeds  # noqa: E402

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
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
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
    try:
        if args.seeds is not None:
            return run_many(args, argv)
        from autodiff import backend_from_environment, use_backend
        from nets.harness import read_checkpoint
        from nets.threads import configure_threads
        requested = args.threads or ("1" if args.model in RL_COMMANDS else None)
        saved = {}
        if args.resume:                           # the run's own threads and backend: resume is exact
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
        args.run(args)
    except UsageError as error:
        print(f"train.py {args.model}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"train.py {args.model}: diverged: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"train.py {args.model}: aborted; the last periodic checkpoint stays", file=sys.stderr)
        return 130
    return 0


def summary_metrics(module, model: str):
    """The module's headline metrics {key: "lower" | "higher"} for `model` (SUMMARY_METRICS, either keyed by
    model name or shared by the module's commands); None for the RL agents, whose summary is built in."""
    table = getattr(module, "SUMMARY_METRICS", None)
    if table is None or model in RL_COMMANDS:
        return None
    return table.get(model, table) if all(isinstance(v, dict) for v in table.values()) else table


def run_many(args, argv) -> int:
    """--seeds: one process per seed (nets.sweep), then DIR/summary.json and DIR/summary.png."""
    from nets import sweep
    out = args.resume or args.out
    if out is None:
        raise UsageError("--seeds needs --out DIR (or --resume DIR to continue a multi-seed run)")
    seeds = parse_seeds(args.seeds)
    module = importlib.import_module(COMMANDS[args.model])
    headline = summary_metrics(module, args.model)
    codes = sweep.run_seeds(os.path.abspath(__file__), argv, seeds, out, args.workers, rl=headline is None)
    summary = sweep.write_summary(out, args.model, seeds, headline)
    sweep.save_summary_figure(os.path.join(out, "summary.png"), out, summary)
    failed = {s: c for s, c in codes.items() if c != 0}
    print(json.dumps({"out": out, "finished": len(summary["seeds"]), "of": len(seeds), "failed": failed,
                      "fractions": summary["fractions"],
                      "statistics": {k: {m: v.get(m) for m in ("median", "iqm", "iqm_95ci")}
                                     for k, v in summary["statistics"].items()}}))
    return 0 if not failed and not summary["unfinished_seeds"] else (130 if 130 in failed.values() else 1)


if __name__ == "__main__":
    sys.exit(main())
