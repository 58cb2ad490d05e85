r"""Advantage actor-critic (A2C, and its PPO-clipped reuse of each rollout) on CartPole-v1, on our own engine.

REINFORCE weighs log pi(a_t|s_t) by the sampled return G_t, which is noisy and arrives only when the
episode ends. Actor-critic replaces G_t by an estimate built from a learned critic V_phi(s):
    actor   pi_theta(a|s)  the policy (a network of logits), trained by the policy gradient;
    critic  V_phi(s)       the value of s under pi, trained by regression; it supplies the advantage.
The critic's one-step TD error is an unbiased-in-expectation advantage when V = V^pi:
    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
            (E[delta_t | s_t, a_t] = Q(s_t, a_t) - V(s_t) = A(s_t, a_t)).
GAE(lambda) (Schulman et al., 2016) averages the k-step estimates with weights (1 - lambda) lambda^(k-1):
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
The critic's target is R_t = A_t + V(s_t). Which advantage:
    lambda = 0, the one-step TD error: the least variance, but all credit flows through V, and V is wrong
                early on; a CartPole failure is the end of tens of steps of drift, which V learns slowly.
    lambda = 1, the n-step return minus V (bootstrapped at the rollout's end): unbiased, but as noisy as
                the rewards of up to n_steps steps.
    GAE(0.8) with gamma 0.98 (the default): sampled rewards for about 1 / (1 - gamma lambda) = 5 steps,
                then V: a little of each error (rl-baselines3-zoo's CartPole setting for PPO).

Bootstrapping and the 500-step cap: `terminated` (the pole fell) means s_{t+1} has no future, so the TD
error drops gamma V(s_{t+1}). `truncated` (the time limit) ends the episode but the pole was still up,
so delta_t still bootstraps from V of that episode's last observation. Either way the recursion stops at
the episode's end (`done_t`): the next row of the rollout belongs to a new episode.

The loss of one update, a mean over the rollout's T x N steps (advantages and targets are constants):
    loss = - mean log pi(a_t|s_t) A_t                   policy gradient (REINFORCE's loss, A from the critic)
           + mean (V(s_t) - R_t)^2                      value regression
           - entropy_coef * mean H(pi(.|s_t))           entropy bonus: keeps exploring, delays a
                                                        premature near-deterministic policy
The two networks share no parameters, so one backward through the sum gives each its own gradient;
each has its own Adam and learning rate (a weight on the value term would only rescale what Adam
normalises away).

Reusing each rollout (epochs > 1). Plain A2C takes ONE gradient step per rollout, then throws the data
away; on CartPole that was no faster than REINFORCE (README). Several passes over the
rollout (in shuffled minibatches) learn more from each step, but after the first pass the data come from
an older policy pi_old, and the plain policy gradient would keep pushing the same actions without bound.
PPO's clipped surrogate (Schulman et al., 2017) replaces the policy term:
    - mean min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),   rho_t = pi(a_t|s_t) / pi_old(a_t|s_t)
It equals the policy gradient on the first pass (rho = 1) and stops rewarding moves of rho beyond the
clip range. epochs = 1 is plain A2C.

Several environments (n_envs) are stepped in lockstep: one update sees n_envs x n_steps transitions
from decorrelated episodes. They are a plain list (what gymnasium's SyncVectorEnv does, by hand), so the
last observation of an ending episode (needed to bootstrap a truncation) and each environment's state
(for checkpoints between updates, which fall in the middle of episodes) are in plain sight.
`episode_returns` lists complete episodes in the order they end; `env_steps` counts every env's steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import autodiff.functional as F
import nets
from autodiff import Tensor, no_grad
from nets.losses import mse_loss
from rl.common import WINDOW, hp, make_env, stream
from rl.evaluation import EpisodicAgent, greedy_action
from rl.reinforce import advantages_from, mlp, policy_loss, sample_action


@dataclass
class ActorCriticConfig:
    # ---- budget (training stops at whichever runs out first, checked between updates; None = no limit)
    steps: int | None = hp(150_000, "environment steps (summed over the environments)", check="positive")
    episodes: int | None = hp(None, "training episodes", check="positive")
    stop_avg: float = hp(0.0, "also stop once the 100-episode average of training returns reaches this "
                              "(0 = use the whole budget)", check="non_negative")
    # ---- the rollout
    n_envs: int = hp(8, "environments stepped together; one update uses n_envs x n_steps transitions",
                     check="positive")
    n_steps: int = hp(32, "steps of each environment between updates", check="positive")
    # ---- the advantage
    gamma: float = hp(0.98, "discount factor (horizon about 1 / (1 - gamma) = 50 steps)", check="fraction")
    gae_lambda: float = hp(0.8, "GAE lambda: 0 = one-step TD error, 1 = n-step return minus V", check="fraction")
    normalize_advantages: bool = hp(True, "A <- (A - mean A) / std A over each update's batch")
    entropy_coef: float = hp(0.0, "weight of the entropy bonus (CartPole needs no extra exploration: the "
                                   "sampled policy must become nearly deterministic to average 475)",
                             check="non_negative")
    # ---- networks and optimisers
    hidden: tuple = hp((64, 64), "hidden layer widths of the policy and of the value network, ReLU",
                        check="may_be_empty")
    lr: float = hp(2e-3, "Adam learning rate of the policy", check="positive")
    lr_final_fraction: float = hp(1.0, "the policy's lr decays linearly to lr * this at the end of the budget",
                                  check="fraction")
    value_lr: float = hp(2e-3, "Adam learning rate of the value network", check="positive")
    max_grad_norm: float = hp(0.5, "clip each network's gradient to this global L2 norm (0 = no clipping)",
                              check="non_negative")
    # ---- reusing each rollout (1 = plain A2C)
    epochs: int = hp(5, "gradient passes over each rollout; with more than 1 the policy term is PPO's "
                        "clipped surrogate, which keeps the policy near the one that collected the data",
                     check="positive")
    minibatches: int = hp(2, "each pass is split into this many shuffled minibatches", check="positive")
    clip: float = hp(0.2, "PPO's clip range: pi/pi_old may move within [1 - clip, 1 + clip] (epochs > 1)",
                     check="fraction")


# ==================================================================== the pieces of the update
def gae(rewards, values, next_values, terminated, dones, gamma: float, lam: float) -> np.ndarray:
    r"""A_t = delta_t + gamma lam (1 - done_t) A_{t+1},  delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t).
    Arrays (T, N): step t of environment n; next_values[t] = V of the observation that followed step t
    (the episode's last one if it ended there). The last row bootstraps from next_values alone."""
    ### BEGIN SOLUTION gae
    ### task: the TD errors, then the advantages backwards in time
    ### hint: gae's docstring: A_t = delta_t + gamma lam (1 - done_t) A_{t+1}
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    advantages = np.zeros_like(deltas)
    running = np.zeros_like(deltas[0])
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lam * (1.0 - dones[t]) * running
        advantages[t] = running
    ### END SOLUTION
    return advantages


def entropy(policy, obs: np.ndarray) -> Tensor:
    """mean_t H(pi(.|s_t)),  H = - sum_a pi(a|s) log pi(a|s)."""
    log_probs = F.log_softmax(policy(Tensor(obs)), axis=1)
    return -(F.exp(log_probs) * log_probs).sum(axis=1).mean()


def clipped_policy_loss(policy, obs, actions, advantages, old_log_probs, clip: float) -> Tensor:
    r"""PPO (Schulman et al., 2017): - mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),
    rho_t = pi(a_t|s_t) / pi_old(a_t|s_t). At rho = 1 (the first pass) its gradient is the policy gradient's;
    later passes gain nothing by pushing rho beyond [1 - eps, 1 + eps]."""
    log_probs = F.log_softmax(policy(Tensor(obs)), axis=1)
    rho = F.exp(log_probs[np.arange(len(actions)), actions] - Tensor(old_log_probs))
    A = Tensor(advantages)
    return -F.minimum(rho * A, F.minimum(F.maximum(rho, 1.0 - clip), 1.0 + clip) * A).mean()


def actor_critic_loss(policy, value, obs, actions, advantages, returns, entropy_coef: float,
                      old_log_probs=None, clip: float = 0.2):
    """loss = policy gradient term + value term - entropy_coef * entropy; returns (loss, the three terms).
    obs (B, obs_dim), actions (B,), advantages and returns (B,): constants. With old_log_probs (log pi_old
    of the actions, when a rollout is reused) the policy term is the clipped surrogate."""
    if old_log_probs is None:
        pg = policy_loss(policy, obs, actions, advantages)               # - mean log pi(a|s) A
    else:
        pg = clipped_policy_loss(policy, obs, actions, advantages, old_log_probs, clip)
    v = mse_loss(value(Tensor(obs))[:, 0], Tensor(returns))             # mean (V(s) - R)^2
    h = entropy(policy, obs)                                             # mean H(pi(.|s))
    return pg + v - entropy_coef * h, {"policy_loss": pg, "value_loss": v, "entropy": h}


# ==================================================================== the agent and its training loop
class ActorCritic(EpisodicAgent):
    """`train_step()` plays n_steps in each of n_envs environments, then updates both networks on that rollout
    (one gradient step each for plain A2C; epochs x minibatches steps with the clipped surrogate)."""

    name = "actor-critic"
    unit = "update"                # one train_step
    delivered = "final"            # the policy as training left it

    def __init__(self, cfg: ActorCriticConfig, seed: int = 0):
        if cfg.n_envs < 1 or cfg.n_steps < 1:
            raise ValueError(f"n_envs and n_steps must be >= 1, got {cfg.n_envs} and {cfg.n_steps}")
        if not 0.0 <= cfg.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {cfg.gae_lambda}")
        if not 1 <= cfg.minibatches <= cfg.n_envs * cfg.n_steps:
            raise ValueError(f"minibatches must be in [1, n_envs * n_steps = {cfg.n_envs * cfg.n_steps}], "
                             f"got {cfg.minibatches}")
        self.cfg, self.seed = cfg, seed
        # ---- seeding: named streams of one seed (initial weights, action sampling, each environment's resets)
        self.rng = stream(seed, "actions")
        self.envs = [make_env() for _ in range(cfg.n_envs)]
        self.obs = np.stack([env.reset(seed=int(stream(seed, "training-env", i).integers(2**31)))[0]
                             for i, env in enumerate(self.envs)])
        obs_dim, n_actions = self.obs.shape[1], int(self.envs[0].action_space.n)

        init_rng = stream(seed, "init")
        self.policy = mlp((obs_dim, *cfg.hidden), n_actions, init_rng)  # logits of pi(a | s)
        self.value = mlp((obs_dim, *cfg.hidden), 1, init_rng)           # V(s)
        self.optimizer = nets.Adam(self.policy.parameters(), lr=cfg.lr)
        self.value_optimizer = nets.Adam(self.value.parameters(), lr=cfg.value_lr)

        self.env_steps = 0
        self.updates = 0
        self.running_returns = np.zeros(cfg.n_envs)     # return so far of each environment's current episode
        self.episode_returns: list[float] = []
        self.curves: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": []}

    def finished(self) -> bool:
        cfg = self.cfg
        reached = (cfg.stop_avg > 0 and len(self.episode_returns) >= WINDOW
                   and np.mean(self.episode_returns[-WINDOW:]) >= cfg.stop_avg)
        return bool(reached or self.progress() >= 1.0)

    def _step_envs(self, actions) -> tuple:
        """One step of every environment; an ending episode is recorded and its environment reset.
        Returns (rewards, next observations as seen by the TD error, terminated, done) for this step."""
        rewards, next_obs = np.zeros(len(self.envs)), np.zeros_like(self.obs)
        terminated, dones = np.zeros(len(self.envs)), np.zeros(len(self.envs))
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(int(actions[i]))
            rewards[i], next_obs[i], terminated[i], dones[i] = reward, obs, term, term or trunc
            self.running_returns[i] += reward
            if term or trunc:
                self.episode_returns.append(float(self.running_returns[i]))
                self.running_returns[i] = 0.0
                obs, _ = env.reset()                                     # continues this env's generator
            self.obs[i] = obs
        self.env_steps += len(self.envs)
        return rewards, next_obs, terminated, dones

    def collect_rollout(self) -> dict:
        """n_steps in every environment with the current policy: arrays (n_steps, n_envs[, obs_dim])."""
        T, N = self.cfg.n_steps, self.cfg.n_envs
        obs = np.zeros((T, *self.obs.shape), np.float32)
        next_obs = np.zeros_like(obs)
        actions = np.zeros((T, N), np.int64)
        rewards, terminated, dones = (np.zeros((T, N), np.float32) for _ in range(3))
        for t in range(T):
            obs[t] = self.obs
            actions[t] = [sample_action(self.policy, o, self.rng) for o in self.obs]
            rewards[t], next_obs[t], terminated[t], dones[t] = self._step_envs(actions[t])
        return {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs,
                "terminated": terminated, "dones": dones}

    def train_step(self) -> dict:
        cfg = self.cfg
        # ---- ALGO LOGIC: roll out n_steps in every environment with the current policy
        r = self.collect_rollout()
        T, N = r["actions"].shape

        # ---- ALGO LOGIC: the critic's values and the GAE advantages A_t, value targets R_t = A_t + V(s_t)
        with no_grad():
            v = self.value(Tensor(np.concatenate([r["obs"], r["next_obs"]]).reshape(2 * T * N, -1))).data[:, 0]
        values, next_values = v[:T * N].reshape(T, N), v[T * N:].reshape(T, N)
        adv = gae(r["rewards"], values, next_values, r["terminated"], r["dones"], cfg.gamma, cfg.gae_lambda)
        returns = (adv + values).reshape(-1).astype(np.float32)
        advantages = advantages_from(adv.reshape(-1), None, "none", cfg.normalize_advantages)

        # ---- ALGO LOGIC: gradient steps of both networks on the actor-critic loss (one, for plain A2C)
        self.optimizer.lr = cfg.lr * (1.0 - (1.0 - cfg.lr_final_fraction) * self.progress())
        obs, actions = r["obs"].reshape(T * N, -1), r["actions"].reshape(-1)
        old_log_probs = None
        if cfg.epochs > 1:
            with no_grad():
                log_probs = F.log_softmax(self.policy(Tensor(obs)), axis=1).data
            old_log_probs = log_probs[np.arange(T * N), actions]
        order_rng = stream(self.seed, "minibatches", self.updates)
        for _ in range(cfg.epochs):
            order = order_rng.permutation(T * N) if cfg.minibatches > 1 else np.arange(T * N)
            for idx in np.array_split(order, cfg.minibatches):
                loss, terms = actor_critic_loss(self.policy, self.value, obs[idx], actions[idx], advantages[idx],
                                                returns[idx], cfg.entropy_coef,
                                                None if old_log_probs is None else old_log_probs[idx], cfg.clip)
                self.optimizer.zero_grad()
                self.value_optimizer.zero_grad()
                loss.backward()
                if cfg.max_grad_norm > 0:
                    nets.clip_grad_norm_(self.optimizer.params, cfg.max_grad_norm)
                    nets.clip_grad_norm_(self.value_optimizer.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.value_optimizer.step()
        self.updates += 1
        for name, term in terms.items():                  # the last minibatch's terms
            self.curves[name].append(float(term))
        return {name: float(term) for name, term in terms.items()}

    def greedy_action(self, obs) -> int:
        return greedy_action(self.policy, obs)

    def losses(self) -> dict:
        return self.curves

    def extra_metrics(self) -> dict:
        return {"updates": self.updates}

    def figures(self) -> dict:
        return {}

    # ---------------------------------------------------------------- checkpoint (between updates)
    def state_dict(self) -> dict:
        """Counters, generators and history (JSON), the networks' and optimisers' arrays, and, since updates
        fall in the middle of episodes, each environment's whole state: its generator, CartPole's physical
        state, the time limit's step count, its last observation and the return so far."""
        env_states = [{"rng": env.unwrapped.np_random.bit_generator.state, "elapsed": env._elapsed_steps,
                       "beyond": env.unwrapped.steps_beyond_terminated} for env in self.envs]
        return {"env_steps": self.env_steps, "updates": self.updates, "rng": self.rng.bit_generator.state,
                "env_states": env_states, "episode_returns": self.episode_returns, "curves": self.curves,
                "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "value": self.value.state_dict(), "value_optimizer": self.value_optimizer.state_dict(),
                "envs": {"obs": self.obs.copy(), "running_returns": self.running_returns.copy(),
                         "physics": np.stack([env.unwrapped.state for env in self.envs])}}

    def load_state_dict(self, state: dict) -> None:
        if len(state["env_states"]) != len(self.envs):
            raise ValueError(f"checkpoint has {len(state['env_states'])} environments, the config {len(self.envs)}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.value.load_state_dict(state["value"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.rng.bit_generator.state = state["rng"]
        self.episode_returns = [float(r) for r in state["episode_returns"]]
        self.curves = {k: [float(x) for x in v] for k, v in state["curves"].items()}
        saved = state["envs"]
        self.obs = np.asarray(saved["obs"], np.float32).copy()
        self.running_returns = np.asarray(saved["running_returns"], np.float64).copy()
        for env, env_state, physics in zip(self.envs, state["env_states"], saved["physics"]):
            env.unwrapped.np_random.bit_generator.state = env_state["rng"]
            env.unwrapped.state = np.asarray(physics, np.float64).copy()
            env.unwrapped.steps_beyond_terminated = env_state["beyond"]
            env._elapsed_steps = int(env_state["elapsed"])


Config, Agent = ActorCriticConfig, ActorCritic
