r"""Dynamic programming (Sutton & Barto, ch. 4): policy evaluation, policy iteration, value iteration,
computed from a known model, gymnasium's transition table `env.unwrapped.P`.

The table: P[s][a] is a list of outcomes (p, s', r, terminated). We turn it into two arrays,
    R[s, a]     = sum_outcomes p * r                          (expected reward of one step)
    T[s, a, s'] = sum_outcomes with that s' p * (1 - terminated)   (probability of continuing into s')
so that a terminal outcome bootstraps from nothing (its value is 0), and every backup is one line:
    Q(s, a) = R[s, a] + gamma * sum_s' T[s, a, s'] V(s')       (the Bellman backup, all (s, a) at once)

Sweeps here are synchronous ("two arrays", S&B 4.1): each sweep computes the new V from the old one for
all states at once. The boxed algorithms sweep in place; both converge to the same fixed point, and the
stopping rule is the book's: stop when the largest change of a sweep is below `theta`.

Policies are (S, A) arrays of probabilities pi[s, a]; a deterministic policy is its one-hot array,
`greedy_policy` returns one. `exact_policy_values` solves the linear system (I - gamma T_pi) V = R_pi
instead of iterating: the independent check of the iterative methods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ==================================================================== the model, from env.unwrapped.P
@dataclass
class TabularModel:
    """A finite MDP: dense arrays for DP and the outcome lists for sampling (see tabular.BatchEnv).
    outcome_* arrays have shape (S, A, K), K = the most outcomes of any (s, a), padded with p = 0."""
    R: np.ndarray                    # (S, A)     expected one-step reward
    T: np.ndarray                    # (S, A, S)  probability of continuing into s' (terminal outcomes removed)
    initial: np.ndarray              # (S,)       start-state distribution
    outcome_prob: np.ndarray         # (S, A, K)
    outcome_next: np.ndarray         # (S, A, K)  int
    outcome_reward: np.ndarray       # (S, A, K)
    outcome_terminated: np.ndarray   # (S, A, K)  bool

    @property
    def n_states(self) -> int:
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        return self.R.shape[1]

    @classmethod
    def from_env(cls, env) -> "TabularModel":
        """Read `env.unwrapped.P` and its start distribution (`initial_state_distrib`, or
        `start_state_index`). Raises ValueError naming what is missing."""
        base = getattr(env, "unwrapped", env)
        table = getattr(base, "P", None)
        if not isinstance(table, dict):
            raise ValueError(f"{type(base).__name__} has no transition table P (dict of dicts); "
                             f"dynamic programming needs a tabular model such as FrozenLake, CliffWalking, Taxi")
        initial = getattr(base, "initial_state_distrib", None)
        return cls.from_table(table, None if initial is None else np.asarray(initial, dtype=np.float64))

    @classmethod
    def from_table(cls, table: dict, initial=None) -> "TabularModel":
        n_states, n_actions = len(table), len(table[0])
        k = max(len(table[s][a]) for s in range(n_states) for a in range(n_actions))
        R = np.zeros((n_states, n_actions))
        T = np.zeros((n_states, n_actions, n_states))
        prob = np.zeros((n_states, n_actions, k))
        nxt = np.zeros((n_states, n_actions, k), dtype=np.int64)
        rew = np.zeros((n_states, n_actions, k))
        term = np.zeros((n_states, n_actions, k), dtype=bool)
        for s in range(n_states):
            if len(table[s]) != n_actions:
                raise ValueError(f"P[{s}] has {len(table[s])} actions, expected {n_actions} like P[0]")
            for a in range(n_actions):
                for i, (p, s2, r, done) in enumerate(table[s][a]):
                    R[s, a] += p * r
                    if not done:
                        T[s, a, s2] += p
                    prob[s, a, i], nxt[s, a, i], rew[s, a, i], term[s, a, i] = p, s2, r, done
        if not np.allclose(prob.sum(axis=2), 1.0):
            s, a = np.argwhere(~np.isclose(prob.sum(axis=2), 1.0))[0]
            raise ValueError(f"P[{s}][{a}]: outcome probabilities sum to {prob[s, a].sum()}, expected 1")
        if initial is None:
            initial = np.zeros(n_states)
            initial[0] = 1.0
        return cls(R, T, np.asarray(initial, dtype=np.float64), prob, nxt, rew, term)


# ==================================================================== the pieces
def q_from_v(model: TabularModel, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = R(s, a) + gamma * sum_s' T(s, a, s') V(s'): one Bellman backup for every (s, a)."""
    ### BEGIN SOLUTION bellman_backup
    ### task: Q(s, a) for every (s, a) from V, with the model's R (S, A) and T (S, A, S')
    ### hint: q_from_v's docstring: Q(s, a) = R(s, a) + gamma * sum_s' T(s, a, s') V(s')
    return model.R + gamma * model.T @ V
    ### END SOLUTION


def greedy_policy(Q: np.ndarray) -> np.ndarray:
    """The one-hot policy of argmax_a Q(s, a) (the lowest action among exact ties)."""
    return np.eye(Q.shape[1])[Q.argmax(axis=1)]


def policy_evaluation(model: TabularModel, policy: np.ndarray, gamma: float, theta: float = 1e-10,
                      max_sweeps: int = 100_000, V: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Iterative policy evaluation (S&B 4.1): repeat V(s) <- sum_a pi(a|s) Q(s, a) until the largest change
    of a sweep is < theta. Returns (V, sweeps). Starts from V (or zeros)."""
    V = np.zeros(model.n_states) if V is None else np.array(V, dtype=np.float64)
    for sweep in range(1, max_sweeps + 1):
        ### BEGIN SOLUTION policy_evaluation
        ### task: one sweep of policy evaluation: V(s) <- sum_a pi(a|s) Q(s, a)
        ### hint: policy_evaluation's docstring (S&B 4.1)
        new_V = (policy * q_from_v(model, V, gamma)).sum(axis=1)
        ### END SOLUTION
        delta = np.abs(new_V - V).max()
        V = new_V
        if delta < theta:
            return V, sweep
    raise RuntimeError(f"policy evaluation did not converge in {max_sweeps} sweeps (last change {delta:.3g}); "
                       f"with gamma = 1 the policy may never terminate")


def policy_iteration(model: TabularModel, gamma: float, theta: float = 1e-10,
                     max_iterations: int = 1000) -> tuple[np.ndarray, np.ndarray, dict]:
    """Policy iteration (S&B 4.3): evaluate pi, make it greedy w.r.t. its own values, until stable.
    Starts from "always action 0". An action is replaced only by a strictly better one (by more than
    1e-12, above rounding), so ties cannot make it switch back and forth forever.
    Returns (V, policy, {"iterations", "sweeps"})."""
    actions = np.zeros(model.n_states, dtype=np.int64)
    V, sweeps = None, 0
    for iteration in range(1, max_iterations + 1):
        policy = np.eye(model.n_actions)[actions]
        V, n = policy_evaluation(model, policy, gamma, theta, V=V)                  # 1. evaluation
        sweeps += n
        Q = q_from_v(model, V, gamma)                                               # 2. improvement
        better = Q.max(axis=1) > Q[np.arange(model.n_states), actions] + 1e-12
        if not better.any():                                                        # policy stable
            return V, policy, {"iterations": iteration, "sweeps": sweeps}
        actions = np.where(better, Q.argmax(axis=1), actions)
    raise RuntimeError(f"policy iteration did not stabilise in {max_iterations} iterations")


def value_iteration(model: TabularModel, gamma: float, theta: float = 1e-10,
                    max_sweeps: int = 100_000) -> tuple[np.ndarray, np.ndarray, dict]:
    """Value iteration (S&B 4.4): V(s) <- max_a Q(s, a) until the largest change of a sweep is < theta,
    then the greedy policy. Returns (V, policy, {"sweeps"})."""
    V = np.zeros(model.n_states)
    for sweep in range(1, max_sweeps + 1):
        ### BEGIN SOLUTION value_iteration
        ### task: one sweep of value iteration: V(s) <- max_a Q(s, a)
        ### hint: value_iteration's docstring (S&B 4.4)
        new_V = q_from_v(model, V, gamma).max(axis=1)
        ### END SOLUTION
        delta = np.abs(new_V - V).max()
        V = new_V
        if delta < theta:
            return V, greedy_policy(q_from_v(model, V, gamma)), {"sweeps": sweep}
    raise RuntimeError(f"value iteration did not converge in {max_sweeps} sweeps (last change {delta:.3g})")


# ==================================================================== exact answers (checks)
def exact_policy_values(model: TabularModel, policy: np.ndarray, gamma: float) -> np.ndarray:
    """V_pi by solving (I - gamma T_pi) V = R_pi with T_pi[s, s'] = sum_a pi(a|s) T[s, a, s']
    (a direct solve: no sweeps, no tolerance)."""
    T_pi = np.einsum("sa,sat->st", policy, model.T)
    R_pi = (policy * model.R).sum(axis=1)
    return np.linalg.solve(np.eye(model.n_states) - gamma * T_pi, R_pi)


def bellman_optimality_residual(model: TabularModel, V: np.ndarray, gamma: float) -> float:
    """max_s |max_a Q(s, a) - V(s)|: zero exactly for the optimal values (so, with exact_policy_values,
    a certificate that a policy is optimal)."""
    return float(np.abs(q_from_v(model, V, gamma).max(axis=1) - V).max())


def finite_horizon_values(model: TabularModel, horizon: int, policy: np.ndarray | None = None) -> np.ndarray:
    """Undiscounted expected return within `horizon` steps (gamma = 1, H backups from V_0 = 0):
    V_h = R_pi + T_pi V_{h-1} for a policy, or V_h = max_a (R + T V_{h-1}) for the best (time-dependent)
    policy. With reward 1 at the goal and 0 elsewhere, this is the probability of reaching the goal
    before a time limit of `horizon` steps truncates the episode."""
    V = np.zeros(model.n_states)
    for _ in range(horizon):
        Q = q_from_v(model, V, 1.0)
        V = Q.max(axis=1) if policy is None else (policy * Q).sum(axis=1)
    return V
