"""Experience replay for off-policy agents: a ring buffer of transitions and the n-step window that
writes into it.

A stored transition is (s_t, a_t, R, s_{t+k}, terminated, k) with the discounted reward sum
    R = r_t + gamma r_{t+1} + ... + gamma^{k-1} r_{t+k-1},
so its TD target is y = R + gamma^k (1 - terminated) max_a Q_target(s_{t+k}, a). With k = 1 this is the
one-step transition of the DQN paper; k = n > 1 (n-step returns, as in Rainbow) carries the news of a
failure n steps back per update instead of one. Near the end of an episode k < n: the window flushes
whatever it holds.
"""
from __future__ import annotations

import numpy as np


class ReplayBuffer:
    """A preallocated ring of the last `capacity` transitions (NumPy arrays, no Python objects).

    `pos` is where the next transition goes; it wraps to 0 after capacity, overwriting the oldest.
    `size` counts filled slots (<= capacity): sampling draws only from slots [0, size)."""

    def __init__(self, capacity: int, obs_dim: int):
        if capacity <= 0:
            raise ValueError(f"ReplayBuffer: capacity must be positive, got {capacity}")
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)        # R: the discounted sum of k rewards
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)     # 1.0 = no bootstrap (truncation is NOT stored)
        self.horizon = np.ones(capacity, np.int64)           # k: the target bootstraps with gamma ** k

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool, horizon: int = 1) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.horizon[i] = next_obs, float(terminated), horizon
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        """A batch of transitions drawn uniformly (with replacement) from the filled slots."""
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": self.obs[idx], "actions": self.actions[idx], "rewards": self.rewards[idx],
                "next_obs": self.next_obs[idx], "terminated": self.terminated[idx], "horizon": self.horizon[idx]}

    def __len__(self):
        return self.size

    # -- checkpointing: only the filled slots (saved uncompressed: about 52 bytes per transition)
    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n], "actions": self.actions[:n], "rewards": self.rewards[:n],
                "next_obs": self.next_obs[:n], "terminated": self.terminated[:n], "horizon": self.horizon[:n],
                "pos": np.asarray(self.pos), "size": np.asarray(n)}

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise ValueError(f"ReplayBuffer: checkpoint holds {n} transitions, capacity is {self.capacity}")
        for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
            getattr(self, name)[:n] = state[name]
        self.horizon[:n] = state["horizon"] if "horizon" in state else 1     # older checkpoints: one-step
        self.pos, self.size = int(state["pos"]), n


class NStepWindow:
    """Holds the last (up to n) steps of the current episode and emits n-step transitions.

    push() takes one environment step and returns the transitions that are now complete, as
    (obs, action, R, next_obs, terminated, k) tuples for ReplayBuffer.add: one per step once the window
    is full, and all that remain when the episode ends (then k = n-1, ..., 1). With n = 1 each step comes
    straight back as (obs, action, reward, next_obs, terminated, 1)."""

    def __init__(self, n: int, gamma: float):
        if n < 1:
            raise ValueError(f"NStepWindow: n must be at least 1, got {n}")
        self.n, self.gamma = n, gamma
        self.pending: list[tuple] = []           # (obs, action, reward) of steps not yet emitted

    def push(self, obs, action: int, reward: float, next_obs, terminated: bool, episode_over: bool) -> list[tuple]:
        self.pending.append((np.array(obs, copy=True), action, float(reward)))
        ready = []
        while self.pending and (len(self.pending) == self.n or episode_over):
            k = len(self.pending)
            ### BEGIN SOLUTION n_step_return
            ### task: the discounted sum of the k pending rewards
            ### hint: the module docstring of rl/replay.py: R = r_t + gamma r_{t+1} + ... + gamma^{k-1} r_{t+k-1}
            discounted_sum = sum(self.gamma ** i * r for i, (_, _, r) in enumerate(self.pending))
            ### END SOLUTION
            first_obs, first_action, _ = self.pending.pop(0)
            ready.append((first_obs, first_action, discounted_sum, next_obs, terminated, k))
        return ready
