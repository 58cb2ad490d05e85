"""Saving arrays so that nothing the user wrote is ever lost: write to a temporary file in the same
directory, flush it to disk, then rename it over the target (a rename is atomic on POSIX and Windows).
An interrupted save leaves the previous file intact, never a half-written one."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np


def atomic_write(path, write_fn, suffix: str = ".tmp") -> None:
    """Call write_fn(file_object) on a temp file next to `path`, then rename it to `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno:     # name the file the user asked for, not the temporary one
            raise type(error)(error.errno, error.strerror, path) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz_atomic(path, arrays: dict, compressed: bool = False) -> None:
    """np.savez of {name: array} written atomically."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    saver = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda f: saver(f, **arrays))


def load_npz(path) -> dict:
    """{name: array} from an .npz file, with a clear error for a missing or corrupt file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):            # np.load would guess a pickle and suggest allow_pickle
        raise ValueError(f"{path} is not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error})") from None


def save_json_atomic(path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_jsonable).encode()))


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def save_checkpoint(path, meta: dict | None = None, **sections: dict) -> None:
    """One .npz holding several named dicts of arrays (e.g. model=..., optimizer=...) and a JSON `meta`.
    Keys are stored as "section/name"."""
    arrays = {f"{section}/{name}": value for section, d in sections.items() for name, value in d.items()}
    arrays["meta.json"] = np.frombuffer(json.dumps(meta or {}, default=_jsonable).encode(), dtype=np.uint8)
    save_npz_atomic(path, arrays)


def load_checkpoint(path) -> dict:
    """The inverse of save_checkpoint: {"meta": dict, section: {name: array}, ...}."""
    arrays = load_npz(path)
    if "meta.json" not in arrays:
        raise ValueError(f"{path} is an .npz file but not a checkpoint of this project (no meta.json entry)")
    result = {"meta": json.loads(arrays.pop("meta.json").tobytes().decode())}
    for key, value in arrays.items():
        section, _, name = key.partition("/")
        result.setdefault(section, {})[name] = value
    return result
