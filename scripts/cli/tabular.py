"""`train.py tabular --experiment E`: the textbook's tabular RL experiments (rl/tabular_experiments.py).

    random-walk  MC vs TD(0) on the 5-state random walk: RMS error per episode  -> random_walk.png
    cliff        SARSA vs Q-learning on CliffWalking-v1: rewards, greedy paths    -> cliff.png
    frozenlake   VI vs PI vs Q-learning on FrozenLake 4x4 / 8x8: values, arrows   -> frozenlake.png
    taxi         Q-learning on Taxi-v4: learning curve, greedy evaluation         -> taxi.png
    blackjack    MC prediction of "stick on 20 or 21" (Figure 5.1)                -> blackjack.png
Writes --out DIR/metrics.json (keys in rl/tabular_experiments.py), the figure and checkpoint.npz (the
flags and seed; an experiment runs in one piece, in well under a minute, so there is nothing to resume).
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from tqdm import tqdm

from cli.common import print_summary
from nets.harness import Run, UsageError, add_config_flags, add_run_flags
from rl import tabular_experiments
from rl.tabular_experiments import TabularConfig

# headline numbers for `--seeds` summaries (each experiment writes its own; the others stay null)
SUMMARY_METRICS = {"td_rms_error_final": "lower", "mc_rms_error_final": "lower",
                   "sarsa_mean_reward_last_100": "higher", "q_learning_mean_reward_last_100": "higher",
                   "success_rate_4x4_value_iteration": "higher", "success_rate_8x8_value_iteration": "higher",
                   "q_learning_greedy_mean_reward": "higher"}
ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}      # FrozenLake actions: left, down, right, up (dx, dy)


def register(subparsers) -> None:
    parser = subparsers.add_parser("tabular", help="tabular RL: DP, MC, TD, SARSA, Q-learning (textbook experiments)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_flags(parser)
    add_config_flags(parser, TabularConfig)
    parser.set_defaults(run=run)


def run(args) -> None:
    run = Run("tabular", args, TabularConfig)
    if run.resumed:
        raise UsageError(f"--resume {run.dir}: that experiment is finished (an experiment runs in one piece); "
                         f"run it again with another --out")
    bar = tqdm(desc=f"tabular {run.config.experiment}: stages", unit=" stage", dynamic_ncols=True,
               disable=bool(os.environ.get("NO_PROGRESS")))

    def progress(stage: str) -> None:
        bar.set_postfix_str(stage, refresh=False)
        bar.update()
    try:
        metrics, figure = tabular_experiments.run_experiment(run.config, run.seed, progress)
    finally:
        bar.close()
    clean = run.write_metrics(metrics)
    run.save({"finished": True})                 # the experiment's flags and seed, to tell what ran
    name = run.config.experiment
    {"random-walk": _random_walk, "cliff": _cliff, "frozenlake": _frozenlake, "taxi": _taxi,
     "blackjack": _blackjack}[name](run.path(name.replace("-", "_") + ".png"), figure)
    headline = {k: v for k, v in clean.items() if isinstance(v, (int, float, str)) or k == "greedy_path_length"}
    print_summary(run.dir, headline)


# ==================================================================== figures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _moving_average(curve, window: int):
    """(episode numbers, mean of the last `window` values) for a curve; the window shrinks for short runs."""
    window = max(1, min(window, len(curve)))
    return np.arange(window, len(curve) + 1), np.convolve(curve, np.ones(window) / window, mode="valid")


def _random_walk(path, fig_data):
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    states = np.arange(1, 6)
    left.plot(states, np.full(5, 0.5), "o-", label="0 episodes")
    for n, values in sorted(fig_data["snapshots"].items()):
        left.plot(states, values, "o-", label=f"{n} episode{'s' if n > 1 else ''}")
    left.plot(states, fig_data["truth"], "k--", label="true values")
    left.set_xticks(states, list("ABCDE"))
    left.set(title="TD(0), alpha = 0.1, one run", xlabel="state", ylabel="estimated value")
    left.legend(fontsize=8)
    for method, style in (("td", "-"), ("mc", "--")):
        for alpha, curve in fig_data[method].items():
            right.plot(np.arange(len(curve) + 1), np.concatenate([[fig_data["initial_rms"]], curve]), style,
                       label=f"{method.upper()} alpha = {alpha}")
    right.set(title="RMS error over the 5 states, averaged over runs", xlabel="episodes", ylabel="RMS error")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cliff(path, fig_data):
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), gridspec_kw={"height_ratios": [3, 2]})
    for method, curve in fig_data["curves"].items():
        top.plot(*_moving_average(curve, 10), label=method.replace("_", " "))
    top.set(ylim=(-100, 0), xlabel="episodes", ylabel="sum of rewards during episode (mean over runs)",
            title="Cliff walking, epsilon = 0.1, alpha = 0.5 (10-episode moving average)")
    top.legend()
    rows, cols = fig_data["shape"]
    bottom.add_patch(plt.Rectangle((0.5, -0.5), cols - 2, 1, color="0.6"))          # the cliff
    bottom.text(cols / 2 - 0.5, 0, "the cliff", ha="center", va="center")
    for (method, states), offset in zip(fig_data["paths"].items(), (-0.15, 0.0, 0.15)):
        if states is None:
            continue
        y, x = np.divmod(np.asarray(states), cols)
        bottom.plot(x, rows - 1 - y + offset, "o-", ms=3, label=f"{method.replace('_', ' ')} ({len(states) - 1} steps)")
    bottom.set(xlim=(-0.5, cols - 0.5), ylim=(-0.5, rows - 0.5), xticks=range(cols), yticks=range(rows),
               aspect="equal", title="greedy path after training (the most common length over runs)")
    bottom.text(0, 0, "S", ha="center", va="center", weight="bold")
    bottom.text(cols - 1, 0, "G", ha="center", va="center", weight="bold")
    bottom.grid(alpha=0.3)
    if any(states is not None for states in fig_data["paths"].values()):
        bottom.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _frozenlake(path, fig_data):
    plt = _pyplot()
    methods = ("value_iteration", "policy_iteration", "q_learning")
    fig, axes = plt.subplots(len(fig_data), 3, figsize=(12, 4 * len(fig_data)), squeeze=False)
    for row, (name, data) in zip(axes, fig_data.items()):
        desc = data["desc"]
        n_rows, n_cols = desc.shape
        for ax, method in zip(row, methods):
            values = data["values"][method].reshape(n_rows, n_cols)
            image = ax.imshow(values, cmap="viridis")
            fig.colorbar(image, ax=ax, fraction=0.046)
            for s, a in enumerate(data["actions"][method]):
                y, x = divmod(s, n_cols)
                if desc[y, x] in "HG":
                    ax.text(x, y, desc[y, x], ha="center", va="center", color="white", weight="bold")
                    continue
                dx, dy = ARROWS[int(a)]
                ax.arrow(x - 0.25 * dx, y - 0.25 * dy, 0.3 * dx, 0.3 * dy, head_width=0.15, color="white")
            ax.set(xticks=[], yticks=[], title=f"{name} {method.replace('_', ' ')}: "
                                               f"success {data['success_rate'][method]:.3f}")
    fig.suptitle("FrozenLake (slippery): values (gamma = 0.99; Q-learning: max_a Q of run 0) and greedy actions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _taxi(path, fig_data):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    curve = fig_data["curve"]
    ax.plot(*_moving_average(curve, 20), label="Q-learning, training episodes (eps = 0.1)")
    ax.axhline(fig_data["optimal"], color="k", ls="--", label=f"optimal policy: {fig_data['optimal']:.2f}")
    ax.axhline(np.mean(fig_data["greedy_means"]), color="C2", ls=":",
               label=f"greedy, after training: {np.mean(fig_data['greedy_means']):.2f}")
    ax.set(ylim=(-300, 20), xlabel="episodes", ylabel="sum of rewards per episode",
           title="Q-learning on Taxi-v4 (mean over runs, 20-episode moving average)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _blackjack(path, fig_data):
    plt = _pyplot()
    grids = fig_data["grids"]
    fig, axes = plt.subplots(2, len(grids), figsize=(5 * len(grids), 9), squeeze=False)
    for col, (n, grid) in enumerate(sorted(grids.items())):
        for row, ace in enumerate((True, False)):
            ax = axes[row, col]
            image = ax.imshow(grid[ace], origin="lower", cmap="coolwarm", vmin=-1, vmax=1,
                              extent=(0.5, 10.5, 11.5, 21.5))
            ax.set(xticks=range(1, 11), xticklabels=["A"] + [str(d) for d in range(2, 11)], yticks=range(12, 22),
                   xlabel="dealer showing", ylabel="player sum",
                   title=f"{'usable' if ace else 'no usable'} ace, after {n:,} episodes")
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle('Blackjack: first-visit MC value of "stick on 20 or 21"')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
