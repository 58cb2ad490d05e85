r"""Flags of the training commands: hyperparameters declared once (`hp`), one --flag per field with its range
checked at parse time, and a parser whose errors are one line (no usage block) with exit code 2.

    @dataclass
    class VAEConfig:
        epochs: int = hp(50, "passes over the training set", check="positive")

gives `--epochs N`; `--epochs -3` stops with `train.py vae: --epochs must be an integer >= 1, got -3`.
Ranges (`check`): "positive" (integers >= 1, numbers > 0), "non_negative" (>= 0), "fraction" (in [0, 1]);
a float without one must still be finite. A config read back from a checkpoint is checked the same way
(`config_from`), so there is one copy of each range.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys


class UsageError(Exception):
    """A problem with the user's flags or files: printed as one line, exit code 2, no traceback."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line `prog: what is wrong` and exit code 2 (no usage block)."""

    def error(self, message: str):
        if message.startswith("argument "):                # "argument --epochs: must be ..." -> "--epochs must be ..."
            flag, _, rest = message[len("argument "):].partition(": ")
            message = f"{flag.split('/')[-1]}{' ' if rest.startswith('must') else ': '}{rest}"
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


# ==================================================================== ranges
_RANGES = {"positive": (lambda v: v > 0, ">= 1", "> 0"), "non_negative": (lambda v: v >= 0, ">= 0", ">= 0"),
           "fraction": (lambda v: 0 <= v <= 1, "in [0, 1]", "in [0, 1]")}


def range_problem(value, kind: type, check: str | None) -> str | None:
    """None if `value` (an int or float field's value) is in range, else "must be ..., got VALUE"."""
    ok, int_text, float_text = _RANGES.get(check, (lambda v: True, "", ""))
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
            return f"must be an integer {int_text}".rstrip() + f", got {value}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        return f"must be a {'finite ' if check is None else ''}number {float_text}".rstrip() + f", got {value}"
    return None


def number_flag(kind: type, check: str | None):
    """An argparse type: text -> int or float, in the range `check`, or one line saying what was expected."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = text
        problem = range_problem(value, kind, check)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    convert.__name__ = kind.__name__
    return convert


non_negative_int = number_flag(int, "non_negative")
positive_int = number_flag(int, "positive")


def positive_ints(text: str) -> list[int]:
    """'64' -> [64]; '32,64,128' -> [32, 64, 128] (each >= 1)."""
    return [positive_int(part) for part in text.split(",") if part.strip()]


def thread_count(text: str) -> str:
    """--threads: 'auto' or an integer >= 1 (kept as text; nets/threads.py resolves it)."""
    if text.strip().lower() == "auto":
        return "auto"
    positive_int(text)
    return text


# ==================================================================== configuration and flags
def hp(default, help: str, *, check: str | None = None, choices: tuple | None = None):
    """A hyperparameter: a dataclass field with its default, one help line, and an optional range
    `check` ("positive", "non_negative", "fraction" = in [0, 1]) or `choices` that its flag enforces.
    Tuple fields (layer widths) take one or more positive integers; check="may_be_empty" also allows none
    (e.g. `--hidden` alone: no hidden layer)."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "choices": choices})


def flag_name(name: str) -> str:
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
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N|auto",
                        help="threads, for the BLAS library or the engine (default: $NUMPY_DL_LAB_THREADS, else "
                             "auto = the cores this process may use; the RL agents and --seeds workers use 1); "
                             "results can differ in the last bits between thread counts: pass --threads N to "
                             "compare runs bit for bit")
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
        text = meta.get("help", "")
        if "default" not in text:
            text += f" (default: {_show(field.default)})"
        if kind == "bool":
            parser.add_argument(flag_name(field.name), action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif kind == "tuple":
            nargs = "*" if meta.get("check") == "may_be_empty" else "+"
            parser.add_argument(flag_name(field.name), type=positive_ints, nargs=nargs, default=None, metavar="N",
                                help=text)
        else:
            base = {"int": int, "float": float, "str": str}[kind.replace(" | None", "")]
            convert = str if base is str else number_flag(base, meta.get("check"))
            parser.add_argument(flag_name(field.name), type=convert, default=None, choices=meta.get("choices"),
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
        value, kind = getattr(config, name), str(field.type).replace(" | None", "")
        if kind in ("int", "float") and value is not None:
            problem = range_problem(value, int if kind == "int" else float, field.metadata.get("check"))
            if problem:
                raise UsageError(f"{flag_name(name)} {problem}")
        if field.metadata.get("choices") and value not in field.metadata["choices"]:
            raise UsageError(f"{flag_name(name)}: expected one of {field.metadata['choices']}, got {value!r}")
    return config


def given_flags(config_cls, args) -> dict:
    """{field: value} for the config flags the user gave on the command line."""
    given = {}
    for field in dataclasses.fields(config_cls):
        value = getattr(args, field.name, None)
        if value is not None:      # tuple flags: "--hidden 64 64" or "--hidden 64,64" (lists of lists)
            given[field.name] = tuple(v for part in value for v in part) if isinstance(value, list) else value
    return given


MAX_SEEDS = 10_000


def parse_seeds(text: str) -> list[int]:
    """'0-9' -> [0..9]; '3,7,11' -> [3, 7, 11]; '0-2,10' -> [0, 1, 2, 10]. Duplicates are an error."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            if dash and int(high) - int(low) >= MAX_SEEDS:
                raise UsageError(f"--seeds: at most {MAX_SEEDS} seeds, got the range {part!r}")
            seeds += list(range(int(low), int(high) + 1)) if dash else [int(part)]
        except ValueError:
            raise UsageError(f"--seeds: expected a list like 0-9 or 3,7,11, got {text!r}") from None
        if dash and int(high) < int(low):
            raise UsageError(f"--seeds: the range {part!r} is empty")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds: expected distinct seeds >= 0, got {text!r}")
    return seeds
