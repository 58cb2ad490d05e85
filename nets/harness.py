r"""One way to train: the run harness that every training command (and any notebook) uses.

A `Run` owns what is the same for every model: the output folder, the configuration and its flags, named
random streams, atomic checkpoints with exact resume, one Ctrl-C mechanism, a progress bar, a stop on a
non-finite loss, and strict-JSON metrics. The model files own everything else (model, loss, training step).

    run = Run("vae", args, VAEConfig, may_change=("epochs",))
    state = run.state or {"epoch": 0}
    for epoch in run.loop(state["epoch"], run.config.epochs, save):
        stats = vae.train_epoch(model, optimizer, x_train, run.stream("train", epoch), run.config)
        run.check_finite(stats["loss"], f"epoch {epoch + 1}", hint="--lr")
        state["epoch"] = epoch + 1

Random streams. Every random number comes from `stream(seed, purpose, *position)`, a generator derived
by np.random.SeedSequence from the run's seed, a purpose ("init", "train", "samples", ...) and a position
(epoch, batch, ...). Streams of different purposes, positions or seeds are independent (no `seed + k`
collisions between neighbouring seeds), and a resumed run draws exactly the numbers it would have drawn,
with no generator state to save.

Resume policy. `--resume DIR` continues from DIR/checkpoint.npz with the saved configuration. A flag given
again with the saved value is fine; a flag in `may_change` (the budget: epochs, iterations, episodes)
replaces the saved value; any other changed flag is refused with one line. Resuming with the same budget
reproduces an uninterrupted run bit for bit.

Stopping. Ctrl-C (or SIGTERM) lets the current unit (epoch, iteration, episode) finish, saves a
checkpoint and exits with 130; a second Ctrl-C aborts at once and the last periodic checkpoint stays.
A non-finite loss stops the run (TrainingDiverged, exit 3) without overwriting the last good checkpoint.
Exit codes: 0 done, 2 usage error (bad flag, missing or corrupt checkpoint), 3 diverged, 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import signal
import sys
import time
import zlib

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint, save_json_atomic
from autodiff import current_backend

from .init import get_rng, manual_seed

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"


class UsageError(Exception):
    """A problem with the user's flags or files: printed as one line, exit code 2, no traceback."""


class TrainingDiverged(Exception):
    """A non-finite loss: printed as one line, exit code 3; the last good checkpoint is kept."""


# ==================================================================== random streams
def stream(seed: int, purpose: str, *position: int) -> np.random.Generator:
    """The generator for one purpose at one position of a run, e.g. stream(seed, "batches", epoch)."""
    key = (zlib.crc32(purpose.encode()), *(int(p) for p in position))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


# ==================================================================== configuration and flags
def hp(default, help: str, *, check: str | None = None, choices: tuple | None = None):
    """A hyperparameter: a dataclass field with its default, one help line, and an optional range
    `check` ("positive", "non_negative", "fraction" = in [0, 1]) or `choices` that its flag enforces.
    Tuple fields (layer widths) take one or more positive integers; check="may_be_empty" also allows none
    (e.g. `--hidden` alone: no hidden layer)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "choices": choices})


_CHECKS = {"positive": (lambda v: v > 0, "a number > 0"), "non_negative": (lambda v: v >= 0, "a number >= 0"),
           "fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]")}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_run_flags(parser: argparse.ArgumentParser, mnist: bool = False) -> None:
    """--seed, --out, --resume (and --data-dir for MNIST models), plus the multi-seed --seeds/--workers."""
    parser.add_argument("--seed", type=non_negative_int, default=None,
                        help="drives every random stream of the run (weights, data order, noise, env); default 0")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<model>-<time>)")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run saved in DIR/checkpoint.npz (writes into DIR)")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="run one process per seed, e.g. 0-9 or 3,7,11: DIR/seed-S/ each, then "
                             "DIR/summary.json and summary.png (needs --out; --resume DIR continues them)")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes at once with --seeds")
    parser.add_argument("--backend", choices=("fast", "reference"), default=None,
                        help="the engine: fast (default; $NUMPY_DL_LAB_BACKEND) or reference (the plain code, to "
                             "read and step through); a resumed run keeps its own")
    parser.add_argument("--threads", default=None, metavar="N|auto",
                        help="threads, for the BLAS library or the engine (default: $NUMPY_DL_LAB_THREADS, else "
                             "auto = free cores; the RL agents and --seeds workers use 1); see nets/threads.py")
    if mnist:
        parser.add_argument("--data-dir", default=None,
                            help="folder with the standard MNIST files (IDX or mnist.npz); "
                                 "default: the 5,000 digits embedded in the package")


def add_config_flags(parser: argparse.ArgumentParser, config_cls, skip: tuple = ()) -> None:
    """One --flag per field of the config dataclass. Defaults are None ("not given") so that a resumed
    run can tell which flags the user repeated; the help text shows the real default."""
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        meta, kind = field.metadata, str(field.type)
        text = f"{meta.get('help', '')} (default: {_show(field.default)})"
        if kind == "bool":
            parser.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=text)
        elif kind == "tuple":
            nargs = "*" if meta.get("check") == "may_be_empty" else "+"
            parser.add_argument(_flag(field.name), type=positive_ints, nargs=nargs, default=None, metavar="N",
                                help=text)
        else:
            convert = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float,
                       "str | None": str}[kind]
            parser.add_argument(_flag(field.name), type=convert, default=None, choices=meta.get("choices"),
                                metavar=None if meta.get("choices") else "X", help=text)


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def config_from(config_cls, values: dict):
    """The config dataclass from a dict (e.g. a checkpoint's JSON: lists become tuples again), with each
    field's range checked: UsageError names the flag, what was expected and what was found."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise UsageError(f"unknown setting(s) {sorted(unknown)} for {config_cls.__name__}")
    values = {k: tuple(v) if str(fields[k].type) == "tuple" and v is not None else v for k, v in values.items()}
    config = config_cls(**values)
    for name, field in fields.items():
        value, check = getattr(config, name), field.metadata.get("check")
        if check and check != "may_be_empty" and value is not None:
            ok, expected = _CHECKS[check]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
                raise UsageError(f"{_flag(name)}: expected {expected}, got {value}")
        if field.metadata.get("choices") and value not in field.metadata["choices"]:
            raise UsageError(f"{_flag(name)}: expected one of {field.metadata['choices']}, got {value!r}")
    return config


def given_flags(config_cls, args) -> dict:
    """{field: value} for the config flags the user gave on the command line."""
    given = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name, None)
        if value is not None:      # tuple flags: "--hidden 64 64" or "--hidden 64,64" (lists of lists)
            given[field.name] = tuple(v for part in value for v in part) if isinstance(value, list) else value
    return given


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_ints(text: str) -> list[int]:
    """'64' -> [64]; '32,64,128' -> [32, 64, 128] (each > 0)."""
    return [positive_int(part) for part in text.split(",") if part.strip()]


def parse_seeds(text: str) -> list[int]:
    """'0-9' -> [0..9]; '3,7,11' -> [3, 7, 11]; '0-2,10' -> [0, 1, 2, 10]. Duplicates are an error."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            seeds += list(range(int(low), int(high) + 1)) if dash else [int(part)]
        except ValueError:
            raise UsageError(f"--seeds: expected a list like 0-9 or 3,7,11, got {text!r}") from None
        if dash and int(high) < int(low):
            raise UsageError(f"--seeds: the range {part!r} is empty")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds


# ==================================================================== strict JSON
def strict_json(value, path: str = "", found: list | None = None):
    """A copy of `value` that any strict JSON parser reads: NaN and +-inf become None (their paths are
    appended to `found`), NumPy scalars and arrays become Python numbers and lists."""
    found = [] if found is None else found
    if isinstance(value, dict):
        return {str(k): strict_json(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [strict_json(v, f"{path}[{i}]", found) for i, v in enumerate(list(value))]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        found.append(path)
        return None
    return value


# ==================================================================== the run
class Run:
    """One training run: its folder, configuration, streams, checkpoints, loop and metrics."""

    def __init__(self, model: str, args, config_cls, may_change: tuple = ()):
        self.model, self.config_cls = model, config_cls
        given = given_flags(config_cls, args)
        self.state, self.sections = None, {}
        if getattr(args, "resume", None):
            self.dir = args.resume
            checkpoint = read_checkpoint(args.resume)
            meta = checkpoint.pop("meta")
            if meta.get("model") != model:
                raise UsageError(f"--resume {args.resume}: the checkpoint holds a {meta.get('model')!r} run, "
                                 f"not {model!r}")
            values = dict(meta["config"])
            for name, value in given.items():
                if name in may_change:
                    values[name] = value
                elif value != (tuple(values[name]) if isinstance(values[name], list) else values[name]):
                    allowed = ", ".join(_flag(m) for m in may_change) or "nothing"
                    raise UsageError(f"{_flag(name)} {_show(value)} differs from the resumed run's "
                                     f"{_show(values[name])}; on resume only {allowed} may change")
            if args.seed is not None and args.seed != meta["seed"]:
                raise UsageError(f"--seed {args.seed} differs from the resumed run's {meta['seed']}")
            if getattr(args, "backend", None) and args.backend != meta.get("backend", args.backend):
                raise UsageError(f"--backend {args.backend} differs from the resumed run's {meta['backend']}; a resumed "
                                 f"run keeps its backend (so that it continues bit for bit)")
            self.seed, self.state, self.sections = int(meta["seed"]), meta["state"], checkpoint
            self.config = config_from(config_cls, values)
            already = float(meta.get("wall_seconds", 0.0))
            if "init_rng" in meta:
                get_rng().bit_generator.state = meta["init_rng"]
        else:
            self.seed = 0 if args.seed is None else int(args.seed)
            self.config = config_from(config_cls, given)
            self.dir = args.out or os.path.join("runs", f"{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
            if os.path.exists(os.path.join(self.dir, CHECKPOINT)):
                raise UsageError(f"{self.dir} already holds a run (checkpoint.npz): continue it with "
                                 f"--resume {self.dir}, or choose another --out")
            os.makedirs(self.dir, exist_ok=True)
            manual_seed(int(stream(self.seed, "init").integers(2 ** 63)))   # the layers' initial weights
            already = 0.0
        self.resumed = self.state is not None
        self.threads = getattr(args, "thread_count", None)     # threads, saved so a resume uses the same
        self.backend = current_backend()                       # likewise the engine (scripts/train.py sets it)
        self._started, self._already = time.perf_counter(), already
        self._stop_requested, self._bar = False, None

    # ---------------------------------------------------------------- streams and time
    def stream(self, purpose: str, *position: int) -> np.random.Generator:
        return stream(self.seed, purpose, *position)

    @property
    def wall_seconds(self) -> float:
        """Seconds of this run, summed over resumed sessions."""
        return self._already + time.perf_counter() - self._started

    # ---------------------------------------------------------------- checkpoints
    def save(self, state: dict, **sections: dict) -> None:
        """Atomically write DIR/checkpoint.npz: `state` (JSON: counters, history) and named dicts of arrays
        (model=model.state_dict(), optimizer=...). The previous checkpoint stays intact until the rename."""
        meta = {"model": self.model, "seed": self.seed, "config": dataclasses.asdict(self.config),
                "state": state, "wall_seconds": self.wall_seconds, "init_rng": get_rng().bit_generator.state,
                "threads": self.threads, "backend": self.backend}
        save_checkpoint(os.path.join(self.dir, CHECKPOINT), meta=meta, **sections)

    # ---------------------------------------------------------------- the loop
    def loop(self, start: int, total: int, save, unit: str = "epoch", every_seconds: float = 30.0):
        """Yield the unit indices start..total-1 (epochs, iterations, ...). After each unit: the progress
        bar moves, a pending Ctrl-C saves and exits 130, and `save()` runs every `every_seconds`; at the
        end `save()` runs once more."""
        if total < start:
            raise UsageError(f"--{unit}s {total} is less than the {start} {unit}s the run in {self.dir} already has")
        position = {"done": start}

        def advance():
            position["done"] += 1
        yield from self._units(lambda: position["done"] >= total, lambda: position["done"], total, save, unit,
                               every_seconds, advance)

    def loop_until(self, finished, position, total: int, save, unit: str = "episode", every_seconds: float = 30.0):
        """Like loop() for budgets known only as they are used (RL: episodes or env steps): yields until
        `finished()`, moving the bar to `position()` (out of `total`) after each unit."""
        yield from self._units(finished, position, total, save, unit, every_seconds, lambda: None)

    def _units(self, finished, position, total, save, unit, every_seconds, advance):
        from tqdm import tqdm
        self._bar = tqdm(total=total, initial=position(), desc=f"{self.model} {unit}s", dynamic_ncols=True,
                         disable=bool(os.environ.get("NO_PROGRESS")), mininterval=0.5)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        last_save = time.perf_counter()
        try:
            while not finished():
                before = position()
                yield before
                advance()
                self._bar.update(position() - before)
                if self._stop_requested:
                    self._bar.close()
                    save()
                    print(f"interrupted: checkpoint saved; continue with --resume {self.dir}", file=sys.stderr)
                    raise SystemExit(130)
                if time.perf_counter() - last_save > every_seconds:
                    save()
                    last_save = time.perf_counter()
            save()
        finally:
            self._bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_requested = False

    def _on_signal(self, signum, frame):
        if self._stop_requested:
            raise KeyboardInterrupt                     # second Ctrl-C: abort now
        self._stop_requested = True
        print("\nstopping after this unit to save a checkpoint (Ctrl-C again: abort now)", file=sys.stderr)

    def show(self, **values) -> None:
        """Numbers beside the progress bar, e.g. run.show(loss=1.23)."""
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()},
                                  refresh=False)

    def check_finite(self, value: float, where: str, hint: str = "--lr") -> None:
        """Stop the run (TrainingDiverged, exit 3) if a loss is NaN or infinite."""
        if math.isfinite(float(value)):
            return
        kept = ("the last good checkpoint is kept in " + self.dir
                if os.path.exists(os.path.join(self.dir, CHECKPOINT)) else "no checkpoint had been written yet")
        setting = getattr(self.config, hint.lstrip("-").replace("-", "_"), None)
        cause = f"{hint} {setting} is too large" if setting is not None else hint
        raise TrainingDiverged(f"{where}: the loss is {float(value)}, training stopped; likely cause: {cause}; "
                               f"{kept}")

    # ---------------------------------------------------------------- outputs
    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def write_metrics(self, metrics: dict) -> dict:
        """Write DIR/metrics.json (model, seed, config, wall_seconds first) as strict JSON; non-finite
        numbers become null and their keys are listed under "nonfinite_as_null"."""
        metrics = {"model": self.model, "seed": self.seed, "config": dataclasses.asdict(self.config),
                   "wall_seconds": self.wall_seconds, "backend": self.backend, "threads": self.threads, **metrics}
        found: list = []
        clean = strict_json(metrics, found=found)
        if found:
            clean["nonfinite_as_null"] = found
        save_json_atomic(self.path(METRICS), clean)
        return clean


def read_checkpoint(directory: str) -> dict:
    """DIR/checkpoint.npz as {"meta": ..., section: {...}}; a missing, corrupt or foreign file is a UsageError."""
    path = os.path.join(directory, CHECKPOINT)
    if not os.path.exists(path):
        raise UsageError(f"--resume {directory}: no {CHECKPOINT} in that folder")
    try:
        checkpoint = load_checkpoint(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"--resume {directory}: {CHECKPOINT} is not a checkpoint of this project ({error})") \
            from None
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or not {"model", "seed", "config", "state"} <= set(meta):
        raise UsageError(f"--resume {directory}: {CHECKPOINT} was not written by this project's run harness")
    return checkpoint
