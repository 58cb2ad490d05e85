r"""Deep Q-Network (Mnih et al., 2015) on CartPole-v1, on our own autodiff engine.

The idea in five lines.
    Q(s, a; theta) estimates the discounted return of taking a in s and acting greedily afterwards.
    Act epsilon-greedily, store every transition (s, a, r, s', terminated) in a replay buffer.
    Each update samples a batch of old transitions and regresses Q(s, a) onto the TD target
        y = r + gamma * (1 - terminated) * max_a' Q_target(s', a')
    with the Huber loss; Q_target is a slowly updated copy of the network (it keeps y from chasing itself).

Bootstrapping and the 500-step cap: `terminated` (the pole fell) means s' has no future, so y = r.
`truncated` (the time limit) is not a property of the state -- the pole was still up -- so a truncated
transition still bootstraps from Q_target(s'). Only `terminated` is stored in the buffer.

Double DQN (van Hasselt et al., 2016): the online net picks a', the target net scores it,
    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a')),
which removes most of the max operator's upward bias.

n-step returns (Sutton 1988; one of Rainbow's parts): a transition spans k = n steps,
    y = r_t + gamma r_{t+1} + ... + gamma^{n-1} r_{t+n-1} + gamma^n (1 - terminated) Q_target(s_{t+n}, a*),
so the news that the pole fell reaches n states back per update instead of one (rl/replay.py builds them).
The sum uses the behaviour policy's own actions, a small bias at epsilon = 0.04 on CartPole.

What we deliver. A DQN's greedy score rises and falls during training, so every eval_interval env steps
the current network is screened and confirmed on greedy episodes and the best is kept
(rl/evaluation.py's KeepBest, as Stable-Baselines3's EvalCallback); that copy is the delivered network
(`delivered = "best_eval"`; keep_best=False delivers the final one).

Reading order: DQNConfig (every hyperparameter), QNetwork, select_action (the epsilon schedule),
td_target and optimize (one gradient step), update_target, then the DQN agent whose `train_episode` is
the training loop. Everything is float32.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

import nets
from autodiff import Tensor, no_grad
from nets.losses import huber_loss
from rl.common import (env_rng_state, hp, linear_schedule, make_env,
                       set_env_rng_state, stream, training_env_seed)
from rl.evaluation import EpisodicAgent, KeepBest, greedy_action, run_greedy_episodes
from rl.replay import NStepWindow, ReplayBuffer


@dataclass
class DQNConfig:
    # ---- budget (training stops at whichever runs out first; None = no limit)
    episodes: int | None = hp(1000, "training episodes (the homework's budget)", check="positive")
    steps: int | None = hp(None, "environment steps", check="positive")
    # ---- the Q network and its optimiser
    hidden: tuple = hp((64, 64), "hidden layer widths (ReLU)", check="may_be_empty")
    lr: float = hp(2.3e-3, "Adam learning rate at the start of training (rl-baselines3-zoo's tuned CartPole "
                           "value: fast early learning)", check="positive")
    lr_final_fraction: float = hp(0.1, "lr decays linearly to lr * this (annealing: late updates refine the policy "
                                       "instead of overwriting it)", check="fraction")
    lr_hold_steps: int = hp(0, "env steps at the full lr before the decay starts", check="non_negative")
    lr_decay_steps: int | None = hp(50_000, "env steps of the lr decay, then it holds at lr * lr_final_fraction "
                                            "(None: decay over the whole budget)", check="positive")
    max_grad_norm: float = hp(10.0, "clip the gradient's global L2 norm: one bad batch cannot wreck the net (0 = off)",
                              check="non_negative")
    huber_delta: float = hp(1.0, "Huber loss: quadratic for |TD error| <= delta, linear beyond (bounded gradients)",
                            check="positive")
    # ---- the TD target
    gamma: float = hp(0.99, "discount factor (horizon 1/(1 - gamma) = 100 steps)", check="fraction")
    double_dqn: bool = hp(True, "Double DQN target: online net picks a', target net scores it (less overestimation)")
    n_step: int = hp(3, "n-step returns: bootstrap after n rewards (1 = the DQN paper's one-step target): the "
                        "news that the pole fell travels n states back per update", check="positive")
    target_update_interval: int = hp(4, "move the target network every this many env steps", check="positive")
    tau: float = hp(0.01, "Polyak: target <- tau * online + (1 - tau) * target (1.0 = hard copy); a smooth "
                          "target has no jumps for the online net to chase", check="fraction")
    # ---- replay
    buffer_size: int = hp(500_000, "replay capacity in transitions: a whole run, so early failures stay replayed",
                          check="positive")
    batch_size: int = hp(64, "transitions per gradient step", check="positive")
    learning_starts: int = hp(1000, "env steps before the first update (the buffer fills first)", check="non_negative")
    train_frequency: int = hp(16, "train every this many env steps (gradient_steps updates each time)",
                              check="positive")
    gradient_steps: int = hp(8, "gradient steps each time we train: 8 batches of 64 per 16 steps replay each "
                                "transition about 32 times (rl-zoo's ratio, in smaller bursts)", check="positive")
    # ---- exploration
    eps_start: float = hp(1.0, "epsilon at step 0", check="fraction")
    eps_end: float = hp(0.04, "epsilon after the decay (keeps some failures coming into the buffer)", check="fraction")
    eps_decay_steps: int = hp(8_000, "epsilon decays linearly from eps_start to eps_end over these env steps",
                              check="non_negative")
    # ---- keep the best network (as Stable-Baselines3's EvalCallback): what we deliver
    keep_best: bool = hp(True, "deliver the network with the best selection evaluation, not the final one "
                               "(DQN's greedy score oscillates during training)")
    eval_interval: int = hp(2_500, "env steps between selection evaluations (at the next episode boundary): 20 "
                                   "candidates in 50k steps", check="positive")
    eval_episodes: int = hp(10, "greedy episodes per selection evaluation (env seeds disjoint from the reporting "
                                "ones)", check="positive")
    replace_on_tie: bool = hp(False, "a network that only equals the best replaces it (the latest of equals is "
                                     "delivered). Off: the first to hold 500 on all its episodes stays, and later "
                                     "networks play only their screening episodes")
    confirm_episodes: int = hp(20, "a network that beats the best on its eval_episodes plays this many more "
                                   "before it may replace it: at the cap of 500 many networks score 500 on 10 "
                                   "episodes, the fragile ones by luck", check="non_negative")


# ==================================================================== the Q network
class QNetwork(nets.Sequential):
    """obs (N, obs_dim) -> Q values (N, n_actions): Linear-ReLU-...-Linear (nets.mlp's layers)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple, rng=None):
        super().__init__(*nets.mlp((obs_dim, *hidden, n_actions), rng=rng))

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Also reads the checkpoints of earlier versions, whose QNetwork held its layers as `.net`."""
        super().load_state_dict({key.removeprefix("net."): value for key, value in state.items()}, strict)


# ==================================================================== acting
def epsilon_at(step: int, cfg: DQNConfig) -> float:
    """The exploration schedule: linear from eps_start to eps_end over the first eps_decay_steps env
    steps, then eps_end for the rest of training."""
    return linear_schedule(cfg.eps_start, cfg.eps_end, cfg.eps_decay_steps, step)


def select_action(q_net: QNetwork, obs, epsilon: float, rng: np.random.Generator) -> int:
    """Epsilon-greedy: with probability epsilon a uniformly random action, otherwise argmax_a Q(obs, a).
    The random draw comes first and always happens, so the generator advances the same way whatever
    the network says (reproducible runs)."""
    n_actions = q_net[-1].out_features
    if rng.random() < epsilon:
        return int(rng.integers(n_actions))
    return greedy_action(q_net, obs)


# ==================================================================== learning
def td_target(rewards, terminated, next_q_target, gamma, next_q_online=None) -> np.ndarray:
    """y = r + gamma * (1 - terminated) * Q_target(s', a*), with
    a* = argmax_a Q_target(s', a) (DQN) or argmax_a Q_online(s', a) when next_q_online is given (Double DQN).
    Shapes: rewards, terminated (N,); next_q_* (N, n_actions); gamma a scalar, or (N,) holding gamma ** k
    for k-step transitions (rl/replay.py: then r is the discounted sum of k rewards). Truncated transitions
    have terminated = 0 and therefore bootstrap."""
    ### BEGIN SOLUTION dqn_target
    ### task: the (Double) DQN target; only terminated transitions stop the bootstrap
    ### hint: td_target's docstring: y = r + gamma * (1 - terminated) * Q_target(s', a*)
    if next_q_online is None:
        best = next_q_target.max(axis=1)
    else:
        a_star = next_q_online.argmax(axis=1)
        best = next_q_target[np.arange(len(a_star)), a_star]
    return (rewards + gamma * (1.0 - terminated) * best).astype(np.float32)
    ### END SOLUTION


def optimize(q_net: QNetwork, target_net: QNetwork, optimizer, batch: dict, cfg: DQNConfig) -> float:
    """One TD update on a replayed batch; returns the loss.
        loss = mean_i Huber(Q(s_i, a_i) - y_i),  y computed without gradient (a fixed regression target)."""
    n = len(batch["actions"])
    with no_grad():                                                     # the target side needs no graph
        next_q_target = target_net(Tensor(batch["next_obs"])).data
        next_q_online = q_net(Tensor(batch["next_obs"])).data if cfg.double_dqn else None
    gamma_k = cfg.gamma ** batch["horizon"].astype(np.float32)           # gamma ** k, k = steps to s'
    y = td_target(batch["rewards"], batch["terminated"], next_q_target, gamma_k, next_q_online)

    q_taken = q_net(Tensor(batch["obs"]))[np.arange(n), batch["actions"]]       # Q(s_i, a_i), shape (N,)
    loss = huber_loss(q_taken, Tensor(y), delta=cfg.huber_delta)
    optimizer.zero_grad()
    loss.backward()
    if cfg.max_grad_norm > 0:
        nets.clip_grad_norm_(optimizer.params, cfg.max_grad_norm)
    optimizer.step()
    return float(loss)


def update_target(target_net: QNetwork, q_net: QNetwork, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in place (tau = 1: a hard copy). The target keeps
    its own arrays: it is a copy, never an alias of the online parameters."""
    for t, p in zip(target_net.parameters(), q_net.parameters()):
        if tau >= 1.0:
            t.data[...] = p.data
        else:
            t.data *= (1.0 - tau)
            t.data += tau * p.data


# ==================================================================== the agent and its training loop
class DQN(EpisodicAgent):
    """Owns the networks, optimiser, buffer, generators and the environment; `train_episode()` plays
    one training episode (updating as it goes). Checkpoints are taken between episodes."""

    name = "dqn"
    unit = "episode"               # one train_step

    def __init__(self, cfg: DQNConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        # ---- seeding: named streams of one seed (initial weights, exploration, replay sampling, env)
        self.explore_rng = stream(seed, "explore")      # epsilon-greedy draws
        self.replay_rng = stream(seed, "replay")        # which transitions each batch replays
        self.env_seed = training_env_seed(seed)
        self.env = make_env(self.env_seed)               # action space seeded; env.reset(seed=...) below
        self.obs_dim = self.env.observation_space.shape[0]
        self.n_actions = int(self.env.action_space.n)

        self.q_net = QNetwork(self.obs_dim, self.n_actions, cfg.hidden, rng=stream(seed, "init"))
        self.target_net = copy.deepcopy(self.q_net)    # its own arrays: a copy, never an alias
        self.optimizer = nets.Adam(self.q_net.parameters(), lr=cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.obs_dim)
        self.window = NStepWindow(cfg.n_step, cfg.gamma)     # empty between episodes (checkpoints)

        self.env_steps = 0           # environment steps taken in training
        self.updates = 0             # gradient steps taken
        self.episode_returns: list[float] = []
        self.episode_losses: list[float] = []    # mean TD loss of each episode's updates (nan: none)
        # ---- keep-best: a copy of the best network so far and every selection evaluation (rl/evaluation.py)
        self.keep_best = KeepBest(seed, cfg.eval_episodes, cfg.confirm_episodes, cfg.replace_on_tie)

    @property
    def delivered(self) -> str:
        return "best_eval" if self.cfg.keep_best else "final"

    # ---------------------------------------------------------------- budget
    def lr_progress(self) -> float:
        """How far the learning-rate decay has gone: over lr_decay_steps env steps after lr_hold_steps, or
        over the whole budget."""
        if self.cfg.lr_decay_steps:
            return min(1.0, max(0.0, self.env_steps - self.cfg.lr_hold_steps) / self.cfg.lr_decay_steps)
        return self.progress()

    # ---------------------------------------------------------------- one training episode
    def train_episode(self) -> dict:
        cfg = self.cfg
        first = not self.episode_returns
        obs, _ = self.env.reset(seed=self.env_seed if first else None)
        total, losses, done = 0.0, [], False
        while not done:
            # ---- ALGO LOGIC: act epsilon-greedily and store the transition
            epsilon = epsilon_at(self.env_steps, cfg)
            action = select_action(self.q_net, obs, epsilon, self.explore_rng)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.env_steps += 1
            out_of_budget = bool(cfg.steps) and self.env_steps >= cfg.steps
            episode_over = terminated or truncated or out_of_budget
            for transition in self.window.push(obs, action, reward, next_obs, terminated, episode_over):
                self.buffer.add(*transition)                              # truncation is not stored
            obs, total, done = next_obs, total + float(reward), terminated or truncated
            learning = self.env_steps > cfg.learning_starts

            # ---- ALGO LOGIC: every train_frequency steps, gradient_steps updates on replayed batches
            if learning and self.env_steps % cfg.train_frequency == 0:
                # learning-rate schedule: linear decay to lr * lr_final_fraction (see lr_progress)
                self.optimizer.lr = cfg.lr * (1.0 - (1.0 - cfg.lr_final_fraction) * self.lr_progress())
                for _ in range(cfg.gradient_steps):       # the target network is fixed during a burst
                    batch = self.buffer.sample(cfg.batch_size, self.replay_rng)
                    losses.append(optimize(self.q_net, self.target_net, self.optimizer, batch, cfg))
                    self.updates += 1

            # ---- ALGO LOGIC: move the target network towards the online network
            if learning and self.env_steps % cfg.target_update_interval == 0:
                update_target(self.target_net, self.q_net, cfg.tau)

            if out_of_budget:
                break                   # step budget exhausted mid-episode: count the partial episode
        self.episode_returns.append(total)
        self.episode_losses.append(float(np.mean(losses)) if losses else float("nan"))

        # ---- ALGO LOGIC: every eval_interval steps (and at the end) a greedy evaluation; keep the best
        due = self.env_steps >= (len(self.keep_best.selections) + 1) * cfg.eval_interval
        if cfg.keep_best and (due or self.finished()):
            self.keep_best.select(self.q_net, self.env_steps, len(self.episode_returns))
        return {"return": total, "epsilon": epsilon_at(self.env_steps, cfg)}

    train_step = train_episode

    # ---------------------------------------------------------------- acting and evaluation
    @property
    def best_net(self) -> QNetwork | None:
        return self.keep_best.best_net

    @property
    def selections(self) -> list:
        return self.keep_best.selections

    def greedy_action(self, obs) -> int:
        """The current (final, once training is over) network's greedy action."""
        return greedy_action(self.q_net, obs)

    def delivered_action(self, obs) -> int:
        net = self.best_net if self.delivered == "best_eval" and self.best_net is not None else self.q_net
        return greedy_action(net, obs)

    def evaluate(self, n_episodes: int, env_seed: int) -> list[float]:
        """Greedy returns of the DELIVERED network (the kept best, or the final one)."""
        return run_greedy_episodes(self.delivered_action, n_episodes, env_seed)

    def losses(self) -> dict:
        return {"td_loss": self.episode_losses}

    def extra_metrics(self) -> dict:
        best = self.keep_best.best_record()
        return {"updates": self.updates, "selection_evaluations": self.selections,
                "best_selection_mean": best["mean"] if best else None,
                "best_selection_env_step": best["env_step"] if best else None}

    def figures(self) -> dict:
        return {}

    # ---------------------------------------------------------------- checkpoint (between episodes)
    def state_dict(self) -> dict:
        """Counters, generator states and history (JSON), and the arrays of the networks, the optimiser and
        the replay buffer (rl.common.split_state tells them apart)."""
        return {"env_steps": self.env_steps, "updates": self.updates,
                "explore_rng": self.explore_rng.bit_generator.state,
                "replay_rng": self.replay_rng.bit_generator.state, "env_rng": env_rng_state(self.env),
                "episode_returns": self.episode_returns, "episode_losses": self.episode_losses,
                "q_net": self.q_net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                **self.keep_best.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.keep_best.load_state_dict(state, self.q_net)
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.explore_rng.bit_generator.state = state["explore_rng"]
        self.replay_rng.bit_generator.state = state["replay_rng"]
        self.episode_returns = [float(r) for r in state["episode_returns"]]
        self.episode_losses = [float(x) if x is not None else float("nan") for x in state["episode_losses"]]
        set_env_rng_state(self.env, state["env_rng"], self.env_seed, started=bool(self.episode_returns))


Config, Agent = DQNConfig, DQN
