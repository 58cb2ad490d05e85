"""Benchmark the engine on the project's training workloads (float32, synthetic data of MNIST's shape).

    python scripts/bench.py                       # every workload, a table
    python scripts/bench.py vae flow --json       # some workloads, one JSON object on stdout
    python scripts/bench.py dcgan --profile       # where the time goes, by function (cProfile)
    python scripts/bench.py --threads auto --busy 1   # one core kept busy by a spinning process
    python scripts/bench.py --backend reference       # the reference engine (default: fast)

Workloads (each is one training step: forward, backward, optimizer step, as the models run them):
    vae     MLP VAE 784-400-20, batch 128, Bernoulli decoder, Adam
    cvae    conditional VAE 784+10 -> 500 -> 20, batch 100, Adam
    flow    RealNVP, 6 affine couplings with MLPs 784-512-512-1568, batch 100, Adam
    convT   conv_transpose2d 128->64, k4 s2 p1, 7x7 -> 14x14, batch 128, forward + backward (no optimizer)
    lstm    one LSTM layer 64 -> 256, 50 steps, batch 64, forward + backward
    dcgan   one DCGAN iteration, batch 128: G forward, D step on real and fake, G step through D
    vae-epochs    20 epochs of models/vae.py's train_epoch on the embedded digits (the CLI's defaults:
                  dynamic binarisation, shuffling and batching included): the whole loop, not one step
    cvae-epochs   30 epochs of models/cvae.py's, likewise
    save    writing a checkpoint of the flow's parameters and Adam state (106 MB)

For each: the median wall time of a step over --repeats (after warm-up), the minimum, the matmul/conv
FLOPs of a step counted from the shapes (as im2col's products: the convolutions that run Winograd's
algorithm do fewer, so their GFLOP/s are im2col-equivalent), the achieved GFLOP/s and its fraction of a large float32
matmul measured in the same process, and the peak resident memory of that process. Each workload runs
in its own process (so the peak memory is its own). The data are random: only shapes matter here.
Wall times swing with other load on the machine; the load average is printed with the results, and
the fraction of the matmul rate is the number to compare between runs. Never imports torch.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import autodiff.functional as F                                     # noqa: E402
import nets                                                          # noqa: E402
from autodiff import Tensor, current_backend, use_backend              # noqa: E402
from nets.losses import binary_cross_entropy_with_logits, gaussian_kl  # noqa: E402
from nets.threads import configure_threads, current_threads           # noqa: E402


# ==================================================================== FLOP counting
def linear_flops(N: int, fan_in: int, fan_out: int, input_grad: bool = True) -> int:
    """Forward x W^T, and backward dW = g^T x and (unless the input is data) dx = g W: 2 N in out each."""
    return 2 * N * fan_in * fan_out * (3 if input_grad else 2)


def conv_flops(N: int, C_in: int, C_out: int, OH: int, OW: int, K: int, input_grad: bool = True) -> int:
    """A conv2d's matmul w (C_out, C_in K K) @ cols (C_in K K, N OH OW), times 3 (or 2) with backward."""
    return 2 * N * C_out * OH * OW * C_in * K * K * (3 if input_grad else 2)


# ==================================================================== the workloads
def _adam_step(optimizer, loss: Tensor) -> float:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)


def make_vae(rng, N=128, D=784, hidden=400, latent=20, classes=0):
    """The VAE (classes=0) or the CVAE (one-hot label joined to the encoder's and decoder's input)."""
    enc = nets.Linear(D + classes, hidden, rng=rng)
    mu_head, logvar_head = nets.Linear(hidden, latent, rng=rng), nets.Linear(hidden, latent, rng=rng)
    dec_hidden, dec_out = nets.Linear(latent + classes, hidden, rng=rng), nets.Linear(hidden, D, rng=rng)
    params = [p for m in (enc, mu_head, logvar_head, dec_hidden, dec_out) for p in m.parameters()]
    optimizer = nets.Adam(params, lr=1e-3)
    x = (rng.random((N, D)) < 0.3).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, N)] if classes else None

    def step():
        xin = Tensor(x) if not classes else F.concatenate([Tensor(x), Tensor(y)], axis=1)
        h = F.relu(enc(xin))
        mu, logvar = mu_head(h), logvar_head(h)
        z = mu + (0.5 * logvar).exp() * Tensor(rng.standard_normal(mu.shape, dtype=np.float32))
        zin = z if not classes else F.concatenate([z, Tensor(y)], axis=1)
        logits = dec_out(F.relu(dec_hidden(zin)))
        recon = binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=1)
        return _adam_step(optimizer, (recon + gaussian_kl(mu, logvar, axis=1)).mean())
    flops = (linear_flops(N, D + classes, hidden, False) + 2 * linear_flops(N, hidden, latent)
             + linear_flops(N, latent + classes, hidden) + linear_flops(N, hidden, D))
    return step, flops


def make_flow(rng, N=100, D=784, hidden=512, layers=6):
    """RealNVP: logit transform, `layers` affine couplings (checkerboard masks), Gaussian prior."""
    masks = [((np.indices((28, 28)).sum(0) + k) % 2).reshape(-1).astype(np.float32) for k in range(layers)]
    nets_ = [nets.Sequential(nets.Linear(D, hidden, rng=rng), nets.ReLU(), nets.Linear(hidden, hidden, rng=rng),
                             nets.ReLU(), nets.Linear(hidden, 2 * D, rng=rng)) for _ in range(layers)]
    scales = [nets.Parameter(np.zeros(D, np.float32)) for _ in range(layers)]
    optimizer = nets.Adam([p for n in nets_ for p in n.parameters()] + scales, lr=1e-3)
    x = ((rng.integers(0, 256, (N, D)) + rng.random((N, D))) / 256).astype(np.float32)

    def step():
        a = 1e-6
        p, q = a + (1 - 2 * a) * Tensor(x), a + (1 - 2 * a) * (1 - Tensor(x))
        h, log_det = p.log() - q.log(), (np.log(1 - 2 * a) - p.log() - q.log()).sum(axis=1)
        for mask, net, scale in zip(masks, nets_, scales):
            st = net(h * mask)
            s = scale * F.tanh(st[:, :D]) * (1 - mask)
            h = h * s.exp() + st[:, D:] * (1 - mask)
            log_det = log_det + s.sum(axis=1)
        log_prior = (-0.5 * (h * h) - 0.5 * np.log(2 * np.pi)).sum(axis=1)
        return _adam_step(optimizer, -(log_prior + log_det).mean())
    flops = layers * (linear_flops(N, D, hidden) + linear_flops(N, hidden, hidden) + linear_flops(N, hidden, 2 * D))
    return step, flops


def make_conv_transpose(rng, N=128):
    x = Tensor(rng.standard_normal((N, 128, 7, 7), dtype=np.float32), requires_grad=True)
    w = Tensor(0.05 * rng.standard_normal((128, 64, 4, 4), dtype=np.float32), requires_grad=True)
    b = Tensor(np.zeros(64, np.float32), requires_grad=True)
    g = rng.standard_normal((N, 64, 14, 14), dtype=np.float32)

    def step():
        x.grad = w.grad = b.grad = None
        F.conv_transpose2d(x, w, b, stride=2, padding=1).backward(g)
    return step, conv_flops(N, 64, 128, 7, 7, 4)        # the adjoint conv2d: 14x14x64 -> 7x7x128


def make_dcgan(rng, N=128, noise=96):
    """The DCGAN of models/dcgan.py (same layers), one iteration of its training loop."""
    D = nets.Sequential(nets.Conv2d(1, 32, 5, rng=rng), nets.LeakyReLU(0.01), nets.MaxPool2d(2),
                        nets.Conv2d(32, 64, 5, rng=rng), nets.LeakyReLU(0.01), nets.MaxPool2d(2),
                        nets.Flatten(), nets.Linear(1024, 1024, rng=rng), nets.LeakyReLU(0.01),
                        nets.Linear(1024, 1, rng=rng))
    G = nets.Sequential(nets.Linear(noise, 1024, rng=rng), nets.ReLU(), nets.BatchNorm1d(1024),
                        nets.Linear(1024, 6272, rng=rng), nets.ReLU(), nets.BatchNorm1d(6272),
                        nets.Unflatten(1, (128, 7, 7)),
                        nets.ConvTranspose2d(128, 64, 4, stride=2, padding=1, rng=rng), nets.ReLU(),
                        nets.BatchNorm2d(64), nets.ConvTranspose2d(64, 1, 4, stride=2, padding=1, rng=rng),
                        nets.Tanh())
    opt_D = nets.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_G = nets.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    real = rng.uniform(-1, 1, (N, 1, 28, 28)).astype(np.float32)
    bce = lambda logits, t: binary_cross_entropy_with_logits(logits, np.full(logits.shape, t, np.float32))

    def step():
        fake = G(Tensor(rng.uniform(-1, 1, (N, noise)).astype(np.float32)))
        _adam_step(opt_D, bce(D(Tensor(real)), 1.0) + bce(D(fake.detach()), 0.0))
        for p in D.parameters():
            p.requires_grad = False
        loss = _adam_step(opt_G, bce(D(fake), 1.0))
        for p in D.parameters():
            p.requires_grad = True
        return loss
    d_flops = (conv_flops(N, 1, 32, 24, 24, 5, False) + conv_flops(N, 32, 64, 8, 8, 5)
               + linear_flops(N, 1024, 1024) + linear_flops(N, 1024, 1))
    g_flops = (linear_flops(N, noise, 1024, False) + linear_flops(N, 1024, 6272)
               + conv_flops(N, 64, 128, 7, 7, 4) + conv_flops(N, 1, 64, 14, 14, 4))
    # D runs three times (real, fake, fake for G; no weight gradient the third time), G once
    return step, 3 * d_flops + g_flops


def make_lstm(rng, T=50, N=64, I=64, H=256):
    """One LSTM layer over T steps, forward + backward (no optimizer): the fused node with the fast
    backend, the cells step by step with the reference."""
    lstm = nets.LSTM(I, H, rng=rng)
    x = Tensor(rng.standard_normal((T, N, I), dtype=np.float32), requires_grad=True)
    g = rng.standard_normal((T, N, H), dtype=np.float32)

    def step():
        x.grad = None
        for p in lstm.parameters():
            p.grad = None
        lstm(x)[0].backward(g)
    # input projection (x and weight gradients) + per step h W_hh^T, dh W_hh and the weight gradient
    return step, linear_flops(T * N, I, 4 * H) + 3 * 2 * T * N * H * 4 * H


def make_save(rng):
    """Checkpoint writing: the flow's parameters and Adam moments (8.8 M float32 numbers each, 106 MB)."""
    shapes = [(512, 784), (512,), (512, 512), (512,), (1568, 512), (1568,), (784,)] * 6
    model = {f"p{i}": rng.standard_normal(shape, dtype=np.float32) for i, shape in enumerate(shapes)}
    optimizer = {f"{i}.{moment}": rng.standard_normal(shape, dtype=np.float32)
                 for i, shape in enumerate(shapes) for moment in ("m", "v")}
    folder = tempfile.mkdtemp(prefix="bench-save-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "checkpoint.npz")

    def step():
        nets.save_checkpoint(path, {"epoch": 1}, model=model, optimizer=optimizer)
    return step, 0


def make_epochs(rng, name: str, epochs: int):
    """`epochs` epochs of the model's own train_epoch with its default config (the whole training loop)."""
    import models
    from nets.data import load_mnist
    from nets.harness import stream
    module = models.load(name)
    cfg = module.Config()
    images, labels = load_mnist("train")
    data = images if name == "vae" else (images, labels)
    nets.manual_seed(0)
    model = module.build(cfg)
    optimizer = module.build_optimizer(model, cfg)
    seen = [0]

    def step(epochs=epochs):
        for _ in range(epochs):
            module.train_epoch(model, optimizer, data, stream(0, "train", seen[0]), cfg)
            seen[0] += 1
    step(1)                                         # warm-up: one epoch (measure() warms the others up)
    D, classes = 784, 10 if name == "cvae" else 0
    per_image = (linear_flops(1, D + classes, cfg.hidden, False) + 2 * linear_flops(1, cfg.hidden, cfg.latent)
                 + linear_flops(1, cfg.latent + classes, cfg.hidden) + linear_flops(1, cfg.hidden, D))
    return step, epochs * len(images) * per_image


WORKLOADS = {"vae": make_vae, "cvae": lambda rng: make_vae(rng, N=100, hidden=500, classes=10),
             "flow": make_flow, "convT": make_conv_transpose, "dcgan": make_dcgan, "save": make_save,
             "lstm": make_lstm, "vae-epochs": lambda rng: make_epochs(rng, "vae", 20),
             "cvae-epochs": lambda rng: make_epochs(rng, "cvae", 30)}


# ==================================================================== measuring
def timed(fn, repeats: int, warmup: int = 2, cpu: list | None = None) -> list:
    """Wall-clock seconds of each of `repeats` calls after `warmup` calls; the CPU seconds of this
    process (all threads) are appended to `cpu` if given: under load they swing less than wall time."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return times


def matmul_gflops(repeats: int, n: int = 1024) -> float:
    """The best rate of a large float32 matmul (the ceiling our GEMM-bound steps can reach)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    return 2 * n ** 3 / min(timed(lambda: (Tensor(a) @ Tensor(b)).data, repeats)) / 1e9   # as the engine multiplies


def measure(name: str, repeats: int, seed: int = 0) -> dict:
    """One workload in this process: step times, rates and peak memory."""
    step, flops = WORKLOADS[name](np.random.default_rng(seed))
    parallel = sys.modules.get("autodiff.fast.parallel") if current_backend() == "fast" else None
    for _ in range(50 if parallel else 0):     # the workload's first products choose who runs the threads
        if not parallel.deciding():
            break
        step()
    peak = matmul_gflops(max(repeats, 5))
    cpu = []
    times = timed(step, repeats, warmup=0 if name.endswith("-epochs") else 2, cpu=cpu)
    median = float(np.median(times))
    rate = flops / median / 1e9
    return {"workload": name, "median_ms": 1e3 * median, "min_ms": 1e3 * min(times), "repeats": repeats,
            "cpu_ms": 1e3 * float(np.median(cpu)),
            "gflop_per_step": flops / 1e9, "gflops": rate, "matmul_gflops": peak,
            "fraction_of_matmul": rate / peak, "peak_rss_mb": _peak_rss_mb(), "threads": _threads(),
            "freed_memory_kept": getattr(sys.modules.get("autodiff.fast.memory"), "kept", False),
            "backend": current_backend()}


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # kilobytes on Linux
    return kb / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def _threads() -> str:
    return ",".join(f"{library}:{count}" for library, count in current_threads().items()) or "?"


def profile(name: str, repeats: int, top: int) -> None:
    """cProfile of `repeats` steps: the functions that take the most CPU time themselves."""
    import cProfile
    import pstats
    step, _ = WORKLOADS[name](np.random.default_rng(0))
    timed(step, 0)
    step()
    profiler = cProfile.Profile(time.process_time)         # CPU time: steadier on a shared machine
    profiler.enable()
    for _ in range(repeats):
        step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", help=f"which ones (default: all of {', '.join(WORKLOADS)})")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per workload (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--profile", action="store_true", help="cProfile the steps instead of timing them")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--threads", default=None,
                        help="threads: a number or 'auto' (nets/threads.py's policy; default: the BLAS library's own)")
    parser.add_argument("--owner", choices=("auto", "blas", "engine"), default="auto",
                        help="who runs the threads: auto (the workload's first products decide), the BLAS library, "
                             "or the engine's own (autodiff/fast/parallel.py)")
    parser.add_argument("--backend", choices=("fast", "reference"), default="fast", help="which engine (default: fast)")
    parser.add_argument("--busy", type=int, default=0,
                        help="keep this many cores busy with spinning processes while measuring (a busy laptop)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    use_backend(args.backend)
    if args.owner != "auto" and args.threads is None:
        parser.error("--owner needs --threads")
    if args.threads is not None:
        configure_threads(args.threads, owner=args.owner)
    names = args.workloads or list(WORKLOADS)
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; expected some of: {', '.join(WORKLOADS)}")
    if args.profile:
        for name in names:
            print(f"==== {name}")
            profile(name, args.repeats, args.top)
        return
    if args.in_process:
        print(json.dumps([measure(name, args.repeats) for name in names]))
        return
    results = []
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(0.5 if spinners else 0)       # let them show up in the 'auto' policy's busy-core count
        for name in names:                      # one process per workload: its own peak memory
            command = [sys.executable, os.path.abspath(__file__), name, "--repeats", str(args.repeats), "--in-process",
                       "--backend", args.backend]
            command += [] if args.threads is None else ["--threads", str(args.threads), "--owner", args.owner]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results += json.loads(done.stdout)
    finally:
        for spinner in spinners:
            spinner.kill()
    report = {"numpy": np.__version__, "cores": os.cpu_count(), "backend": args.backend,
              "threads": results[0]["threads"], "busy": args.busy,
              "freed_memory_kept": results[0]["freed_memory_kept"],
              "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "results": results}
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
        return
    print(f"numpy {report['numpy']}, {report['cores']} cores, backend {args.backend}, threads {report['threads']}, "
          f"{args.busy} kept busy, freed memory kept {report['freed_memory_kept']} (autodiff/fast/memory.py), "
          f"load average {report['load_average']}")
    print(f"{'workload':13s} {'median ms':>10s} {'min ms':>9s} {'cpu ms':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'matmul':>8s} "
          f"{'fraction':>8s} {'RSS MB':>7s}")
    for r in results:
        print(f"{r['workload']:13s} {r['median_ms']:10.1f} {r['min_ms']:9.1f} {r['cpu_ms']:9.1f} {r['gflop_per_step']:7.2f} "
              f"{r['gflops']:8.1f} {r['matmul_gflops']:8.1f} {r['fraction_of_matmul']:8.2f} {r['peak_rss_mb']:7.0f}")


if __name__ == "__main__":
    main()
