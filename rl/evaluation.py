r"""Greedy evaluation of the CartPole agents, and keeping the best network of a run (what DQN delivers).

Greedy play. An agent is scored by the returns of its greedy policy (no exploration) on fresh episodes:
`run_greedy_episodes` plays them one after another from one env seed (the 100 reporting episodes,
`report_env_seed`); `run_greedy_episodes_side_by_side` plays one episode per env seed, all at once, so one
forward pass of the network acts for every live episode (the selection episodes below).

Keep-best with confirmation (`KeepBest`). A DQN's greedy score rises and falls during training (a good
policy fills the buffer with successes, and the failures that taught it become rare), so the final network
is a lottery ticket. As Stable-Baselines3's EvalCallback does, every so often the current network plays a
few greedy episodes and a copy is kept if it beats the best so far; that copy is the delivered network. At
CartPole's cap of 500 many networks tie, and a fragile one scores 500 on 10 episodes by luck often enough
to be picked: so a network that beats the best on its `eval_episodes` screening episodes plays
`confirm_episodes` more and must still beat it on all of them. Among equals the earliest is kept, as SB3
does (`replace_on_tie` keeps the latest). The selection episodes start from `selection_env_seed(seed, k, i)`
(odd), never from the reporting seed (even): no network is chosen on the episodes it is then scored on.
"""
from __future__ import annotations

import copy

import numpy as np

from rl.common import budget_position, budget_progress, forward_no_grad, make_env, selection_env_seed


# ==================================================================== greedy play
def run_greedy_episodes(act, n_episodes: int, seed: int) -> list[float]:
    """Returns of `n_episodes` fresh episodes that pick actions with `act(obs) -> int` (no exploration).
    The environment is seeded once with `seed`, so the same policy always gets the same starts."""
    env = make_env(seed)
    returns = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed if i == 0 else None)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_greedy_episodes_side_by_side(act_batch, env_seeds: list[int]) -> list[float]:
    """One greedy episode per env seed, all played at once: each step, `act_batch(obs (n_live, obs_dim))
    -> actions (n_live,)` acts for every episode still running. The same returns as run_greedy_episodes
    playing each seed's episode alone (tests/test_rl.py checks it). Returns in the order of env_seeds."""
    envs = [make_env(s) for s in env_seeds]
    obs = [env.reset(seed=s)[0] for env, s in zip(envs, env_seeds)]
    returns, live = [0.0] * len(envs), list(range(len(envs)))
    while live:
        actions = act_batch(np.stack([obs[i] for i in live]))
        still = []
        for i, action in zip(live, actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += float(reward)
            if not (terminated or truncated):
                still.append(i)
        live = still
    for env in envs:
        env.close()
    return returns


def greedy_action(net, obs) -> int:
    """argmax_a of the network's outputs (Q values or logits) for ONE observation."""
    return int(forward_no_grad(net, obs).argmax())


def play_greedy(net, env_seeds: list[int]) -> list[float]:
    """The network's greedy returns, one episode per env seed, played side by side."""
    return run_greedy_episodes_side_by_side(lambda obs: forward_no_grad(net, obs).argmax(axis=1), env_seeds)


# ==================================================================== keeping the best network
def is_better(score: float, best: float | None, replace_on_tie: bool) -> bool:
    """Selection rule: a higher mean greedy return replaces the best so far; an equal one too if
    replace_on_tie (the latest of equals is kept; SB3's EvalCallback keeps the earliest)."""
    return best is None or score > best or (replace_on_tie and score == best)


class KeepBest:
    """The best network of a run's selection evaluations (see the module docstring) and their records."""

    def __init__(self, seed: int, eval_episodes: int, confirm_episodes: int, replace_on_tie: bool):
        self.seed, self.eval_episodes, self.confirm_episodes = seed, eval_episodes, confirm_episodes
        self.replace_on_tie = replace_on_tie
        self.best_net = None                     # a copy of the best network so far
        self.selections: list[dict] = []         # {"env_step", "episode", "env_seeds", "mean", "kept"} each

    def select(self, net, env_step: int, episode: int) -> dict:
        """Screen `net` greedily on eval_episodes fresh starts (the k-th selection env seeds); if it beats the
        best so far, confirm it on confirm_episodes more, and keep a copy if its mean over all still does."""
        k = len(self.selections)
        best = max((s["mean"] for s in self.selections), default=None)
        seeds = [selection_env_seed(self.seed, k, i) for i in range(self.eval_episodes + self.confirm_episodes)]
        returns = play_greedy(net, seeds[:self.eval_episodes])
        if self.confirm_episodes and is_better(float(np.mean(returns)), best, self.replace_on_tie):
            returns += play_greedy(net, seeds[self.eval_episodes:])
        mean = float(np.mean(returns))
        record = {"env_step": env_step, "episode": episode, "env_seeds": seeds[:len(returns)], "mean": mean,
                  "kept": is_better(mean, best, self.replace_on_tie)}
        if record["kept"]:
            self.best_net = copy.deepcopy(net)
        self.selections.append(record)
        return record

    def best_record(self) -> dict | None:
        kept = [s for s in self.selections if s["kept"]]
        return kept[-1] if kept else None

    def state_dict(self) -> dict:
        """{"selections": [...]} and, once a network was kept, {"best_net": its state_dict}."""
        state = {"selections": self.selections}
        if self.best_net is not None:
            state["best_net"] = self.best_net.state_dict()
        return state

    def load_state_dict(self, state: dict, net) -> None:
        """`net`: a network of the same architecture (its copy receives the kept weights)."""
        self.selections = [dict(s) for s in state["selections"]]
        self.best_net = None
        if "best_net" in state:
            self.best_net = copy.deepcopy(net)
            self.best_net.load_state_dict(state["best_net"])


class EpisodicAgent:
    """What the agents share: a budget of episodes and/or environment steps (cfg.episodes, cfg.steps, counted by
    self.episode_returns and self.env_steps; training stops at whichever runs out first), and greedy play of
    self.greedy_action. The delivered policy is the final one unless an agent overrides `evaluate`."""

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def progress(self) -> float:
        return budget_progress(len(self.episode_returns), self.env_steps, self.cfg.episodes, self.cfg.steps)

    def budget(self) -> tuple:
        return budget_position(len(self.episode_returns), self.env_steps, self.cfg.episodes, self.cfg.steps)

    def evaluate(self, n_episodes: int, env_seed: int) -> list[float]:
        """Greedy returns of the delivered policy, one episode per env seed env_seed, env_seed + 1, ..."""
        return run_greedy_episodes(self.greedy_action, n_episodes, env_seed)

    def evaluate_final(self, n_episodes: int, env_seed: int) -> list[float]:
        """Greedy returns of the policy as training left it."""
        return run_greedy_episodes(self.greedy_action, n_episodes, env_seed)
