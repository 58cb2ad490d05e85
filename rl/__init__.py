"""Reinforcement learning on gymnasium's classic control tasks, one algorithm per file.

The agents (CartPole-v1) share one contract, which `scripts/cli/rl.py` drives:

    Config                                    the hyperparameter dataclass (its budget: episodes, steps, ...)
    Agent(cfg, seed)                          one seed drives every random stream (rl.common.stream)
    agent.train_step() -> dict                one unit of training (Agent.unit: an episode, an update, a generation)
    agent.finished() -> bool, agent.budget() -> (units done, units in the budget)
    agent.evaluate(n_episodes, env_seed) -> list of greedy returns of the DELIVERED policy (agent.delivered:
        "final", or DQN's "best_eval"); agent.evaluate_final(n_episodes, env_seed): of the final one
    agent.episode_returns, agent.env_steps, agent.losses(), agent.extra_metrics(), agent.figures()
    agent.state_dict() -> ONE dict of JSON-able values and dicts of arrays (rl.common.split_state tells them
        apart for a checkpoint); agent.load_state_dict(state) continues exactly

AGENTS maps each `scripts/train.py` command to its module; `load(name)` imports it (this package's import
pulls in neither gymnasium nor the engine). Greedy play and DQN's keep-best selection are rl/evaluation.py.

The tabular methods are experiments, not agents: `dynamic_programming.py` (policy evaluation, policy and
value iteration on a known model), `tabular.py` (MC, TD, SARSA, Q-learning, eligibility traces, with many
independent runs stepping together) and `random_walk.py` are reproduced as Sutton & Barto's figures by
`tabular_experiments.py` (`scripts/train.py tabular --experiment E`): each experiment trains and scores
whole families of runs at once, in well under a minute and without a checkpoint, so it does not take the
agent contract.
"""
from __future__ import annotations

import importlib

AGENTS = {"dqn": "rl.dqn", "reinforce": "rl.reinforce", "es": "rl.es", "actor-critic": "rl.actor_critic"}


def load(name: str):
    """The module of agent command `name` (e.g. "actor-critic" -> rl.actor_critic)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; expected one of {', '.join(AGENTS)}")
    return importlib.import_module(AGENTS[name])
