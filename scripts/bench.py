"""Time conv2d / conv_transpose2d / pooling / batch norm at the DCGAN-on-MNIST shapes (float32).

    python scripts/bench.py [--batch 128] [--repeats 7]

For each conv layer: milliseconds for forward+backward (median of --repeats after warm-up), GFLOP/s
counting 2*N*C_out*OH*OW*C_in*KH*KW per forward and 3x that for forward+backward (input gradient,
weight gradient), and the ratio to a large float32 np.matmul measured in the same run; also the
median CPU time (all threads) and the fastest repeat, which say more when the machine is shared
(then wall-clock medians swing by 3-5x, and OpenBLAS threads waiting for a core burn CPU time).
All layers have a bias, as in the DCGAN; the D conv1 "real" row has no input gradient (real images).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from autodiff import Tensor                                                      # noqa: E402
from autodiff.conv import conv2d, conv_transpose2d, max_pool2d, avg_pool2d     # noqa: E402
from autodiff.norm import batch_norm                                            # noqa: E402


def median_ms(fn, repeats: int, warmup: int = 2, cpu: list = None) -> float:
    """Median wall-clock milliseconds of fn() after warm-up; appends the median CPU milliseconds
    (all threads) and the fastest wall-clock time to `cpu` if given (both steadier than the median
    when other processes share the machine)."""
    for _ in range(warmup):
        fn()
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu += [1e3 * float(np.median(cpu_times)), 1e3 * min(times)]
    return 1e3 * float(np.median(times))


def matmul_gflops(repeats: int, n: int = 2048) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    return 2 * n ** 3 / median_ms(lambda: a @ b, repeats) / 1e6


def conv_case(name, kind, N, C_in, C_out, H, K, stride, padding, input_grad, repeats, rng):
    """Forward + backward of one layer; returns (median ms, cpu ms, min ms, forward flops)."""
    x = Tensor(rng.standard_normal((N, C_in, H, H), dtype=np.float32), requires_grad=input_grad)
    if kind == "conv":
        w = Tensor(0.05 * rng.standard_normal((C_out, C_in, K, K), dtype=np.float32), requires_grad=True)
        b = Tensor(np.zeros(C_out, np.float32), requires_grad=True)
        layer = lambda: conv2d(x, w, b, stride=stride, padding=padding)
    else:
        w = Tensor(0.05 * rng.standard_normal((C_in, C_out, K, K), dtype=np.float32), requires_grad=True)
        b = Tensor(np.zeros(C_out, np.float32), requires_grad=True)
        layer = lambda: conv_transpose2d(x, w, b, stride=stride, padding=padding)
    out = layer()
    g = rng.standard_normal(out.shape, dtype=np.float32)

    def step():
        x.grad = w.grad = b.grad = None
        layer().backward(g)
    cpu = []
    ms = median_ms(step, repeats, cpu=cpu)
    assert w.grad.dtype == np.float32 and out.dtype == np.float32
    _, _, OH, OW = out.shape
    # flops of the matmul: conv2d multiplies w (C_out, C_in*K*K) by (C_in*K*K, N*OH*OW); the
    # transposed conv is the adjoint with the roles of input and output swapped
    flops = 2 * N * C_out * OH * OW * C_in * K * K if kind == "conv" else 2 * N * C_in * H * H * C_out * K * K
    return ms, cpu[0], cpu[1], flops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    N, rng = args.batch, np.random.default_rng(0)

    peak = matmul_gflops(args.repeats)
    print(f"numpy {np.__version__}, float32, batch {N}, {os.cpu_count()} cores; "
          f"np.matmul 2048x2048: {peak:.1f} GFLOP/s")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.1f} on {os.cpu_count()} cores: other processes share "
              f"the machine, wall-clock times are inflated (compare the cpu ms column)")
    print()

    layers = [  # name, kind, C_in, C_out, H, K, stride, padding, input grad
        ("D conv1   1->32  k5 28x28 (real: no dx)", "conv", 1, 32, 28, 5, 1, 0, False),
        ("D conv1   1->32  k5 28x28 (fake: dx)", "conv", 1, 32, 28, 5, 1, 0, True),
        ("D conv2  32->64  k5 12x12", "conv", 32, 64, 12, 5, 1, 0, True),
        ("G convT 128->64  k4 s2 p1 7x7", "convT", 128, 64, 7, 4, 2, 1, True),
        ("G convT  64->1   k4 s2 p1 14x14", "convT", 64, 1, 14, 4, 2, 1, True),
    ]
    print(f"{'layer (fwd+bwd)':42s} {'ms':>8s} {'GFLOP/s':>8s} {'/matmul':>8s} {'cpu ms':>8s} {'min ms':>8s}")
    total_ms = total_cpu = total_min = total_flops = 0.0
    for name, kind, C_in, C_out, H, K, s, p, dx in layers:
        ms, cpu_ms, min_ms, flops = conv_case(name, kind, N, C_in, C_out, H, K, s, p, dx, args.repeats, rng)
        rate = 3 * flops / ms / 1e6
        print(f"{name:42s} {ms:8.2f} {rate:8.1f} {rate / peak:8.2f} {cpu_ms:8.2f} {min_ms:8.2f}")
        if "real" not in name:           # the total counts each of the four layers once (with dx)
            total_ms, total_cpu, total_min = total_ms + ms, total_cpu + cpu_ms, total_min + min_ms
            total_flops += 3 * flops
    rate = total_flops / total_ms / 1e6
    print(f"{'TOTAL of the four conv layers (with dx)':42s} {total_ms:8.2f} {rate:8.1f} {rate / peak:8.2f} "
          f"{total_cpu:8.2f} {total_min:8.2f}")
    print(f"(target: /matmul >= 0.5; PyTorch CPU does the four in about 58 ms on 2 cores)")

    print(f"\n{'other layers (fwd+bwd)':42s} {'ms':>8s}")
    for name, shape, fn in [
        ("max_pool2d 2x2 on (N,32,24,24)", (N, 32, 24, 24), lambda t: max_pool2d(t, 2)),
        ("max_pool2d 2x2 on (N,64,8,8)", (N, 64, 8, 8), lambda t: max_pool2d(t, 2)),
        ("avg_pool2d 2x2 on (N,32,24,24)", (N, 32, 24, 24), lambda t: avg_pool2d(t, 2)),
    ]:
        print(f"{name:42s} {_time_unary(fn, shape, args.repeats, rng):8.2f}")
    for C, shape in [(64, (N, 64, 7, 7)), (64, (N, 64, 14, 14)), (1024, (N, 1024))]:
        gamma = Tensor(np.ones(C, np.float32), requires_grad=True)
        beta = Tensor(np.zeros(C, np.float32), requires_grad=True)
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        fn = lambda t: batch_norm(t, gamma, beta, rm, rv, training=True)
        print(f"{'batch_norm train on ' + str(shape).replace(' ', ''):42s} "
              f"{_time_unary(fn, shape, args.repeats, rng):8.2f}")


def _time_unary(fn, shape, repeats, rng) -> float:
    x = Tensor(rng.standard_normal(shape, dtype=np.float32), requires_grad=True)
    g = rng.standard_normal(fn(x).shape, dtype=np.float32)

    def step():
        x.grad = None
        fn(x).backward(g)
    return median_ms(step, repeats)


if __name__ == "__main__":
    main()
