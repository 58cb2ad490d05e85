"""nets.threads: the BLAS thread policy (explicit request, environment variable, load-aware "auto")."""
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


def test_auto_leaves_the_busy_cores_alone(monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    for busy, expected in [(0, 4), (1, 3), (3, 1), (9, 1)]:
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        assert threads.choose_threads() == expected
        assert threads.choose_threads("auto") == expected


def test_busy_cores_reads_the_share_of_non_idle_time(monkeypatch):
    """/proc/stat says 3 of 4 cores' time went to work during the interval: 3 busy cores."""
    samples = iter([(1000, 600), (1400, 700)])           # (total, idle): 400 jiffies, 100 idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores(interval=0) == 3
    def unreadable():
        raise OSError("no /proc/stat")
    monkeypatch.setattr(threads, "_cpu_times", unreadable)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.6, 1.0, 1.0))
    assert threads.busy_cores(interval=0) == 2                # the load average, rounded


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
