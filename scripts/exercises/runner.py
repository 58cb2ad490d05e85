r"""Running an exercise's grading tests: in a subprocess on a copy (`check`), or in this process on a
changed version of one function (`swapped`, for the proof that every grader grades).

`swapped(exercise, text)` compiles the file's new text and puts the new code object of the function
that holds the exercise into the live function (`f.__code__ = new`): every module that imported the
function sees the change, nothing is re-imported, and the old code comes back afterwards. A closure
inside that function (a `_backward` rule) is part of its code, so it changes too.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import ROOT, Exercise, ExerciseError


def _outer_function(tree: ast.Module, line: int) -> str:
    """Qualified name of the outermost function (in its classes) whose body holds `line`."""
    chain = sorted((node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                    and node.lineno <= line <= node.end_lineno), key=lambda node: node.lineno)
    names = []
    for node in chain:
        names.append(node.name)
        if isinstance(node, ast.FunctionDef):
            return ".".join(names)
    raise ExerciseError(f"line {line} is not inside a function")


def _code_named(code, qualname: str):
    for const in code.co_consts:
        if hasattr(const, "co_qualname"):
            if const.co_qualname == qualname:
                return const
            found = _code_named(const, qualname)
            if found is not None:
                return found
    return None


def _live_function(module, qualname: str):
    obj = module
    for part in qualname.split("."):
        obj = vars(obj)[part]
        obj = getattr(obj, "__func__", None) or getattr(obj, "fget", None) or obj   # staticmethod, property
    while hasattr(obj, "__wrapped__"):                                              # @replaceable
        obj = obj.__wrapped__
    return obj


@contextlib.contextmanager
def swapped(exercise: Exercise, text: str):
    """Within the block, the function holding `exercise` runs the code of `text` (its file's new text)."""
    module = importlib.import_module(exercise.path[:-3].replace("/", "."))
    qualname = _outer_function(ast.parse(text), exercise.begin)
    new = _code_named(compile(text, module.__file__, "exec"), qualname)
    live = _live_function(module, qualname)
    if new is None or live.__code__.co_freevars != new.co_freevars:
        raise ExerciseError(f"{exercise.name}: cannot swap the code of {qualname}")
    old, live.__code__ = live.__code__, new
    try:
        yield
    finally:
        live.__code__ = old


class _Collector:
    """A pytest plugin that keeps the first failure's one-line message."""

    def __init__(self):
        self.failures, self.passed = [], 0

    def pytest_runtest_logreport(self, report):
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = (crash.message if crash else str(report.longrepr)).strip().splitlines()
            self.failures.append(f"{report.nodeid}: {message[0] if message else '?'}")
        elif report.when == "call" and report.passed:
            self.passed += 1


def run_in_process(exercise: Exercise, stop_at_first: bool, root: Path = ROOT) -> tuple:
    """(number passed, [one line per failure]) of the exercise's grading tests, run in this process on
    the reference backend, without shrinking hypothesis examples."""
    import pytest
    from hypothesis import Phase, settings
    from autodiff import use_backend
    if not exercise.tests:
        raise ExerciseError(f"{exercise.name}: no test is marked @pytest.mark.grades({exercise.name!r})")
    profile = getattr(settings, "_current_profile", "default")      # the profile in use (conftest: numeric)
    settings.register_profile("exercise-proof", parent=settings.get_profile(profile),
                              phases=(Phase.explicit, Phase.reuse, Phase.generate), database=None)
    settings.load_profile("exercise-proof")
    collector = _Collector()
    args = [str(root / test) for test in sorted(set(exercise.tests))]
    args += ["--grades", exercise.name, "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:terminal",
             "-p", "no:unraisableexception", "-p", "no:threadexception",   # each collects the garbage twice
             "-W", "ignore::pytest.PytestAssertRewriteWarning", "--rootdir", str(root)]
    try:
        with use_backend("reference"), contextlib.redirect_stdout(io.StringIO()):
            code = pytest.main(args + (["-x"] if stop_at_first else []), plugins=[collector])
    finally:
        settings.load_profile(profile)
    if code not in (0, 1) or (code == 0 and not collector.passed):
        collector.failures.append(f"pytest exit code {int(code)}, {collector.passed} tests passed")
    return collector.passed, collector.failures


def run_check(names: list, tests: list, root: Path) -> dict:
    """{test id: [outcome, first failure line, [exercises]]} from one pytest subprocess in `root`."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        env = dict(os.environ, NUMPY_DL_LAB_BACKEND="reference", PYTHONPATH=os.pathsep.join(
            [str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                   "--grades", ",".join(names), "--grades-report", str(report),
                   *sorted(set(test.split("::")[0] for test in tests))]
        run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if not report.exists():
            raise ExerciseError(f"pytest did not run in {root}: {(run.stderr or run.stdout).strip()[-300:]}")
        results = json.loads(report.read_text(encoding="utf-8"))
        errors = [line for line in run.stdout.splitlines() if line.startswith("ERROR ")]
        for nodeid, result in results.items():
            if result[0] == "not run":
                result[1] = errors[0] if errors else "not run"
        return results


def mutated(text: str, exercise: Exercise, old: str, new: str) -> str:
    """The file's text with `old` replaced by `new` once in the exercise's solution lines."""
    from . import replace_body
    body = "\n".join(exercise.body)
    if body.count(old) != 1:
        raise ExerciseError(f"{exercise.name}: mutation {old!r} occurs {body.count(old)} times in the solution, "
                            f"expected once")
    return replace_body(text, exercise, body.replace(old, new).split("\n"))


def prove(exercise: Exercise, mutations: list, root: Path = ROOT) -> dict:
    """Blanked, its grading tests must fail; as written, pass; with each mutation, fail.
    -> {'blank': first failure or '', 'reference': [failures], 'mutants': [(old, new, first failure or '')]}"""
    from . import blanked
    text = (root / exercise.path).read_text(encoding="utf-8")
    with swapped(exercise, blanked(text, exercise)):
        _, blank = run_in_process(exercise, stop_at_first=True, root=root)
    _, reference = run_in_process(exercise, stop_at_first=False, root=root)
    mutants = []
    for old, new in mutations:
        with swapped(exercise, mutated(text, exercise, old, new)):
            _, failures = run_in_process(exercise, stop_at_first=True, root=root)
        mutants.append((old, new, failures[0] if failures else ""))
    return {"blank": blank[0] if blank else "", "reference": reference, "mutants": mutants}
