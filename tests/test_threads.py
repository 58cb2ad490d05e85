"""nets.threads: the BLAS thread policy (explicit request, environment variable, "auto" = the cores this process may use)."""
import numpy as np
import pytest

from nets import threads


def test_explicit_request_and_environment_variable(monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.choose_threads() == 3                 # the environment variable when no argument
    assert threads.choose_threads(1) == 1                # an explicit request wins
    assert threads.choose_threads("2") == 2
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(ValueError, match=r"NUMPY_DL_LAB_THREADS.*>= 1 or 'auto'.*'many'"):
        threads.choose_threads()
    with pytest.raises(ValueError, match=r"threads.*got 0"):
        threads.choose_threads(0)


def test_configure_threads_gives_the_threads_to_blas_until_big_products_hand_them_to_the_engine(fast_backend):
    pytest.importorskip("threadpoolctl")
    from threadpoolctl import threadpool_limits
    from autodiff.fast import parallel
    before = threads.current_threads()
    blas = [count for library, count in before.items() if library != "engine"]
    if not blas:
        pytest.skip("no BLAS library that threadpoolctl can control")
    blas_counts = lambda: {count for library, count in threads.current_threads().items() if library != "engine"}
    try:
        assert threads.configure_threads(2) == 2
        assert parallel.get_threads() == 1 and blas_counts() == {2}       # the BLAS library's, first
        small = np.ones((256, 256), np.float32)
        for _ in range(100):
            assert (parallel.matmul(small, small) == 256).all()           # 3.4 GFLOP of small products
        assert parallel.get_threads() == 1 and blas_counts() == {2}       # decided: BLAS keeps them
        threads.configure_threads(2)
        big = np.ones((1024, 1024), np.float32)
        assert (parallel.matmul(big, big) == 1024).all()                  # 2.1 GFLOP in one product
        assert parallel.get_threads() == 2 and blas_counts() == {1}       # the engine's now
        assert (parallel.matmul(big, big) == 1024).all()                  # in blocks
    finally:
        parallel.set_threads(1)
        threadpool_limits(limits=max(blas), user_api="blas")
