"""autodiff.fast.parallel (the fast backend's threads): blocks cover every index once, errors come back, and every op that uses the
engine's threads gives the same forward values and gradients with 1 and with 2-3 threads."""
import threading
import time

import numpy as np
import pytest

import nets
from autodiff import Tensor
from autodiff.fast import parallel
from autodiff import functional as F

pytestmark = pytest.mark.usefixtures("fast_backend")


@pytest.fixture
def threads():
    """Run a test body with n engine threads, then go back to one; counts the block runs."""
    runs = []
    real_run = parallel._run

    def counting_run(slices, body):
        runs.append(len(slices))
        real_run(slices, body)

    def use(n):
        parallel.set_threads(n)
        return runs
    parallel._run = counting_run
    try:
        yield use
    finally:
        parallel._run = real_run
        parallel.set_threads(1)


@pytest.mark.parametrize("n_threads", [2, 3])
@pytest.mark.parametrize("length", [1, 7, 100_000, 1_000_003])
def test_blocks_cover_every_index_exactly_once(threads, n_threads, length):
    threads(n_threads)
    seen = np.zeros(length, int)
    names, blocks = set(), []

    def body(lo, hi):
        assert 0 <= lo < hi <= length
        seen[lo:hi] += 1
        names.add(threading.current_thread().name)
        blocks.append(lo)
        time.sleep(0.001)                          # give the helpers a chance to take blocks
    parallel.for_blocks(body, length)
    assert (seen == 1).all()
    # the work is cut for every thread; which thread takes a block depends on the scheduler (on a busy
    # machine the calling thread may take them all), so only the cut and the upper bound are asserted
    assert len(blocks) >= (1 if length < 2 * parallel.MIN_BLOCK_ELEMENTS else n_threads)
    assert len(names) <= n_threads


def test_one_thread_runs_one_block_on_the_calling_thread(threads):
    runs = threads(1)
    calls = []
    parallel.for_blocks(lambda lo, hi: calls.append((lo, hi, threading.current_thread().name)), 10 ** 7)
    assert calls == [(0, 10 ** 7, threading.current_thread().name)] and runs == []


def test_an_error_in_a_block_comes_back_and_no_block_runs_after(threads):
    threads(2)
    done = []

    def body(lo, hi):
        if lo == 0:
            raise ValueError("block 0 failed")
        time.sleep(0.002)
        done.append(lo)
    with pytest.raises(ValueError, match="block 0 failed"):
        parallel.for_blocks(body, 10 ** 6)
    settled = list(done)
    time.sleep(0.05)
    assert done == settled                          # nothing ran after for_blocks returned
    parallel.for_blocks(lambda lo, hi: None, 10 ** 6)  # and the helpers still work


def test_set_threads_rejects_a_bad_count():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="expected an int >= 1"):
            parallel.set_threads(bad)


@pytest.mark.parametrize("shape", [(300, 200, 100), (64, 500, 700), (33, 300, 1000)])
def test_matmul_in_blocks_equals_numpy(threads, shape):
    runs = threads(2)
    M, K, N = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    expected = a @ b
    for left, right in [(a, b), (np.asfortranarray(a), b), (a, np.asfortranarray(b))]:
        np.testing.assert_allclose(parallel.matmul(left, right), expected, rtol=1e-5, atol=1e-4)
    out = np.full((M, N), np.nan, np.float32)
    assert parallel.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert runs, "the product was not split"
    batched = rng.standard_normal((3, M, K), dtype=np.float32)
    np.testing.assert_array_equal(parallel.matmul(batched, b), batched @ b)   # not 2-D: np.matmul


def test_the_first_products_choose_who_runs_the_threads(threads):
    runs, calls = threads(1), []
    parallel.set_threads(2, set_blas_threads=calls.append)
    assert calls == [2] and parallel.get_threads() == 1
    small = np.ones((300, 300))
    while parallel._product_flops < parallel.DECIDE_AFTER_FLOPS:
        parallel.matmul(small, small)
    assert calls == [2] and parallel.get_threads() == 1 and runs == []    # small ones: BLAS keeps them
    parallel.set_threads(2, set_blas_threads=calls.append)
    big = np.ones((1300, 1300))
    parallel.matmul(small, small)
    assert (parallel.matmul(big, big) == 1300).all()                       # 4.4 GFLOP: 99.9% big
    assert calls == [2, 2, 1] and parallel.get_threads() == 2 and len(runs) == 1   # already in blocks
    assert (parallel.matmul(big, big) == 1300).all() and len(runs) == 2


def test_an_owner_can_be_chosen_for_good(threads):
    threads(1)
    calls = []
    parallel.set_threads(2, set_blas_threads=calls.append, owner="engine")
    assert calls == [1] and parallel.get_threads() == 2 and not parallel.deciding()
    parallel.set_threads(2, set_blas_threads=calls.append, owner="blas")
    assert calls == [1, 2] and parallel.get_threads() == 1 and not parallel.deciding()
    with pytest.raises(ValueError, match="owner must be 'auto', 'blas' or 'engine', got 'gpu'"):
        parallel.set_threads(2, owner="gpu")


def _ops_with_gradients(rng):
    """(name, function of fresh inputs -> (output, inputs)) for every op that uses the engine's threads."""
    def tensor(*shape, scale=1.0):
        return Tensor(scale * rng.standard_normal(shape), requires_grad=True)
    tied = np.repeat(np.repeat(rng.standard_normal((16, 16, 16, 16)), 2, axis=2), 2, axis=3)  # 2x2 ties
    return [
        ("linear", lambda: (lambda x, w: (x @ w.T, (x, w)))(tensor(256, 300), tensor(200, 300))),
        ("conv2d", lambda: (lambda x, w, b: (F.conv2d(x, w, b, padding=2), (x, w, b)))(
            tensor(16, 8, 20, 20), tensor(12, 8, 5, 5), tensor(12))),
        ("conv2d 5x5 (Winograd)", lambda: (lambda x, w, b: (F.conv2d(x, w, b), (x, w, b)))(
            tensor(64, 32, 12, 12), tensor(64, 32, 5, 5), tensor(64))),
        ("conv_transpose2d k4 s2 (Winograd)", lambda: (lambda x, w, b: (
            F.conv_transpose2d(x, w, b, stride=2, padding=1), (x, w, b)))(
            tensor(64, 32, 7, 7), tensor(32, 32, 4, 4), tensor(32))),
        ("conv_transpose2d k3 (col2im)", lambda: (lambda x, w, b: (
            F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1), (x, w, b)))(
            tensor(64, 32, 7, 7), tensor(32, 16, 3, 3), tensor(16))),
        ("conv2d, one input channel, N last", lambda: (lambda x, w: (F.conv2d(x, w), (x, w)))(
            tensor(1024, 1, 10, 10), tensor(8, 1, 3, 3))),              # col2im in blocks of images
        ("conv_transpose2d to one channel", lambda: (lambda x, w: (F.conv_transpose2d(x, w, stride=2, padding=1), (x, w)))(
            tensor(256, 16, 14, 14), tensor(16, 1, 4, 4))),
        ("max_pool2d", lambda: (lambda x: (F.max_pool2d(x, 2), (x,)))(Tensor(tied.copy(), requires_grad=True))),
        ("max_pool2d overlapping", lambda: (lambda x: (F.max_pool2d(x, 3, stride=2, padding=1), (x,)))(
            Tensor(tied.copy(), requires_grad=True))),
        ("leaky_relu", lambda: (lambda x: (F.leaky_relu(x, 0.1), (x,)))(tensor(100, 3000))),
        ("lstm_fused", lambda: (lambda lstm, x: (lstm(x)[0], (x, *lstm.parameters())))(
            nets.LSTM(32, 128, dtype=np.float64, rng=rng), tensor(5, 64, 32))),
    ]


def test_every_threaded_op_gives_the_same_values_and_gradients(threads):
    results = {}
    for n in (1, 2):
        runs = threads(n)
        rng = np.random.default_rng(0)
        for name, make in _ops_with_gradients(rng):
            blocks_before = len(runs)
            out, inputs = make()
            g = np.random.default_rng(1).standard_normal(out.shape)
            out.backward(g)
            results.setdefault(name, []).append((out.data, [t.grad for t in inputs]))
            assert (len(runs) > blocks_before) == (n > 1), f"{name}: split into blocks only with 2 threads"
    for name, ((out1, grads1), (out2, grads2)) in results.items():
        np.testing.assert_allclose(out2, out1, rtol=1e-12, atol=1e-12, err_msg=name)
        for grad1, grad2 in zip(grads1, grads2):
            np.testing.assert_allclose(grad2, grad1, rtol=1e-12, atol=1e-12, err_msg=name)


def test_adam_steps_the_same_with_two_threads(threads):
    params = {}
    for n in (1, 2):
        runs = threads(n)
        rng = np.random.default_rng(0)
        w = nets.Parameter(rng.standard_normal((600, 1000)).astype(np.float32))
        optimizer = nets.Adam([w], lr=1e-2, weight_decay=1e-3)
        for _ in range(3):
            w.grad = rng.standard_normal(w.shape).astype(np.float32)
            optimizer.step()
        params[n] = (w.data.copy(), optimizer.state[0]["m"].copy(), optimizer.state[0]["v"].copy())
        assert (runs != []) == (n > 1)
    for one, two in zip(params[1], params[2]):
        np.testing.assert_array_equal(two, one)


@pytest.mark.parametrize("shape", [(5, 200, 64, 96), (25, 48, 64, 80), (1, 900, 128, 64)])
def test_batched_matmul_in_blocks_equals_numpy(threads, shape):
    """Blocks of the B M rows: whole products and parts of one at a block's ends."""
    runs = threads(2)
    B, M, K, N = shape
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((B, M, K), dtype=np.float32), rng.standard_normal((B, K, N), dtype=np.float32)
    out = np.full((B, M, N), np.nan, np.float32)
    assert parallel.batched_matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(parallel.batched_matmul(a.transpose(0, 2, 1).copy().transpose(0, 2, 1), b),
                               a @ b, rtol=1e-5, atol=1e-4)
    assert runs, "the products were not split"
