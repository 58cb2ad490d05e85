r"""The 5-state random walk of Sutton & Barto, Example 6.2, as a gymnasium environment.

    [T] - A - B - C - D - E - [T]        states 0..6; 0 and 6 are terminal, every episode starts in C (3)
Each step moves left or right with probability 1/2, whatever the action (the single action 0: this is a
Markov reward process). Reward +1 on reaching the right end, 0 otherwise; undiscounted, so the true value
of each state is its probability of ending on the right: v(A..E) = 1/6, 2/6, 3/6, 4/6, 5/6.

Like gymnasium's toy-text environments it exposes its model: P[s][a] = [(p, s', r, terminated), ...].
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class RandomWalkEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, n_states: int = 5):
        if n_states < 1:
            raise ValueError(f"n_states must be >= 1, got {n_states}")
        self.n = n_states
        self.observation_space = spaces.Discrete(n_states + 2)
        self.action_space = spaces.Discrete(1)
        self.start_state = (n_states + 1) // 2
        self.initial_state_distrib = np.eye(n_states + 2)[self.start_state]
        right_end = n_states + 1
        self.P = {s: {0: [(0.5, s2, float(s2 == right_end), s2 in (0, right_end)) for s2 in (s - 1, s + 1)]}
                  for s in range(1, right_end)}
        for end in (0, right_end):                      # terminal: absorbing with reward 0 (never stepped)
            self.P[end] = {0: [(1.0, end, 0.0, True)]}
        self.state = self.start_state

    @property
    def true_values(self) -> np.ndarray:
        """v(s) for s = 0..n+1: s / (n + 1) inside, 0 at both terminal ends."""
        v = np.arange(self.n + 2) / (self.n + 1)
        v[[0, -1]] = 0.0
        return v

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.start_state
        return self.state, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"the random walk has the single action 0, got {action!r}")
        if self.state in (0, self.n + 1):
            raise RuntimeError("step() after the episode ended: call reset() first")
        self.state += 1 if self.np_random.random() < 0.5 else -1
        terminated = self.state in (0, self.n + 1)
        return self.state, float(self.state == self.n + 1), terminated, False, {}
