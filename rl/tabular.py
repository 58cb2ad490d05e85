r"""Tabular model-free RL (Sutton & Barto, ch. 5-7, 12): Monte Carlo, TD(0), SARSA, Expected SARSA,
Q-learning, TD(lambda) and SARSA(lambda), each run for many independent runs at once.

Every table carries a leading run axis: V[run, s], Q[run, s, a]. Each loop below is the book's boxed
algorithm with "for every run" done by NumPy indexing; runs=1 is the plain single-agent algorithm.
In prediction, runs whose episode has ended wait (`active` is False) until every run has finished it;
in control each run starts its next episode as soon as its last one ends (EpisodeClock), so one long
episode does not hold up the others. `max_steps` caps an episode (CliffWalking has no time limit of its
own): the capped episode is *truncated*, so its last update still bootstraps, like any time limit.

The targets (the only difference between the control methods; alpha is the step size):
    SARSA            Q(S,A) += alpha [R + gamma Q(S',A')                    - Q(S,A)]   A' ~ eps-greedy
    Expected SARSA   Q(S,A) += alpha [R + gamma sum_a pi(a|S') Q(S',a)      - Q(S,A)]
    Q-learning       Q(S,A) += alpha [R + gamma max_a Q(S',a)               - Q(S,A)]
with the bootstrap term dropped when S' is terminal. TD(0) prediction: V(S) += alpha [R + gamma V(S') - V(S)].
Monte Carlo waits for the return G_t instead of bootstrapping.

The environment is stepped by `BatchEnv`, which samples the outcome lists of gymnasium's transition
table (`env.unwrapped.P`, read by dynamic_programming.TabularModel) for all runs at once.
"""
from __future__ import annotations

import numpy as np

from rl.dynamic_programming import TabularModel

CONTROL_METHODS = ("sarsa", "expected_sarsa", "q_learning")


# ==================================================================== the environment, for many runs
class BatchEnv:
    """`runs` copies of a tabular environment, stepped together from its model (the same outcome
    probabilities, rewards and `terminated` flags as gymnasium's own step, drawn with `rng`)."""

    def __init__(self, model: TabularModel, runs: int, rng: np.random.Generator):
        self.model, self.runs, self.rng = model, runs, rng
        self._cumulative = np.cumsum(model.outcome_prob, axis=2)
        self._deterministic = bool(np.all(model.outcome_prob[:, :, 0] == 1.0))   # one outcome: no draw

    def reset(self) -> np.ndarray:
        """Start states of every run, drawn from the start distribution."""
        return self.rng.choice(self.model.n_states, size=self.runs, p=self.model.initial)

    def step(self, states: np.ndarray, actions: np.ndarray):
        """(next_states, rewards, terminated), each of shape (runs,)."""
        m = self.model
        if self._deterministic:
            k = 0
        else:
            cumulative = self._cumulative[states, actions]                     # (runs, K)
            k = np.minimum((cumulative <= self.rng.random(len(states))[:, None]).sum(axis=1),
                           cumulative.shape[1] - 1)
        return (m.outcome_next[states, actions, k], m.outcome_reward[states, actions, k],
                m.outcome_terminated[states, actions, k])


# ==================================================================== policies and targets
def greedy_actions(q_rows: np.ndarray, rng: np.random.Generator, u: np.ndarray | None = None) -> np.ndarray:
    """argmax_a of each row of q_rows (runs, A), ties broken uniformly at random (an all-zero table
    must not always pick action 0); u: uniform numbers of q_rows' shape to use (default: drawn)."""
    ties = q_rows == q_rows.max(axis=-1, keepdims=True)
    return ((rng.random(q_rows.shape) if u is None else u) * ties).argmax(axis=-1)


def epsilon_greedy(q_rows: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """With probability epsilon a uniformly random action, otherwise a greedy one (per row).
    One draw of A + 1 uniforms per row: u_0 < epsilon decides, then u_1 picks the random action, or
    u_1..u_A break the greedy ties (only one of the two is used, so they need not be independent)."""
    u = rng.random((q_rows.shape[0], q_rows.shape[1] + 1))
    explore = u[:, 0] < epsilon
    random_action = (u[:, 1] * q_rows.shape[1]).astype(np.int64)
    return np.where(explore, random_action, greedy_actions(q_rows, rng, u[:, 1:]))


def epsilon_greedy_probs(q_rows: np.ndarray, epsilon: float) -> np.ndarray:
    """pi(a|s) of epsilon_greedy: epsilon / A everywhere plus (1 - epsilon) shared by the tied maxima."""
    ties = (q_rows == q_rows.max(axis=-1, keepdims=True)).astype(np.float64)
    return epsilon / q_rows.shape[-1] + (1.0 - epsilon) * ties / ties.sum(axis=-1, keepdims=True)


def sarsa_target(reward, terminated, q_next_rows, next_action, gamma, epsilon=None):
    """R + gamma Q(S', A'), A' the action the agent will actually take (on-policy)."""
    ### BEGIN SOLUTION sarsa_target
    ### task: the on-policy target R + gamma Q(S', A'), no bootstrap after termination
    ### hint: sarsa_target's docstring
    return reward + gamma * (1.0 - terminated) * q_next_rows[np.arange(len(next_action)), next_action]
    ### END SOLUTION


def expected_sarsa_target(reward, terminated, q_next_rows, next_action, gamma, epsilon):
    """R + gamma E_{a ~ pi}[Q(S', a)] with pi the epsilon-greedy behaviour policy."""
    ### BEGIN SOLUTION expected_sarsa_target
    ### task: the target with the expected next value under the epsilon-greedy policy
    ### hint: expected_sarsa_target's docstring, and epsilon_greedy_probs
    return reward + gamma * (1.0 - terminated) * (epsilon_greedy_probs(q_next_rows, epsilon) * q_next_rows).sum(-1)
    ### END SOLUTION


def q_learning_target(reward, terminated, q_next_rows, next_action, gamma, epsilon=None):
    """R + gamma max_a Q(S', a): the greedy policy's value, whatever the agent does next (off-policy)."""
    ### BEGIN SOLUTION q_learning_target
    ### task: the off-policy target R + gamma max_a Q(S', a), no bootstrap after termination
    ### hint: q_learning_target's docstring
    return reward + gamma * (1.0 - terminated) * q_next_rows.max(axis=-1)
    ### END SOLUTION


TARGETS = {"sarsa": sarsa_target, "expected_sarsa": expected_sarsa_target, "q_learning": q_learning_target}


def td_error(V, run, s, reward, s_next, terminated, gamma):
    """delta = R + gamma V(S') - V(S) (V(S') = 0 if terminal), for every run given."""
    ### BEGIN SOLUTION td_error
    ### task: the TD error of each run's transition; no bootstrap after termination
    ### hint: td_error's docstring
    return reward + gamma * (1.0 - terminated) * V[run, s_next] - V[run, s]
    ### END SOLUTION


def td0_update(V, run, s, reward, s_next, terminated, alpha, gamma):
    """V(S) <- V(S) + alpha [R + gamma V(S') - V(S)] (V(S') = 0 if terminal), for every run given."""
    delta = td_error(V, run, s, reward, s_next, terminated, gamma)
    V[run, s] += alpha * delta
    return delta


# ==================================================================== TD control
class EpisodeClock:
    """Episode bookkeeping for control runs that restart independently: each run starts its next episode as
    soon as its current one ends (terminated, or truncated at max_steps), until it has played `episodes`.
    Sums each episode's rewards into returns[episode, run]."""

    def __init__(self, env: BatchEnv, episodes: int, max_steps: int):
        self.env, self.max_steps = env, max_steps
        self.episode = np.zeros(env.runs, dtype=np.int64)          # index of each run's current episode
        self.steps = np.zeros(env.runs, dtype=np.int64)
        self.returns = np.zeros((episodes, env.runs))
        self.run = np.arange(env.runs)

    @property
    def active(self) -> np.ndarray:
        return self.episode < len(self.returns)

    def record(self, reward: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """Count one step of every active run; returns the mask of runs whose episode ended with it."""
        active = self.active
        self.returns[self.episode[active], self.run[active]] += reward[active]
        self.steps += 1
        ended = active & (terminated | (self.steps >= self.max_steps))
        self.episode += ended
        self.steps[ended] = 0
        return ended

    def restart(self, states: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """States with a fresh start state for every run whose episode ended."""
        states = states.copy()
        states[ended] = self.env.reset()[ended]
        return states


def td_control(model: TabularModel, method: str, episodes: int, runs: int, alpha: float, epsilon: float,
               gamma: float, rng: np.random.Generator, max_steps: int = 10_000):
    """SARSA, Expected SARSA or Q-learning (S&B 6.4-6.6), epsilon-greedy behaviour, Q initialised to 0.
    Returns (Q (runs, S, A), returns (episodes, runs): the sum of rewards of each training episode).
    A' is drawn before the update (SARSA's target needs it) and is the action taken next by every
    method: the same as the book's boxes except when S' = S."""
    if method not in TARGETS:
        raise ValueError(f"method must be one of {CONTROL_METHODS}, got {method!r}")
    target_of = TARGETS[method]
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    clock = EpisodeClock(env, episodes, max_steps)
    Q = np.zeros((runs, model.n_states, model.n_actions))
    s = env.reset()
    a = epsilon_greedy(Q[run, s], epsilon, rng)
    while clock.active.any():
        s_next, reward, terminated = env.step(s, a)
        a_next = epsilon_greedy(Q[run, s_next], epsilon, rng)
        target = target_of(reward, terminated, Q[run, s_next], a_next, gamma, epsilon)
        active = clock.active
        r, i, j = run[active], s[active], a[active]
        Q[r, i, j] += alpha * (target[active] - Q[r, i, j])
        ended = clock.record(reward, terminated)
        if ended.any():                                   # those runs start their next episode
            s_next = clock.restart(s_next, ended)
            a_next[ended] = epsilon_greedy(Q[run[ended], s_next[ended]], epsilon, rng)
        s, a = s_next, a_next
    return Q, clock.returns


def sarsa_lambda(model: TabularModel, episodes: int, runs: int, alpha: float, epsilon: float, gamma: float,
                 lam: float, rng: np.random.Generator, max_steps: int = 10_000):
    """SARSA(lambda) with accumulating eligibility traces (S&B 12.7, tabular):
        delta = R + gamma Q(S',A') - Q(S,A);  E(S,A) += 1;  Q += alpha delta E;  E *= gamma lambda.
    Every pair visited k steps ago gets the share (gamma lambda)^k of each TD error. Draws the same random
    numbers as td_control("sarsa"), so lam = 0 reproduces SARSA exactly. Returns (Q, returns) like td_control."""
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    clock = EpisodeClock(env, episodes, max_steps)
    Q = np.zeros((runs, model.n_states, model.n_actions))
    E = np.zeros_like(Q)
    s = env.reset()
    a = epsilon_greedy(Q[run, s], epsilon, rng)
    while clock.active.any():
        s_next, reward, terminated = env.step(s, a)
        a_next = epsilon_greedy(Q[run, s_next], epsilon, rng)
        active = clock.active
        delta = sarsa_target(reward, terminated, Q[run, s_next], a_next, gamma) - Q[run, s, a]
        ### BEGIN SOLUTION eligibility_traces
        ### task: accumulate the trace of (S, A), update every Q by its trace, decay the traces
        ### hint: sarsa_lambda's docstring: E(S,A) += 1;  Q += alpha delta E;  E *= gamma lambda
        E[run[active], s[active], a[active]] += 1.0
        Q += alpha * (delta * active)[:, None, None] * E
        E *= gamma * lam
        ### END SOLUTION
        ended = clock.record(reward, terminated)
        if ended.any():
            E[ended] = 0.0                                # traces start at 0 every episode
            s_next = clock.restart(s_next, ended)
            a_next[ended] = epsilon_greedy(Q[run[ended], s_next[ended]], epsilon, rng)
        s, a = s_next, a_next
    return Q, clock.returns


# ==================================================================== prediction: TD(0), TD(lambda), MC
def _sample_actions(policy: np.ndarray, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per run from the (S, A) policy table."""
    cumulative = np.cumsum(policy[states], axis=1)
    return np.minimum((cumulative <= rng.random(len(states))[:, None]).sum(axis=1), policy.shape[1] - 1)


def td0_prediction(model: TabularModel, policy: np.ndarray, episodes: int, runs: int, alpha: float, gamma: float,
                   rng: np.random.Generator, v0: float = 0.0, max_steps: int = 10_000, on_episode=None):
    """Tabular TD(0) prediction of v_pi (S&B 6.1): after every step, td0_update. V starts at v0 (terminal
    states are never updated). `on_episode(episode, V)` is called after every episode (learning curves).
    Returns V (runs, S)."""
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    V = np.full((runs, model.n_states), float(v0))
    for episode in range(episodes):
        s = env.reset()
        active = np.ones(runs, dtype=bool)
        for _ in range(max_steps):
            s_next, reward, terminated = env.step(s, _sample_actions(policy, s, rng))
            td0_update(V, run[active], s[active], reward[active], s_next[active], terminated[active], alpha, gamma)
            active &= ~terminated
            if not active.any():
                break
            s = s_next
        if on_episode is not None:
            on_episode(episode, V)
    return V


def td_lambda_prediction(model: TabularModel, policy: np.ndarray, episodes: int, runs: int, alpha: float,
                         gamma: float, lam: float, rng: np.random.Generator, v0: float = 0.0,
                         max_steps: int = 10_000, on_episode=None):
    """TD(lambda) prediction with accumulating eligibility traces (S&B 12.2, tabular):
        delta = R + gamma V(S') - V(S);  E *= gamma lambda;  E(S) += 1;  V += alpha delta E.
    Every state visited k steps ago gets the share (gamma lambda)^k of each TD error; lam = 0 is TD(0)
    (draws the same random numbers as td0_prediction, so it reproduces it exactly). Returns V (runs, S)."""
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    V = np.full((runs, model.n_states), float(v0))
    for episode in range(episodes):
        E = np.zeros_like(V)                                        # traces start at 0 every episode
        s = env.reset()
        active = np.ones(runs, dtype=bool)
        for _ in range(max_steps):
            s_next, reward, terminated = env.step(s, _sample_actions(policy, s, rng))
            delta = td_error(V, run, s, reward, s_next, terminated, gamma)
            E *= gamma * lam
            E[run[active], s[active]] += 1.0
            V += alpha * (delta * active)[:, None] * E
            active &= ~terminated
            if not active.any():
                break
            s = s_next
        if on_episode is not None:
            on_episode(episode, V)
    return V


def rollout(env: BatchEnv, choose_action, max_steps: int):
    """One episode in every run: (states, actions, rewards, valid), each (T, runs); valid[t] is False
    after a run's episode has ended. choose_action(states) -> actions."""
    s = env.reset()
    active = np.ones(env.runs, dtype=bool)
    states, actions, rewards, valid = [], [], [], []
    for _ in range(max_steps):
        a = choose_action(s)
        s_next, reward, terminated = env.step(s, a)
        states.append(s)
        actions.append(a)
        rewards.append(np.where(active, reward, 0.0))
        valid.append(active)
        active = active & ~terminated
        if not active.any():
            break
        s = s_next
    return np.array(states), np.array(actions), np.array(rewards), np.array(valid)


def first_visit_returns(keys: np.ndarray, rewards: np.ndarray, valid: np.ndarray, gamma: float, n_keys: int):
    """G_t = R_{t+1} + gamma G_{t+1} backwards over (T, runs), and a (T, runs) mask of the first visit
    of each key (a state, or a state-action index) in each run's episode."""
    returns, G = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        G = rewards[t] + gamma * G
        returns[t] = G
    seen, first = np.zeros((rewards.shape[1], n_keys), dtype=bool), np.zeros_like(valid)
    run = np.arange(rewards.shape[1])
    for t in range(len(rewards)):
        first[t] = valid[t] & ~seen[run, keys[t]]
        seen[run, keys[t]] |= valid[t]
    return returns, first


def mc_prediction(model: TabularModel, policy: np.ndarray, episodes: int, runs: int, gamma: float,
                  rng: np.random.Generator, alpha: float | None = None, v0: float = 0.0, max_steps: int = 10_000,
                  on_episode=None):
    """First-visit Monte Carlo prediction of v_pi (S&B 5.1): after each episode, for the first visit of
    each state, V(S_t) <- average of its returns (alpha None), or V(S_t) += alpha (G_t - V(S_t))
    (constant-alpha MC, S&B 6.1). Returns V (runs, S)."""
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    V = np.full((runs, model.n_states), float(v0))
    counts = np.zeros((runs, model.n_states))
    for episode in range(episodes):
        states, _, rewards, valid = rollout(env, lambda s: _sample_actions(policy, s, rng), max_steps)
        returns, first = first_visit_returns(states, rewards, valid, gamma, model.n_states)
        for t in range(len(states)):                 # first visits are distinct states: order is irrelevant
            r, s, G = run[first[t]], states[t][first[t]], returns[t][first[t]]
            counts[r, s] += 1
            step = 1.0 / counts[r, s] if alpha is None else alpha
            V[r, s] += step * (G - V[r, s])
        if on_episode is not None:
            on_episode(episode, V)
    return V


def mc_control(model: TabularModel, episodes: int, runs: int, epsilon: float, gamma: float,
               rng: np.random.Generator, max_steps: int = 10_000):
    """On-policy first-visit MC control with an epsilon-soft policy (S&B 5.4): play an episode with the
    epsilon-greedy policy of Q, then Q(S_t, A_t) <- average of its first-visit returns.
    Returns (Q (runs, S, A), returns (episodes, runs))."""
    env, run = BatchEnv(model, runs, rng), np.arange(runs)
    n_actions = model.n_actions
    Q = np.zeros((runs, model.n_states, n_actions))
    counts = np.zeros_like(Q)
    episode_returns = np.zeros((episodes, runs))
    for episode in range(episodes):
        states, actions, rewards, valid = rollout(env, lambda s: epsilon_greedy(Q[run, s], epsilon, rng), max_steps)
        returns, first = first_visit_returns(states * n_actions + actions, rewards, valid, gamma,
                                             model.n_states * n_actions)
        for t in range(len(states)):
            r, s, a, G = run[first[t]], states[t][first[t]], actions[t][first[t]], returns[t][first[t]]
            counts[r, s, a] += 1
            Q[r, s, a] += (G - Q[r, s, a]) / counts[r, s, a]
        episode_returns[episode] = rewards.sum(axis=0)
    return Q, episode_returns


def mc_prediction_env(env, policy, episodes: int, gamma: float, rng: np.random.Generator, on_episode=None):
    """First-visit MC prediction on a gymnasium env, one episode at a time, exactly as the book's box:
    generate an episode with `policy(obs) -> action`; G <- gamma G + R backwards; at the first visit of
    S_t, append G to Returns(S_t) and V(S_t) <- average(Returns(S_t)) (kept as a running mean). States are
    any hashable observations (Blackjack's tuples), so V is a dict. The env's reset and action space
    are seeded once from rng. `on_episode(episode, V)` after each episode. Returns (V, visit counts)."""
    env.action_space.seed(int(rng.integers(2 ** 31)))
    obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
    V, counts = {}, {}
    for episode in range(episodes):
        if episode:
            obs, _ = env.reset()
        trajectory, done = [], False
        while not done:
            next_obs, reward, terminated, truncated, _ = env.step(policy(obs))
            trajectory.append((obs, reward))
            obs, done = next_obs, terminated or truncated
        first = {}
        for t, (s, _) in enumerate(trajectory):
            first.setdefault(s, t)
        G = 0.0
        for t in range(len(trajectory) - 1, -1, -1):
            s, reward = trajectory[t]
            G = gamma * G + reward
            if first[s] == t:
                counts[s] = counts.get(s, 0) + 1
                V[s] = V.get(s, 0.0) + (G - V.get(s, 0.0)) / counts[s]
        if on_episode is not None:
            on_episode(episode, V)
    return V, counts
