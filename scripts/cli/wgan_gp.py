"""`train.py wgan-gp`: flags and figures for the WGAN-GP of models/wgan_gp.py (which holds the training iteration).

    python scripts/train.py wgan-gp                        # 600 iterations, batch 64, n_critic 5
    python scripts/train.py wgan-gp --iterations 200 --seed 0 --out runs/wgan-gp

One iteration (models/wgan_gp.py): (1) n_critic Adam steps of the critic on real digits, fresh fakes and the
gradient penalty at their interpolates, (2) an Adam step of G through the updated critic.

Writes into --out:
  samples_iter_XXXX.png  4 x 4 samples from one FIXED noise batch at every checkpoint iteration: 0, 50, 100,
                         200, 400, 600, every tenth of --iterations and the last
  progress.png           the grids of 0, 50, 100, 200, 400, 600 and the last, side by side
  losses.png             the critic loss (-W_hat) and G's loss per iteration
  quality.png            at every checkpoint iteration: W_hat on the held-out digits against the Frechet
                         distance of --quality-samples samples (scripts/compare_generative.py's classifier),
                         and both against the iteration (--quality-samples 0: no classifier, no figure)
  samples.npz            `images`: 2,000 samples (N, 28, 28) float32 in [0, 1], G in eval mode
  metrics.json           losses per iteration, the checkpoints' W_hat and quality, their correlation,
                         seconds per iteration
  checkpoint.npz         critic, G, both Adam states, the grids and the histories; --resume DIR continues exactly
"""
from __future__ import annotations

import numpy as np

from nets.data import to_signed
from nets.flags import non_negative_int
from nets.harness import Run, UsageError
from models.wgan_gp import WGANGPConfig, build, build_optimizer, evaluate, generate, sample_noise, train_iteration
from cli.common import add_command, load_mnist_splits, print_summary, save_curves, write_samples
from cli.dcgan import NUM_SAMPLES, draw_grid, save, save_progress, setup, to_unit

GRID_ITERATIONS = (0, 50, 100, 200, 400, 600)   # the grids of progress.png (those <= --iterations)
SUMMARY_METRICS = {"frechet_distance_last": "lower", "seconds_per_iteration": "lower"}


def register(subparsers) -> None:
    parser = add_command(subparsers, "wgan-gp", "WGAN-GP on MNIST", __doc__, WGANGPConfig, run)
    parser.add_argument("--quality-samples", type=non_negative_int, default=1000, metavar="N",
                        help="samples scored by the classifier at each checkpoint iteration (0: none)")


def checkpoint_iterations(iterations: int) -> list:
    tenths = {round(k * iterations / 10) for k in range(11)}
    return sorted({i for i in GRID_ITERATIONS if i <= iterations} | tenths)


def quality_scorer(x_test: np.ndarray, n: int):
    """images (N, 28, 28) in [0, 1] -> {frechet_distance, class_entropy_bits, classes_covered} under the fixed
    classifier (the test digits are the reference); None when n == 0."""
    if n <= 0:
        return None
    from compare_generative import Classifier, gaussian_fit, sample_quality
    classifier = Classifier()
    reference = gaussian_fit(classifier(x_test)[0])
    return lambda images: sample_quality(images, classifier, reference)


def run(args) -> None:
    run = Run("wgan-gp", args, WGANGPConfig, may_change=("iterations",))
    cfg = run.config
    x_train, _, x_test, _ = load_mnist_splits(args.data_dir)
    if cfg.n_critic * cfg.batch_size > len(x_train):
        raise UsageError(f"--n-critic {cfg.n_critic} x --batch-size {cfg.batch_size} images per iteration is more "
                         f"than the {len(x_train)} training images")
    images = to_signed(x_train)                               # [0, 1] -> [-1, 1], tanh's range
    model, optimizer, players, fixed_noise, grids = setup(run, build, build_optimizer)
    D, G = model.D, model.G                                   # D: the critic
    scorer = quality_scorer(x_test, args.quality_samples)
    state = run.state or {"iteration": 0, "critic_loss": [], "penalty": [], "g_loss": [], "checkpoints": []}
    milestones = checkpoint_iterations(cfg.iterations)

    def snapshot(iteration: int) -> None:
        """The grid, and W_hat on the held-out digits with the samples' quality."""
        draw_grid(run, grids, iteration, G, fixed_noise)
        held_out = evaluate(model, x_test, run.stream("evaluate", iteration), cfg)
        entry = {"iteration": iteration, "wasserstein_estimate": held_out["wasserstein_estimate"],
                 "penalty": held_out["penalty"]}
        if scorer is not None:
            noise = sample_noise(args.quality_samples, model.noise_dim, run.stream("quality", iteration))
            quality = scorer(to_unit(generate(G, noise)))
            entry.update(frechet_distance=quality["frechet_distance"],
                         class_entropy_bits=quality["class_entropy_bits"], classes_covered=quality["classes_covered"])
        state["checkpoints"] = [c for c in state["checkpoints"] if c["iteration"] != iteration] + [entry]

    if state["iteration"] == 0 and 0 not in grids:
        snapshot(0)
    model.train()
    for it in run.loop(state["iteration"], cfg.iterations, lambda: save(run, state, players, grids), unit="iteration"):
        losses = train_iteration(model, optimizer, images, it, run.stream, cfg)
        run.check_finite(losses["critic_loss"] + losses["penalty"] + losses["g_loss"], f"iteration {it + 1}",
                         hint="learning rate")
        for key in ("critic_loss", "penalty", "g_loss"):
            state[key].append(losses[key])
        state["iteration"] = it + 1
        run.show(**losses)
        if state["iteration"] in milestones:
            snapshot(state["iteration"])
    if cfg.iterations not in grids:                           # resumed at the end: redraw the last grid
        snapshot(cfg.iterations)

    draw_figures(run, state, grids, cfg.iterations)
    write_samples(run.dir, to_unit(generate(G, sample_noise(NUM_SAMPLES, model.noise_dim, run.stream("samples")))))
    save(run, state, players, grids)
    metrics = run.write_metrics(_metrics(cfg, state, D, G, len(x_train), grids, run.wall_seconds))
    print_summary(run.dir, {key: metrics[key] for key in ("iterations", "seconds_per_iteration", "critic_loss_last100",
                                                          "frechet_distance_last", "wasserstein_vs_frechet_correlation",
                                                          "wall_seconds")})


def draw_figures(run, state: dict, grids: dict, iterations: int) -> None:
    save_progress(run, grids, [i for i in sorted(grids) if i in GRID_ITERATIONS or i == iterations],
                  "WGAN-GP samples from one fixed noise batch")
    steps = np.arange(1, len(state["critic_loss"]) + 1)
    save_curves(run.path("losses.png"), {"critic: -W_hat = mean D(G(z)) - mean D(x)": (steps, state["critic_loss"]),
                                         "G: -mean D(G(z))": (steps, state["g_loss"])},
                xlabel="iteration", ylabel="loss", title="WGAN-GP losses (without the penalty)")
    points = sorted((c for c in state["checkpoints"] if "frechet_distance" in c), key=lambda c: c["iteration"])
    if len(points) < 2:
        return
    from cli.common import _pyplot
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    w = [c["wasserstein_estimate"] for c in points]
    fd = [c["frechet_distance"] for c in points]
    left.plot(fd, w, "o-")
    for c in points:
        left.annotate(str(c["iteration"]), (c["frechet_distance"], c["wasserstein_estimate"]), fontsize=7)
    left.set_xlabel("Frechet distance of the samples (lower: better)")
    left.set_ylabel("W_hat on held-out digits (= -critic loss)")
    r = trained_critic_correlation(points)
    left.set_title("checkpoints (labels: iteration)" + ("" if r is None else f", Pearson r after 0 = {r:.2f}"))
    its = [c["iteration"] for c in points]
    right.plot(its, np.array(w) / max(np.abs(w).max(), 1e-12), label="W_hat / max |W_hat|")
    right.plot(its, np.array(fd) / max(fd), label="Frechet distance / its max")
    right.set_xlabel("iteration")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run.path("quality.png"), dpi=100)
    plt.close(fig)


def trained_critic_correlation(checkpoints: list) -> float | None:
    """Pearson's r of W_hat and the Frechet distance over the scored checkpoints after iteration 0: the
    untrained critic's W_hat (about 0, whatever the samples) estimates nothing."""
    points = [c for c in checkpoints if c["iteration"] > 0 and "frechet_distance" in c]
    return correlation([c["wasserstein_estimate"] for c in points], [c["frechet_distance"] for c in points])


def correlation(a, b) -> float | None:
    """Pearson's r of two sequences (None for fewer than 3 points or a constant one)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _metrics(cfg, state: dict, D, G, n_train: int, grids: dict, seconds: float) -> dict:
    done = state["iteration"]
    last = slice(-min(done, 100), None) if done else slice(0, 0)
    points = sorted(state["checkpoints"], key=lambda c: c["iteration"])
    scored = [c for c in points if "frechet_distance" in c]
    return {"iterations": done,
            "critic_loss": state["critic_loss"], "penalty": state["penalty"], "g_loss": state["g_loss"],
            "critic_loss_last100": float(np.mean(state["critic_loss"][last])) if done else None,
            "g_loss_last100": float(np.mean(state["g_loss"][last])) if done else None,
            "seconds_per_iteration": seconds / done if done else None,
            "checkpoints": points,
            "frechet_distance_last": scored[-1]["frechet_distance"] if scored else None,
            "wasserstein_vs_frechet_correlation": trained_critic_correlation(scored),
            "grids": {str(i): f"samples_iter_{i:04d}.png" for i in sorted(grids)},
            "num_samples": NUM_SAMPLES, "n_train": n_train,
            "images_per_iteration": cfg.n_critic * cfg.batch_size,
            "num_parameters": {"D": D.num_parameters(), "G": G.num_parameters()},
            "loss_definitions": {"critic_loss": "-W_hat = mean D(G(z)) - mean D(x) over the critic steps' batches "
                                                "(the penalty not included)",
                                 "penalty": "mean (||grad D(x_hat)||_2 - 1)^2 at random interpolates",
                                 "g_loss": "-mean D(G(z))",
                                 "wasserstein_vs_frechet_correlation": "Pearson r over the checkpoints after "
                                 "iteration 0 (a trained critic) of W_hat on held-out digits and the samples' "
                                 "Frechet distance"}}
