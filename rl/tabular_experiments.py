r"""The textbook's tabular experiments (Sutton & Barto, 2nd ed.), each one function returning
(metrics for metrics.json, arrays for its figure). `train.py tabular --experiment E` runs them.

    random-walk  Example 6.2: TD(0) vs constant-alpha MC on the 5-state random walk, RMS error per episode
    cliff        Example 6.6: SARSA vs Q-learning (and Expected SARSA) on CliffWalking-v1, eps = 0.1, alpha = 0.5
    frozenlake   value iteration vs policy iteration vs Q-learning on FrozenLake 4x4 and 8x8 (slippery)
    taxi         Q-learning on Taxi-v4: learning curve and greedy evaluation
    blackjack    Figure 5.1: first-visit MC prediction of "stick on 20 or 21"

Randomness: every generator is a named stream of the run's seed, stream(seed, "<experiment>/<use>", i);
the gymnasium environments used for evaluation are seeded from one of them (reset and action space).

Success rate vs value (frozenlake). With gamma < 1, V(start) is a discounted sum, not a probability. What
the 1,000 evaluation episodes measure is the probability of reaching the goal before the time limit
(100 steps on 4x4, 200 on 8x8); we compute that number exactly for each greedy policy
(dynamic_programming.finite_horizon_values: gamma = 1, one backup per allowed step) and compare the
observed rate with it, within its standard error sqrt(p (1 - p) / n). The best rate any policy can reach
within the limit (a time-dependent policy, same function without a policy) is computed the same way
(`best_success_probability` in metrics.json of `train.py tabular --experiment frozenlake`).
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from nets.harness import hp, stream
from rl.dynamic_programming import (TabularModel, bellman_optimality_residual, exact_policy_values,
                                    finite_horizon_values, policy_iteration, value_iteration)
from rl.random_walk import RandomWalkEnv
from rl.tabular import mc_prediction, mc_prediction_env, td0_prediction, td_control

EXPERIMENTS = ("random-walk", "cliff", "frozenlake", "taxi", "blackjack")
DEFAULT_RUNS = {"random-walk": 100, "cliff": 100, "frozenlake": 5, "taxi": 10, "blackjack": 1}
DEFAULT_EPISODES = {"random-walk": 100, "cliff": 500, "frozenlake": 3000, "taxi": 3000, "blackjack": 100_000}


@dataclass
class TabularConfig:
    experiment: str = hp("cliff", "which experiment", choices=EXPERIMENTS)
    runs: int | None = hp(None, "independent runs, averaged (default: random-walk 100, cliff 100, frozenlake 5 "
                                "(Q-learning), taxi 10; blackjack: one run)", check="positive")
    episodes: int | None = hp(None, "training episodes per run (default: random-walk 100, cliff 500, "
                                    "frozenlake 3000, taxi 3000, blackjack 100000)", check="positive")
    eval_episodes: int = hp(1000, "greedy evaluation episodes on the gymnasium environment", check="positive")
    max_steps: int = hp(1000, "cap on a training episode (CliffWalking-v1 has no time limit of its own); "
                              "FrozenLake and Taxi also keep their own limits (100/200, 200)", check="positive")


def run_experiment(cfg: TabularConfig, seed: int, progress=None) -> tuple[dict, dict]:
    """The experiment of cfg; `progress(stage)` is called as each stage starts (e.g. "cliff/train")."""
    runs = cfg.runs or DEFAULT_RUNS[cfg.experiment]
    episodes = cfg.episodes or DEFAULT_EPISODES[cfg.experiment]
    function = {"random-walk": random_walk, "cliff": cliff, "frozenlake": frozenlake, "taxi": taxi,
                "blackjack": blackjack}[cfg.experiment]
    _progress[0] = progress or (lambda stage: None)
    try:
        return function(cfg, seed, runs, episodes)
    finally:
        _progress[0] = lambda stage: None


_progress = [lambda stage: None]


def _stream(seed: int, purpose: str, *position: int) -> np.random.Generator:
    """stream(...) of one stage of an experiment; each stage draws from its own, so it also reports progress."""
    _progress[0](purpose)
    return stream(seed, purpose, *position)


def greedy_returns(env, actions: np.ndarray, episodes: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of rewards of `episodes` episodes of the deterministic policy `actions[state]` on a gymnasium
    env (with its own time limit). The env's reset and action space are seeded once from rng."""
    env.action_space.seed(int(rng.integers(2 ** 31)))
    obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    returns = np.zeros(episodes)
    for episode in range(episodes):
        if episode:
            obs, _ = env.reset()
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(actions[obs]))
            returns[episode] += reward
            done = terminated or truncated
    return returns


# ==================================================================== Example 6.2: the random walk
TD_ALPHAS = (0.05, 0.1, 0.15)
MC_ALPHAS = (0.01, 0.02, 0.03, 0.04)


def random_walk(cfg, seed, runs, episodes):
    """RMS error (over the 5 states, then averaged over runs) after each episode, V initialised to 0.5."""
    env = RandomWalkEnv()
    model, truth = TabularModel.from_env(env), env.true_values
    policy = np.ones((model.n_states, 1))
    snapshots = {}

    def curve(predict, alpha, purpose, position):
        errors = np.zeros((episodes, runs))

        def on_episode(episode, V):
            errors[episode] = np.sqrt(((V[:, 1:-1] - truth[1:-1]) ** 2).mean(axis=1))
            if predict is td0_prediction and alpha == 0.1 and episode + 1 in (1, 10, 100):
                snapshots[episode + 1] = V[0, 1:-1].copy()          # the book's left panel: one run
        predict(model, policy, episodes, runs, alpha=alpha, gamma=1.0, rng=_stream(seed, purpose, position),
                v0=0.5, on_episode=on_episode)
        return errors.mean(axis=1)

    td = {a: curve(td0_prediction, a, "random-walk/td", i) for i, a in enumerate(TD_ALPHAS)}
    mc = {a: curve(mc_prediction, a, "random-walk/mc", i) for i, a in enumerate(MC_ALPHAS)}
    best_td = min(td, key=lambda a: td[a][-1])
    best_mc = min(mc, key=lambda a: mc[a][-1])
    initial_rms = float(np.sqrt(((0.5 - truth[1:-1]) ** 2).mean()))
    metrics = {"episodes": episodes, "runs": runs, "td_rms_error": td[best_td], "mc_rms_error": mc[best_mc],
               "td_best_alpha": best_td, "mc_best_alpha": best_mc, "initial_rms_error": initial_rms,
               "td_rms_error_final": float(td[best_td][-1]), "mc_rms_error_final": float(mc[best_mc][-1]),
               "td_rms_error_by_alpha": {str(a): c for a, c in td.items()},
               "mc_rms_error_by_alpha": {str(a): c for a, c in mc.items()},
               "true_values": truth[1:-1]}
    return metrics, {"td": td, "mc": mc, "truth": truth[1:-1], "snapshots": snapshots, "initial_rms": initial_rms}


# ==================================================================== Example 6.6: cliff walking
CLIFF_METHODS = ("sarsa", "q_learning", "expected_sarsa")


def greedy_path(model: TabularModel, Q: np.ndarray, limit: int = 200) -> list[int] | None:
    """States visited by the greedy policy of Q (one run's table) from the start state, following each
    action's most likely outcome, up to the terminal state; None if it does not get there (a loop, or
    the cliff's return to the start)."""
    s = int(model.initial.argmax())
    path = [s]
    for _ in range(limit):
        a = int(Q[s].argmax())
        k = int(model.outcome_prob[s, a].argmax())
        done = bool(model.outcome_terminated[s, a, k])
        s = int(model.outcome_next[s, a, k])
        if s in path and not done:
            return None
        path.append(s)
        if done:
            return path
    return None


def cliff(cfg, seed, runs, episodes):
    """Sum of rewards per episode averaged over runs, and each run's greedy path after training.
    gamma = 1 (undiscounted, as in the book); episodes are capped at cfg.max_steps steps."""
    env = gym.make("CliffWalking-v1")
    model = TabularModel.from_env(env)
    metrics = {"runs": runs, "episodes": episodes, "alpha": 0.5, "epsilon": 0.1, "gamma": 1.0,
               "episode_step_cap": cfg.max_steps, "greedy_path_length": {}, "greedy_path_length_counts": {}}
    figure = {"curves": {}, "paths": {}, "shape": (4, 12)}
    for i, method in enumerate(CLIFF_METHODS):
        Q, returns = td_control(model, method, episodes, runs, alpha=0.5, epsilon=0.1, gamma=1.0,
                                rng=_stream(seed, "cliff/train", i), max_steps=cfg.max_steps)
        curve = returns.mean(axis=1)
        paths = [greedy_path(model, Q[r]) for r in range(runs)]
        lengths = [len(p) - 1 if p is not None else None for p in paths]
        counts = {}
        for n in lengths:
            counts[str(n)] = counts.get(str(n), 0) + 1
        reached = [n for n in lengths if n is not None]
        mode = max(set(reached), key=reached.count) if reached else None
        metrics[f"{method}_rewards_per_episode"] = curve
        if method in ("sarsa", "q_learning"):                   # the contract's two; the third has its own key
            metrics["greedy_path_length"][method] = mode        # the most common length over runs
        else:
            metrics[f"{method}_greedy_path_length"] = mode
        metrics["greedy_path_length_counts"][method] = dict(sorted(counts.items()))
        metrics[f"{method}_mean_reward_last_100"] = float(curve[-100:].mean())
        figure["curves"][method] = curve
        figure["paths"][method] = paths[lengths.index(mode)] if mode is not None else None
    return metrics, figure


# ==================================================================== FrozenLake: DP vs Q-learning
FROZEN_MAPS = {"4x4": "FrozenLake-v1", "8x8": "FrozenLake8x8-v1"}
FROZEN_GAMMA = 0.99
DP_METHODS = ("value_iteration", "policy_iteration", "q_learning")


def frozenlake(cfg, seed, runs, episodes):
    """Optimal values by VI and PI (checked against a linear solve), Q-learning (alpha 0.1, eps 0.1, runs
    in parallel; run 0's greedy policy is evaluated), and every greedy policy's success rate."""
    metrics, figure = {"eval_episodes": cfg.eval_episodes}, {}
    for m, (name, env_id) in enumerate(FROZEN_MAPS.items()):
        env = gym.make(env_id)
        model, limit = TabularModel.from_env(env), env.spec.max_episode_steps
        start = int(model.initial.argmax())
        V_vi, pi_vi, vi_info = value_iteration(model, FROZEN_GAMMA, theta=1e-12)
        V_pi, pi_pi, pi_info = policy_iteration(model, FROZEN_GAMMA, theta=1e-12)
        V_exact = exact_policy_values(model, pi_vi, FROZEN_GAMMA)     # the independent check
        Q, _ = td_control(model, "q_learning", episodes, runs, alpha=0.1, epsilon=0.1, gamma=FROZEN_GAMMA,
                          rng=_stream(seed, "frozenlake/train", m), max_steps=min(limit, cfg.max_steps))
        actions = {"value_iteration": pi_vi.argmax(1), "policy_iteration": pi_pi.argmax(1),
                   "q_learning": Q[0].argmax(1)}
        values = {"value_iteration": V_vi, "policy_iteration": V_pi, "q_learning": Q[0].max(1)}
        result = {"gamma": FROZEN_GAMMA, "time_limit": limit,
                  "value_iteration_values": V_vi, "policy_iteration_values": V_pi,
                  "max_abs_diff_vs_linear_solve": {"value_iteration": float(np.abs(V_vi - V_exact).max()),
                                                   "policy_iteration": float(np.abs(V_pi - V_exact).max())},
                  "bellman_optimality_residual": bellman_optimality_residual(model, V_exact, FROZEN_GAMMA),
                  "value_iteration_sweeps": vi_info["sweeps"], "policy_iteration_iterations": pi_info["iterations"],
                  "q_learning_runs": runs, "q_learning_episodes": episodes,
                  "best_success_probability": float(finite_horizon_values(model, limit)[start]),
                  "success_rate": {}, "success_standard_error": {}, "success_probability": {},
                  "start_state_value": {k: float(v[start]) for k, v in values.items()}}
        for k, method in enumerate(DP_METHODS):
            returns = greedy_returns(env, actions[method], cfg.eval_episodes, _stream(seed, "frozenlake/eval", m, k))
            rate = float((returns > 0).mean())
            exact = finite_horizon_values(model, limit, np.eye(model.n_actions)[actions[method]])[start]
            result["success_rate"][method] = rate
            result["success_probability"][method] = float(exact)
            result["success_standard_error"][method] = float(np.sqrt(exact * (1 - exact) / cfg.eval_episodes))
        result["q_learning_success_probability_runs"] = [
            float(finite_horizon_values(model, limit, np.eye(model.n_actions)[Q[r].argmax(1)])[start])
            for r in range(runs)]
        metrics[name] = result
        metrics[f"success_rate_{name}_value_iteration"] = result["success_rate"]["value_iteration"]
        figure[name] = {"desc": env.unwrapped.desc.astype(str), "values": values, "actions": actions,
                        "success_rate": result["success_rate"]}
    return metrics, figure


# ==================================================================== Taxi: Q-learning
def taxi(cfg, seed, runs, episodes):
    """Q-learning (alpha 0.5, eps 0.1, gamma 0.99) for `runs` runs; every run's greedy policy is evaluated
    on cfg.eval_episodes episodes; the optimal policy's mean reward is computed exactly from the model
    (value iteration, gamma = 1, then its expected return within the 200-step limit) and also played on the same episodes."""
    env = gym.make("Taxi-v4")
    model, limit = TabularModel.from_env(env), env.spec.max_episode_steps
    alpha, epsilon, gamma = 0.5, 0.1, 0.99
    Q, returns = td_control(model, "q_learning", episodes, runs, alpha=alpha, epsilon=epsilon, gamma=gamma,
                            rng=_stream(seed, "taxi/train"), max_steps=min(limit, cfg.max_steps))
    greedy_means = [float(greedy_returns(env, Q[r].argmax(1), cfg.eval_episodes, _stream(seed, "taxi/eval", r)).mean())
                    for r in range(runs)]
    _, optimal_policy, _ = value_iteration(model, 1.0)
    optimal = float(finite_horizon_values(model, limit, optimal_policy) @ model.initial)
    optimal_played = greedy_returns(env, optimal_policy.argmax(1), cfg.eval_episodes,
                                      _stream(seed, "taxi/eval-optimal"))
    metrics = {"runs": runs, "episodes": episodes, "alpha": alpha, "epsilon": epsilon, "gamma": gamma,
               "q_learning_greedy_mean_reward": float(np.mean(greedy_means)),
               "q_learning_greedy_mean_reward_runs": greedy_means,
               "optimal_mean_reward": optimal, "optimal_policy_greedy_mean_reward": float(optimal_played.mean()),
               "rewards_per_episode": returns.mean(axis=1)}
    return metrics, {"curve": returns.mean(axis=1), "optimal": optimal, "greedy_means": greedy_means}


# ==================================================================== Figure 5.1: blackjack
def stick_on_20(obs) -> int:
    """The policy of Figure 5.1: stick (0) on a player sum of 20 or 21, otherwise hit (1)."""
    return 0 if obs[0] >= 20 else 1


def blackjack_grid(V: dict, usable_ace: bool) -> np.ndarray:
    """V as a (10, 10) array: rows player sum 12..21, columns dealer showing 1 (ace)..10; NaN if unseen."""
    return np.array([[V.get((player, dealer, int(usable_ace)), np.nan) for dealer in range(1, 11)]
                     for player in range(12, 22)])


def blackjack(cfg, seed, runs, episodes):
    """First-visit MC prediction (sample averages) of stick_on_20 on Blackjack-v1 with the book's rules
    (sab=True); the values after 10,000 episodes and after all of them."""
    env = gym.make("Blackjack-v1", sab=True)
    early = min(10_000, episodes)
    grids = {}

    def on_episode(episode, V):
        if (episode + 1) % 10_000 == 0:
            _progress[0](f"blackjack/episode {episode + 1}")
        if episode + 1 in (early, episodes):
            grids[episode + 1] = {ace: blackjack_grid(V, ace) for ace in (True, False)}
    mc_prediction_env(env, stick_on_20, episodes, gamma=1.0, rng=_stream(seed, "blackjack/episodes"),
                      on_episode=on_episode)
    metrics = {"episodes": episodes, "rows": "player sum 12..21", "columns": "dealer showing 1 (ace)..10"}
    for n, grid in grids.items():
        metrics[f"values_usable_ace_after_{n}"] = grid[True]
        metrics[f"values_no_usable_ace_after_{n}"] = grid[False]
    return metrics, {"grids": grids}
