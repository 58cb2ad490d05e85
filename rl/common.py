r"""What the CartPole agents (dqn.py, reinforce.py, es.py, actor_critic.py) share: the environment, seeding,
the budget, a network's output without a graph, the 100-episode running average and the first episode at
which it crosses a bar. Greedy evaluation and keep-best selection are rl/evaluation.py.

gymnasium 1.x API: `reset(seed=...)` returns (obs, info); `step(a)` returns
(obs, reward, terminated, truncated, info).  CartPole-v1: reward +1 per step, `terminated` when the
pole falls or the cart leaves the track, `truncated` at the 500-step cap (so returns lie in [1, 500]).

Seeding: one seed per run drives everything through named streams, `stream(seed, purpose, *position)`
(np.random.SeedSequence, never `seed + k`). The first training reset seeds the environment's own generator
with `training_env_seed(seed)` (later resets continue it). Greedy evaluations are seeded apart: the 100
reporting episodes by `report_env_seed(seed)` (even), keep-best selections by `selection_env_seed(seed, k)`
(odd), so the two never share an episode start.
At an episode boundary the environment's whole random state is its generator's state, which
`env_rng_state` / `set_env_rng_state` read and write, so a checkpoint taken between episodes
resumes exactly.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from autodiff import Tensor, no_grad
from autodiff.backend import replaceable
from nets.harness import hp, stream     # noqa: F401  (the agents import them from here)

ENV_ID = "CartPole-v1"
WINDOW = 100                   # the homework's running average is over the last 100 episodes


# ==================================================================== seeds and generators
def _env_seed(seed: int, purpose: str, parity: int, *position: int) -> int:
    """An env seed in [0, 2^31) drawn from the named stream (seed, purpose, position), even or odd as `parity` says."""
    return 2 * int(stream(seed, purpose, *position).integers(2**30)) + parity


def report_env_seed(seed: int) -> int:
    """Env seed of the 100 reporting episodes (greedy_eval_returns). Always EVEN, so it never equals a
    selection_env_seed (odd): no policy is ever chosen on the episodes it is then scored on."""
    return _env_seed(seed, "report-env", 0)


def selection_env_seed(seed: int, k: int, episode: int | None = None) -> int:
    """Env seed of the k-th selection evaluation (keep-best checkpoints), or of its episode-th episode
    when the episodes are played side by side. Always ODD: disjoint from report_env_seed; a fresh set
    of starts for each k."""
    position = (k,) if episode is None else (k, episode)
    return _env_seed(seed, "selection-env", 1, *position)


def training_env_seed(seed: int) -> int:
    """Env seed of the first training reset (later resets continue the env's generator)."""
    return _env_seed(seed, "training-env", 0)


# ==================================================================== the environment
def make_env(seed: int | None = None):
    """CartPole-v1 (with gymnasium's 500-step TimeLimit); the action space is seeded if seed is given.
    The observation generator is seeded by the first `env.reset(seed=seed)`."""
    env = gym.make(ENV_ID)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def env_rng_state(env) -> dict:
    """The states of the environment's generator (all the randomness of the next reset) and of its
    action space's generator (random actions)."""
    return {"env": env.unwrapped.np_random.bit_generator.state,
            "action_space": env.action_space.np_random.bit_generator.state}


def set_env_rng_state(env, state: dict, seed: int, started: bool) -> None:
    """Restore env_rng_state(). If the run had `started` (reset the env at least once), the env gets
    its generator by a reset with the run's seed, whose state is then overwritten."""
    if started:
        env.reset(seed=seed)
        env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]


# ==================================================================== learning curves
def running_average(values, window: int = WINDOW) -> np.ndarray:
    """avg[k] = mean(values[max(0, k+1-window) : k+1]): the mean of the last `window` values
    (of all of them while fewer than `window` exist), as the homework's plot shows it."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    k = np.arange(1, values.size + 1)
    start = np.maximum(0, k - window)
    return (cumulative[k] - cumulative[start]) / (k - start)


def first_crossing(returns, threshold: float, window: int = WINDOW):
    """(episode, env step) at which the average of the last `window` returns first reaches `threshold`
    (episode counted from 1, needs a full window; env step = total steps at the end of that episode);
    (None, None) if it never does. CartPole's return equals the episode's length, so the env step is the
    cumulative sum of returns."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.size < window:
        return None, None
    averages = running_average(returns, window)[window - 1:]
    hits = np.nonzero(averages >= threshold)[0]
    if hits.size == 0:
        return None, None
    episode = int(hits[0]) + window
    return episode, int(returns[:episode].sum())


def crossing_metrics(returns) -> dict:
    """first_episode_avg300, first_step_avg300, first_episode_avg475, first_step_avg475 (None: never)."""
    metrics = {}
    for bar in (300, 475):
        episode, step = first_crossing(returns, bar)
        metrics[f"first_episode_avg{bar}"] = episode
        metrics[f"first_step_avg{bar}"] = step
    return metrics


@replaceable("forward_no_grad")
def forward_no_grad(net, obs) -> np.ndarray:
    """net(obs) as an array, without building a graph (acting and TD targets need no gradient):
    obs (obs_dim,) -> (n_outputs,), or a batch (N, obs_dim) -> (N, n_outputs)."""
    obs = np.asarray(obs, dtype=np.float32)
    with no_grad():
        out = net(Tensor(obs if obs.ndim == 2 else obs[None])).data
    return out if obs.ndim == 2 else out[0]


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """start -> end linearly over `duration` steps, then constant at end."""
    if duration <= 0:
        return end
    return start + (end - start) * min(1.0, t / duration)


def budget_progress(episodes_done: int, steps_done: int, episodes: int | None, steps: int | None) -> float:
    """Fraction of the training budget used: training stops at whichever budget runs out first,
    so progress is the larger of the two fractions (in [0, 1])."""
    fractions = [0.0]
    if episodes:
        fractions.append(episodes_done / episodes)
    if steps:
        fractions.append(steps_done / steps)
    return min(1.0, max(fractions))


def budget_position(episodes_done: int, steps_done: int, episodes: int | None, steps: int | None) -> tuple:
    """(units done, units in the budget) for a progress bar: episodes if there is an episode budget, else steps."""
    return (episodes_done, episodes) if episodes else (steps_done, steps)


def split_state(state: dict) -> tuple:
    """An agent's state_dict() as a checkpoint stores it: (the JSON-able entries, the sections), a section being
    an entry that is a dict of arrays (a network's, an optimizer's, the replay buffer's)."""
    def is_section(value):
        return isinstance(value, dict) and bool(value) and all(isinstance(v, np.ndarray) for v in value.values())
    return ({k: v for k, v in state.items() if not is_section(v)},
            {k: v for k, v in state.items() if is_section(v)})
