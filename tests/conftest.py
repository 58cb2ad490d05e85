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
