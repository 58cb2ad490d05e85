r"""REINFORCE (Williams, 1992) with baselines, on CartPole-v1, on our own autodiff engine.

The policy gradient with reward-to-go and a baseline, estimated from N sampled episodes:
    grad J(theta) ~= 1/N sum_i sum_t grad log pi_theta(a_t^i | s_t^i) * (G_t^i - b(s_t^i)),
    G_t = sum_{t' >= t} gamma^(t' - t) r_t'                     (discounted return-to-go)
Both the reward-to-go (rewards before t do not depend on a_t) and any baseline that does not depend on
a_t leave the estimate unbiased, because E_{a ~ pi}[grad log pi(a|s)] = grad sum_a pi(a|s) = grad 1 = 0.
A good baseline makes (G_t - b) small, and with it the variance.

Baselines here:
    none   b = 0
    mean   b = the mean of G_t over the batch (a constant)
    value  b = V_phi(s_t), a second network fitted to G_t by mean squared error (actor-critic style;
           V is the value *before* this batch's fit, so b does not depend on a_t through phi)
Return normalisation (`normalize_advantages`): A <- (A - mean A) / (std A + 1e-8) subtracts one more
constant baseline and divides by a positive scale; the scale changes the step size, not the direction
in expectation -- it is what makes one learning rate work at returns of 20 and of 500.

The loss whose gradient is that estimate (A_t = G_t - b_t treated as a constant):
    loss = - 1/T_total sum_{i,t} log pi(a_t^i | s_t^i) * A_t^i
(the mean over all T_total steps of the batch: the homework's 1/N sum_i sum_t, divided by the average
episode length, a positive scale that Adam's per-parameter normalisation mostly absorbs).
All the batch's states go through the policy in ONE forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.losses import mse_loss
from rl.common import (env_rng_state, forward_no_grad, hp, make_env,
                       set_env_rng_state, stream, training_env_seed)
from rl.evaluation import EpisodicAgent, greedy_action

BASELINES = ("none", "mean", "value")


@dataclass
class ReinforceConfig:
    # ---- budget (training stops at whichever runs out first; None = no limit)
    episodes: int | None = hp(1000, "training episodes", check="positive")
    steps: int | None = hp(None, "environment steps", check="positive")
    # ---- the estimator
    gamma: float = hp(0.99, "discount factor of the returns-to-go", check="fraction")
    episodes_per_update: int = hp(1, "N: episodes averaged in one gradient estimate", check="positive")
    baseline: str = hp("mean", "baseline b(s): none, mean (batch mean of G) or value (learned V(s))",
                       choices=BASELINES)
    normalize_advantages: bool = hp(True, "A <- (A - mean A) / std A: a constant baseline plus a scale")
    # ---- networks and optimisers
    hidden: tuple = hp((32,), "hidden layer widths of the policy (and value) network, ReLU",
                        check="may_be_empty")
    lr: float = hp(1e-2, "Adam learning rate of the policy", check="positive")
    lr_final_fraction: float = hp(1.0, "the policy's lr decays linearly to lr * this at the end of the budget",
                                  check="fraction")
    value_lr: float = hp(1e-2, "Adam learning rate of the value network (baseline value)", check="positive")
    max_grad_norm: float = hp(0.0, "clip the policy gradient's global L2 norm (0 = no clipping)", check="non_negative")


def mlp(sizes, out: int, rng=None) -> nets.Sequential:
    """sizes[0] inputs -> hidden layers (ReLU) -> `out` outputs (initial weights drawn from rng)."""
    return nets.mlp((*sizes, out), rng=rng)


# ==================================================================== the pieces of the estimator
def returns_to_go(rewards, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1}, G_T = r_T: one backward pass over an episode's rewards."""
    rewards = np.asarray(rewards, dtype=np.float32)
    out = np.zeros_like(rewards)
    running = np.float32(0.0)
    for t in range(len(rewards) - 1, -1, -1):
        ### BEGIN SOLUTION reward_to_go
        ### task: the return from step t, computed backwards
        ### hint: returns_to_go's docstring: G_t = r_t + gamma * G_{t+1}
        running = rewards[t] + np.float32(gamma) * running
        out[t] = running
        ### END SOLUTION
    return out


def sample_action(policy, obs, rng: np.random.Generator) -> int:
    """a ~ pi(. | obs) = softmax(policy(obs)), by inverting the CDF at one uniform draw."""
    logits = forward_no_grad(policy, obs)
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p / p.sum())
    return int(min(np.searchsorted(cdf, rng.random(), side="right"), len(cdf) - 1))


def policy_loss(policy, obs: np.ndarray, actions: np.ndarray, advantages: np.ndarray) -> Tensor:
    """loss = - mean_t log pi(a_t | s_t) * A_t, over every step of the batch in one forward pass.
    obs (T, obs_dim) float32, actions (T,) int, advantages (T,) float32 (constants: no gradient)."""
    log_probs = F.log_softmax(policy(Tensor(obs)), axis=1)              # (T, n_actions)
    ### BEGIN SOLUTION policy_gradient_loss
    ### task: the surrogate loss whose gradient is the REINFORCE gradient
    ### hint: policy_loss' docstring: loss = - mean_t log pi(a_t | s_t) * A_t
    taken = log_probs[np.arange(len(actions)), actions]                 # log pi(a_t | s_t), (T,)
    return -(taken * Tensor(advantages.astype(np.float32))).mean()
    ### END SOLUTION


def advantages_from(returns: np.ndarray, baseline_values: np.ndarray | None, baseline: str,
                    normalize: bool) -> np.ndarray:
    """A_t = G_t - b_t for the chosen baseline, then optionally normalised to mean 0, std 1."""
    if baseline == "none":
        adv = returns.copy()
    elif baseline == "mean":
        adv = returns - returns.mean()
    elif baseline == "value":
        ### BEGIN SOLUTION reinforce_baseline
        ### task: the advantage with a learned value baseline
        ### hint: advantages_from's docstring: A_t = G_t - b_t
        adv = returns - baseline_values
        ### END SOLUTION
    else:
        raise ValueError(f"unknown baseline {baseline!r}; expected one of {BASELINES}")
    if normalize:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv.astype(np.float32)


# ==================================================================== the agent and its training loop
class Reinforce(EpisodicAgent):
    """`train_update()` samples N episodes with the current policy and takes one gradient step.
    Checkpoints are taken between updates (i.e. between episodes)."""

    name = "reinforce"
    unit = "update"                # one train_step
    delivered = "final"            # the policy as training left it

    def __init__(self, cfg: ReinforceConfig, seed: int = 0):
        if cfg.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {cfg.baseline!r}")
        self.cfg, self.seed = cfg, seed
        # ---- seeding: named streams of one seed (initial weights, action sampling, the environment)
        self.rng = stream(seed, "actions")
        self.env_seed = training_env_seed(seed)
        self.env = make_env(self.env_seed)
        obs_dim, n_actions = self.env.observation_space.shape[0], int(self.env.action_space.n)

        init_rng = stream(seed, "init")
        self.policy = mlp((obs_dim, *cfg.hidden), n_actions, init_rng)  # logits of pi(a | s)
        self.optimizer = nets.Adam(self.policy.parameters(), lr=cfg.lr)
        self.value = mlp((obs_dim, *cfg.hidden), 1, init_rng) if cfg.baseline == "value" else None   # V(s)
        self.value_optimizer = nets.Adam(self.value.parameters(), lr=cfg.value_lr) if self.value else None

        self.env_steps = 0
        self.updates = 0
        self.episode_returns: list[float] = []
        self.update_losses: list[float] = []     # policy loss of each update
        self.value_losses: list[float] = []      # value-network MSE of each update (baseline=value)

    def _play_episode(self):
        """One episode with actions sampled from pi; returns (obs (T, d), actions (T,), rewards (T,))."""
        first = not self.episode_returns
        obs, _ = self.env.reset(seed=self.env_seed if first else None)
        observations, actions, rewards, done = [], [], [], False
        while not done:
            action = sample_action(self.policy, obs, self.rng)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            obs, done = next_obs, terminated or truncated
            self.env_steps += 1
            if self.cfg.steps and self.env_steps >= self.cfg.steps:
                break
        self.episode_returns.append(float(sum(rewards)))
        return np.asarray(observations, np.float32), np.asarray(actions, np.int64), np.asarray(rewards, np.float32)

    def train_update(self) -> dict:
        cfg = self.cfg
        # ---- ALGO LOGIC: sample N episodes with the current policy
        batch_obs, batch_actions, batch_returns = [], [], []
        for _ in range(cfg.episodes_per_update):
            if self.finished():
                break
            obs, actions, rewards = self._play_episode()
            batch_obs.append(obs)
            batch_actions.append(actions)
            batch_returns.append(returns_to_go(rewards, cfg.gamma))      # G_t of this episode
        obs, actions = np.concatenate(batch_obs), np.concatenate(batch_actions)
        returns = np.concatenate(batch_returns)

        # ---- ALGO LOGIC: baseline and advantages A_t = G_t - b(s_t)
        values = None
        if self.value is not None:
            with no_grad():
                values = self.value(Tensor(obs)).data[:, 0]
        advantages = advantages_from(returns, values, cfg.baseline, cfg.normalize_advantages)

        # ---- ALGO LOGIC: policy gradient step on loss = - mean log pi(a_t|s_t) A_t
        self.optimizer.lr = cfg.lr * (1.0 - (1.0 - cfg.lr_final_fraction) * self.progress())
        loss = policy_loss(self.policy, obs, actions, advantages)
        self.optimizer.zero_grad()
        loss.backward()
        if cfg.max_grad_norm > 0:
            nets.clip_grad_norm_(self.optimizer.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.update_losses.append(float(loss))

        # ---- ALGO LOGIC: fit the value baseline to the returns (MSE), after it was used
        if self.value is not None:
            value_loss = mse_loss(self.value(Tensor(obs))[:, 0], Tensor(returns))
            self.value_optimizer.zero_grad()
            value_loss.backward()
            self.value_optimizer.step()
            self.value_losses.append(float(value_loss))
        self.updates += 1
        return {"return": self.episode_returns[-1]}

    train_step = train_update

    def greedy_action(self, obs) -> int:
        return greedy_action(self.policy, obs)

    def losses(self) -> dict:
        curves = {"policy_loss": self.update_losses}
        if self.value_losses:
            curves["value_loss"] = self.value_losses
        return curves

    def extra_metrics(self) -> dict:
        return {"updates": self.updates}

    def figures(self) -> dict:
        return {}

    # ---------------------------------------------------------------- checkpoint (between updates)
    def state_dict(self) -> dict:
        """Counters, generator states and history (JSON), and the networks' and optimisers' arrays."""
        state = {"env_steps": self.env_steps, "updates": self.updates, "rng": self.rng.bit_generator.state,
                 "env_rng": env_rng_state(self.env), "episode_returns": self.episode_returns,
                 "update_losses": self.update_losses, "value_losses": self.value_losses,
                 "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.value is not None:
            state.update(value=self.value.state_dict(), value_optimizer=self.value_optimizer.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        self.episode_returns = [float(r) for r in state["episode_returns"]]
        self.update_losses = [float(x) for x in state["update_losses"]]
        self.value_losses = [float(x) for x in state["value_losses"]]
        set_env_rng_state(self.env, state["env_rng"], self.env_seed, started=bool(self.episode_returns))


Config, Agent = ReinforceConfig, Reinforce
