"""A run folder belongs to one run at a time.

`claim(DIR)` creates the folder if needed and then the lock file DIR/.lock by an exclusive create
(os.O_CREAT | os.O_EXCL: of two runs started together exactly one succeeds) holding the process id. That
create is also the write probe: a folder that is read-only, on a full disk, or a path through a file fails
here, before any training, with one line naming the path. A lock whose process is gone (a run killed with
SIGKILL or a power cut) is stale: the next run takes it over and says so. A fresh run refuses a folder that
already holds a run (checkpoint.npz, metrics.json or a sweep's sweep.json: `--resume DIR` is the way to
continue one) or other files of the user's (a run's outputs could overwrite them).
Temporary files of killed atomic writes (`NAME.<random>.tmp`, nets/checkpoint.py) are removed on claim.

`release(DIR)` (train.py calls `release_all()` when a command ends) removes the lock, and the folders the
claim created if the run left them empty: a run that failed to start leaves nothing behind.
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys
import time

from .flags import UsageError

LOCK = ".lock"
FINISHED_MARKS = ("checkpoint.npz", "metrics.json", "sweep.json")
_held: dict[str, list[str]] = {}            # claimed folder -> the folders its claim created (innermost last)


def claim(directory: str, flag: str = "--out", fresh: bool = True) -> None:
    """Make `directory` this process's run folder (see the module docstring); UsageError if it cannot be."""
    directory = os.path.normpath(directory)
    created = _make_folders(directory, flag)
    try:
        _lock(directory, flag)
    except BaseException:
        _remove_empty(created)
        raise
    _held[directory] = created
    marks = [name for name in FINISHED_MARKS if os.path.exists(os.path.join(directory, name))]
    if fresh and marks:
        release(directory)
        raise UsageError(f"{directory} already holds a run ({marks[0]}): continue it with --resume {directory}, "
                         f"or choose another --out")
    others = sorted(name for name in os.listdir(directory) if not _ours(name))
    if fresh and others:                          # the user's own files: a run's outputs could overwrite them
        release(directory)
        raise UsageError(f"{flag} {directory}: the folder holds other files ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}); choose an empty or new folder")
    for name in os.listdir(directory):
        if name.endswith(".tmp"):                 # a killed atomic write: the file it replaced is intact
            os.remove(os.path.join(directory, name))


def claim_new(model: str) -> str:
    """A new folder runs/<model>-<date>-<time>[-k], unique even for runs started in the same second (the
    exclusive mkdir decides), claimed; its path."""
    base = os.path.join("runs", f"{model}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    created = _make_folders("runs", "--out")
    for k in range(1, 10_000):
        candidate = base if k == 1 else f"{base}-{k}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        except OSError as error:
            _remove_empty(created)
            raise UsageError(f"--out {candidate}: cannot create the folder ({error.strerror})") from None
        claim(candidate)
        _held[os.path.normpath(candidate)] = created + [os.path.normpath(candidate)]
        return candidate
    raise UsageError(f"{base}: too many runs started in the same second; give --out")


def release(directory: str) -> None:
    directory = os.path.normpath(directory)
    created = _held.pop(directory, None)
    if created is None:
        return
    try:
        os.remove(os.path.join(directory, LOCK))
    except OSError:
        pass
    _remove_empty(created)


def release_all() -> None:
    for directory in list(_held):
        release(directory)


def held() -> list[str]:
    """The folders this process has claimed and not released, in order."""
    return list(_held)


atexit.register(release_all)


def _make_folders(directory: str, flag: str) -> list[str]:
    """os.makedirs(directory), returning the folders it created (outermost first); one-line errors."""
    missing, path = [], directory
    while path and not os.path.exists(path):
        missing.insert(0, path)
        path = os.path.dirname(path)
    if path and not os.path.isdir(path):
        what = "is a file" if path == directory else f"goes through {path}, which is a file"
        raise UsageError(f"{flag} {directory}: {what}, not a folder")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        _remove_empty(missing)
        raise UsageError(f"{flag} {directory}: cannot create the folder ({error.strerror})") from None
    return missing


def _lock(directory: str, flag: str) -> None:
    path = os.path.join(directory, LOCK)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            starting = owner is None and _age(path) < 5.0          # created, its pid not written yet
            if starting or (owner is not None and owner != os.getpid() and _alive(owner)):
                raise UsageError(f"{flag} {directory}: in use by another run (pid {owner}); wait for it to end "
                                 f"or choose another folder") from None
            if owner != os.getpid():                              # ours: a notebook's earlier Run, say
                print(f"{directory}: taking over the stale lock of pid {owner} (that process is gone)",
                      file=sys.stderr)
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        except OSError as error:
            raise UsageError(f"{flag} {directory}: cannot write there ({error.strerror})") from None
        try:
            os.write(fd, str(os.getpid()).encode())
            os.fsync(fd)
        except OSError as error:
            os.close(fd)
            os.remove(path)
            raise UsageError(f"{flag} {directory}: cannot write there ({error.strerror})") from None
        os.close(fd)
        return
    raise UsageError(f"{flag} {directory}: another run keeps claiming it")


def _owner(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _ours(name: str) -> bool:
    """Files a run folder may hold before its run starts: the lock, a sweep's log, progress and seed folders,
    temporary files of killed writes."""
    return name in (LOCK, "log.txt", "progress.txt") or name.endswith(".tmp") or name.startswith("seed-")


def _age(path: str) -> float:
    try:
        return time.time() - os.path.getmtime(path)
    except OSError:
        return 0.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_empty(folders: list[str]) -> None:
    for folder in reversed(folders):
        try:
            os.rmdir(folder)                      # only if empty
        except OSError:
            return
