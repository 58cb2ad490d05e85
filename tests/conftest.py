"""Shared test set-up: import paths, a hypothesis profile without deadlines, quiet progress bars."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("NO_PROGRESS", "1")
os.environ.setdefault("NUMPY_DL_LAB_THREADS", "1")     # BLAS sums depend on the thread count: fix it
os.environ.setdefault("MPLBACKEND", "Agg")

# numeric tests are slow per example: no deadline, few examples, no flakiness from timing
settings.register_profile("numeric", deadline=None, max_examples=20, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("numeric")

SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def fast_backend():
    """Run a test with the fast backend (tests of its kernels run in both CI modes)."""
    from autodiff import use_backend
    with use_backend("fast"):
        yield


# ------------------------------------------------------------------ exercises (scripts/exercise.py)
def pytest_addoption(parser):
    group = parser.getgroup("exercises")
    group.addoption("--grades", default=None, metavar="NAMES",
                    help="run only the tests that grade these exercises (comma-separated; 'all': any exercise)")
    group.addoption("--grades-report", default=None, metavar="FILE",
                    help="write {test id: [outcome, first line of the failure, exercises]} as JSON")


def pytest_configure(config):
    config.addinivalue_line("markers", "grades(*names): this test grades these exercises (scripts/exercise.py)")
    config.addinivalue_line("markers", "grades_proof: the proof that every exercise's grader grades (slow-ish)")
    config.addinivalue_line("markers", "backend_independent: runs once, in the default run (see _run_once)")


def _graded(item) -> list:
    return [name for marker in item.iter_markers("grades") for name in marker.args]


def _run_once(items) -> None:
    """README's test command runs the suite twice, with each backend. Tests that choose their backend
    themselves (the grading proof runs the reference engine in either run) or test no engine at all (the
    harness's fault probes: folders, signals, flags) are skipped in the reference run: it would repeat them."""
    if os.environ.get("NUMPY_DL_LAB_BACKEND") != "reference":
        return
    skip = pytest.mark.skip(reason="does not depend on the backend: runs once, in the default run")
    for item in items:
        if item.get_closest_marker("grades_proof") or item.get_closest_marker("backend_independent"):
            item.add_marker(skip)


def pytest_collection_modifyitems(config, items):
    _run_once(items)
    wanted = config.getoption("--grades")
    if wanted is None:
        return
    names = set(wanted.split(","))
    keep = [item for item in items if _graded(item) and (wanted == "all" or names & set(_graded(item)))]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


_RESULTS = {}          # test id -> [outcome, first line of the failure], for --grades-report


def pytest_runtest_logreport(report):
    if report.when == "call" or report.failed or report.skipped:
        message = ""
        if report.failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = (crash.message if crash else str(report.longrepr)).strip().splitlines()[0]
        if report.failed or report.nodeid not in _RESULTS:
            _RESULTS[report.nodeid] = [report.outcome, message]


def pytest_collection_finish(session):
    session.config._grades_items = {item.nodeid: _graded(item) for item in session.items}


def pytest_sessionfinish(session):
    path = session.config.getoption("--grades-report")
    if path:
        import json
        items = getattr(session.config, "_grades_items", {})
        report = {nodeid: [*_RESULTS.get(nodeid, ["not run", ""]), names] for nodeid, names in items.items()}
        Path(path).write_text(json.dumps(report, indent=1), encoding="utf-8")
