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
checkpoint and exits with 130; a second Ctrl-C aborts at once and the last periodic checkpoint, if any, stays.
A non-finite loss stops the run (TrainingDiverged, exit 3) without overwriting the last good checkpoint.
A filesystem error (a folder that cannot be written, a full disk) is one line and exit 2; it is found before
training where it can be (nets/rundir.py claims the folder by writing its lock file), and a failed checkpoint
write mid-run keeps the last good checkpoint. One folder holds one run: see nets/rundir.py.
Exit codes: 0 done, 2 usage error (bad flag, missing or corrupt checkpoint, filesystem), 3 diverged,
130 interrupted.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
import zlib

import numpy as np

from . import rundir
from .checkpoint import load_checkpoint, save_checkpoint, save_json_atomic
from .flags import (UsageError, add_config_flags, add_run_flags, config_from, flag_name, given_flags, hp,  # noqa: F401
                    non_negative_int, parse_seeds, positive_int, positive_ints, _show)
from autodiff import current_backend

from .init import get_rng, manual_seed

CHECKPOINT = "checkpoint.npz"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
METRICS = "metrics.json"


class TrainingDiverged(Exception):
    """A non-finite loss: printed as one line, exit code 3; the last good checkpoint is kept."""


# ==================================================================== random streams
def stream(seed: int, purpose: str, *position: int) -> np.random.Generator:
    """The generator for one purpose at one position of a run, e.g. stream(seed, "batches", epoch)."""
    key = (zlib.crc32(purpose.encode()), *(int(p) for p in position))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key)))


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
            try:
                checkpoint = read_checkpoint(args.resume)
            except UsageError as error:
                raise UsageError(f"--resume {error}") from None
            rundir.claim(self.dir, "--resume", fresh=False)
            meta = checkpoint.pop("meta")
            if meta.get("model") != model:
                raise UsageError(f"--resume {args.resume}: the checkpoint holds a {meta.get('model')!r} run, "
                                 f"not {model!r}")
            values = dict(meta["config"])
            for name, value in given.items():
                if name in may_change:
                    values[name] = value
                elif value != (tuple(values[name]) if isinstance(values[name], list) else values[name]):
                    allowed = ", ".join(flag_name(m) for m in may_change) or "nothing"
                    raise UsageError(f"{flag_name(name)} {_show(value)} differs from the resumed run's "
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
            if args.out:
                self.dir = args.out
                rundir.claim(self.dir)          # refuses a folder in use or holding a run; probes writing
            else:
                self.dir = rundir.claim_new(model)
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
    def restore(self, state: dict, **objects):
        """Load each object (model=..., optimizer=...: anything with state_dict / load_state_dict) from its
        section of a resumed checkpoint; returns save(), which checkpoints `state` and their state_dicts."""
        if self.resumed:
            for name, obj in objects.items():
                obj.load_state_dict(self.sections[name])
        return lambda: self.save(state, **{name: obj.state_dict() for name, obj in objects.items()})

    def save(self, state: dict, **sections: dict) -> None:
        """Atomically write DIR/checkpoint.npz: `state` (JSON: counters, history) and named dicts of arrays
        (model=model.state_dict(), optimizer=...). The previous checkpoint stays intact until the rename."""
        meta = {"model": self.model, "seed": self.seed, "config": dataclasses.asdict(self.config),
                "state": state, "wall_seconds": self.wall_seconds, "init_rng": get_rng().bit_generator.state,
                "threads": self.threads, "backend": self.backend}
        try:
            save_checkpoint(os.path.join(self.dir, CHECKPOINT), meta=meta, **sections)
        except OSError as error:
            kept = "the last good checkpoint stays" if self.has_checkpoint else "no checkpoint was written"
            raise UsageError(f"cannot write {error.filename or self.path(CHECKPOINT)}: {error.strerror}; "
                             f"{kept}") from None

    @property
    def has_checkpoint(self) -> bool:
        return os.path.exists(self.path(CHECKPOINT))

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
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        last_save = time.perf_counter()
        try:
            while not finished():
                before = position()
                yield before
                advance()
                self._bar.update(position() - before)
                self._report(position(), total, unit)
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

    def _report(self, done: int, total: int, unit: str) -> None:
        """For a sweep's worker (the sweep sets the variable): "done/total units" in a file, each second."""
        path = os.environ.get("NUMPY_DL_LAB_STATUS")
        if path and time.perf_counter() - getattr(self, "_reported", -1.0) >= 1.0:
            self._reported = time.perf_counter()
            try:
                with open(path, "w") as f:
                    f.write(f"{done}/{total} {unit}s")
            except OSError:
                pass

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
                if self.has_checkpoint else "no checkpoint had been written yet")
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
    if not os.path.isdir(directory):
        raise UsageError(f"{directory}: {'is not a folder' if os.path.exists(directory) else 'does not exist'}")
    if not os.path.exists(path):
        raise UsageError(f"{directory}: no {CHECKPOINT} in that folder")
    try:
        checkpoint = load_checkpoint(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise UsageError(f"{directory}: {CHECKPOINT} is not a checkpoint of this project ({error})") from None
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or not {"model", "seed", "config", "state"} <= set(meta):
        raise UsageError(f"{directory}: {CHECKPOINT} was not written by this project's run harness")
    return checkpoint
