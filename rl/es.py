r"""Evolution strategies (Salimans et al., 2017; the lecture's Algorithm 1) on CartPole-v1.

ES randomises over *policies* instead of over actions. Perturb the parameters with Gaussian noise,
theta_i = theta + sigma * eps_i, eps_i ~ N(0, I), and apply the score-function trick to the smoothed
objective J(theta) = E_eps[F(theta + sigma eps)]:
    grad J(theta) = 1/sigma * E_eps[F(theta + sigma eps) eps]
    ~= 1/(n sigma) sum_i F_i eps_i                                      (n sampled perturbations)
    theta <- theta + alpha / (n sigma) * sum_i F_i eps_i                (Algorithm 1, line 5)
F is the return of one episode, so nothing needs to be differentiable: the policy is deterministic
(argmax of its logits) and only ever *run*, never backpropagated through. The parameters are therefore
one flat NumPy vector and this file does not use the autodiff engine at all.

Two variance reductions, both from the paper:
  * antithetic (mirrored) sampling: evaluate eps_i and -eps_i, on the SAME episode start (same reset
    seed), so the pair's difference measures the direction, not the luck of the start state;
  * rank normalisation: replace the n returns by their centred ranks in [-0.5, 0.5] (the worst gets
    -0.5, the best +0.5). The update then ignores the returns' scale and outliers, and subtracting the
    mean rank is a baseline (sum_i eps_i has mean zero, so it changes nothing in expectation).
With n = 2m mirrored members, F(theta + sigma eps_i) eps_i + F(theta - sigma eps_i) (-eps_i) sums to
(F_i^+ - F_i^-) eps_i, which is what the update computes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rl.common import hp, make_env, stream, training_env_seed
from rl.evaluation import EpisodicAgent


@dataclass
class ESConfig:
    # ---- budget (checked before each generation: the last generation may overshoot episodes/steps)
    generations: int | None = hp(60, "generations (parameter updates)", check="positive")
    episodes: int | None = hp(None, "training episodes (all population members count)", check="positive")
    steps: int | None = hp(None, "environment steps", check="positive")
    # ---- the policy: obs -> tanh hidden layers -> logits, action = argmax
    hidden: tuple = hp((16,), "hidden layer widths (tanh); none (`--hidden` alone) = a linear policy",
                        check="may_be_empty")
    init_std: float = hp(0.1, "initial parameters ~ N(0, init_std^2)", check="positive")
    # ---- Algorithm 1
    population_pairs: int = hp(16, "m: mirrored pairs per generation (n = 2m episodes)", check="positive")
    sigma: float = hp(0.1, "noise standard deviation of the perturbations", check="positive")
    alpha: float = hp(0.2, "learning rate of the ES update", check="positive")
    rank_normalize: bool = hp(True, "use centred ranks in [-0.5, 0.5] instead of raw returns")
    weight_decay: float = hp(0.0, "theta <- theta - alpha * weight_decay * theta each generation", check="non_negative")


# ==================================================================== the policy as a flat vector
def layer_shapes(obs_dim: int, n_actions: int, hidden) -> list[tuple]:
    """[(out, in) weight, (out,) bias] for each layer, in the order they sit in the flat vector."""
    sizes, shapes = [obs_dim, *hidden, n_actions], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_out, fan_in), (fan_out,)]
    return shapes


def unflatten(theta: np.ndarray, shapes) -> list[np.ndarray]:
    """Views of the flat vector theta as the layers' weights and biases."""
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        arrays.append(theta[start:start + size].reshape(shape))
        start += size
    if start != theta.size:
        raise ValueError(f"theta has {theta.size} entries, the layers need {start}")
    return arrays


def policy_action(params: list[np.ndarray], obs) -> int:
    """argmax of the logits of h -> tanh(W h + b) ... -> W_last h + b_last (deterministic)."""
    h = np.asarray(obs, dtype=np.float32)
    for k in range(0, len(params) - 2, 2):
        h = np.tanh(params[k] @ h + params[k + 1])
    return int((params[-2] @ h + params[-1]).argmax())


def centered_ranks(values) -> np.ndarray:
    """Rank i of n (0 = smallest) mapped to i / (n - 1) - 0.5: evenly spaced in [-0.5, 0.5].
    Ties are broken by position (argsort is stable), so the result is deterministic."""
    values = np.asarray(values)
    ranks = np.empty(len(values), dtype=np.float32)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values), dtype=np.float32)
    return ranks / max(len(values) - 1, 1) - 0.5


# ==================================================================== the algorithm
class ES(EpisodicAgent):
    """`train_generation()` evaluates 2m mirrored perturbations of theta and takes one ES step."""

    name = "es"
    unit = "generation"            # one train_step
    delivered = "final"            # theta as training left it

    def __init__(self, cfg: ESConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        # ---- seeding: named streams of one seed (initial theta; the noise and the episodes' reset seeds)
        self.rng = stream(seed, "noise")
        self.env = make_env(training_env_seed(seed))
        obs_dim, n_actions = self.env.observation_space.shape[0], int(self.env.action_space.n)
        self.shapes = layer_shapes(obs_dim, n_actions, cfg.hidden)
        n_params = sum(int(np.prod(s)) for s in self.shapes)
        self.theta = (cfg.init_std * stream(seed, "init").standard_normal(n_params)).astype(np.float32)

        self.env_steps = 0
        self.generation = 0
        self.episode_returns: list[float] = []          # every population member's return, in order
        self.generation_mean_returns: list[float] = []
        self.generation_max_returns: list[float] = []
        self.generation_min_returns: list[float] = []
        self.update_norms: list[float] = []              # |theta_{t+1} - theta_t| per generation

    def finished(self) -> bool:
        cfg = self.cfg
        return bool((cfg.generations and self.generation >= cfg.generations)
                    or self.progress() >= 1.0)

    def budget(self) -> tuple:
        if self.cfg.generations:
            return self.generation, self.cfg.generations
        return super().budget()

    def episode_return(self, theta: np.ndarray, reset_seed: int) -> float:
        """F(theta): the return of one episode of the deterministic policy theta from reset(seed)."""
        params = unflatten(theta, self.shapes)
        obs, _ = self.env.reset(seed=reset_seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = self.env.step(policy_action(params, obs))
            total += float(reward)
            done = terminated or truncated
            self.env_steps += 1
        return total

    def train_generation(self) -> dict:
        cfg = self.cfg
        m = cfg.population_pairs
        # ---- ALGO LOGIC: sample eps_1..eps_m ~ N(0, I) and one reset seed per mirrored pair
        eps = self.rng.standard_normal((m, self.theta.size)).astype(np.float32)
        reset_seeds = self.rng.integers(0, 2**31 - 1, size=m)

        # ---- ALGO LOGIC: F_i^+ = F(theta + sigma eps_i), F_i^- = F(theta - sigma eps_i), same start
        returns = np.zeros((m, 2), np.float32)
        for i in range(m):
            for j, sign in enumerate((1.0, -1.0)):
                returns[i, j] = self.episode_return(self.theta + sign * cfg.sigma * eps[i], int(reset_seeds[i]))
                self.episode_returns.append(float(returns[i, j]))

        # ---- ALGO LOGIC: theta <- theta + alpha / (n sigma) sum_i F_i eps_i, n = 2m, mirrored pairs
        scores = centered_ranks(returns.ravel()).reshape(m, 2) if cfg.rank_normalize else returns
        ### BEGIN SOLUTION es_gradient
        ### task: the mirrored-sampling estimate of the gradient of the expected return
        ### hint: the ALGO LOGIC comment above: theta <- theta + alpha / (n sigma) sum_i F_i eps_i, n = 2m
        gradient = (scores[:, 0] - scores[:, 1]) @ eps / (2 * m * cfg.sigma)
        ### END SOLUTION
        step = cfg.alpha * (gradient - cfg.weight_decay * self.theta)
        self.theta = (self.theta + step).astype(np.float32)

        self.generation += 1
        self.generation_mean_returns.append(float(returns.mean()))
        self.generation_max_returns.append(float(returns.max()))
        self.generation_min_returns.append(float(returns.min()))
        self.update_norms.append(float(np.linalg.norm(step)))
        return {"return": float(returns.mean())}

    train_step = train_generation

    def greedy_action(self, obs) -> int:
        return policy_action(unflatten(self.theta, self.shapes), obs)

    def losses(self) -> dict:
        return {"update_norm": self.update_norms}

    def figures(self) -> dict:
        """{file: (title, xlabel, ylabel, curves)}: the population's returns per generation."""
        curves = {"max": np.asarray(self.generation_max_returns), "mean": np.asarray(self.generation_mean_returns),
                  "min": np.asarray(self.generation_min_returns)}
        return {"es_returns.png": ("ES population returns on CartPole-v1", "generation", "episode return", curves)}

    def extra_metrics(self) -> dict:
        return {"generations": self.generation, "generation_mean_returns": self.generation_mean_returns,
                "generation_max_returns": self.generation_max_returns,
                "generation_min_returns": self.generation_min_returns}

    # ---------------------------------------------------------------- checkpoint (between generations)
    def state_dict(self) -> dict:
        """Counters, the noise generator and history (JSON), and theta. Every episode is reset with its own
        seed, so the environment carries no state between them."""
        return {"env_steps": self.env_steps, "generation": self.generation, "rng": self.rng.bit_generator.state,
                "episode_returns": self.episode_returns,
                "generation_mean_returns": self.generation_mean_returns,
                "generation_max_returns": self.generation_max_returns,
                "generation_min_returns": self.generation_min_returns, "update_norms": self.update_norms,
                "policy": {"theta": self.theta.copy()}}

    def load_state_dict(self, state: dict) -> None:
        theta = np.asarray(state["policy"]["theta"], np.float32)
        if theta.shape != self.theta.shape:
            raise ValueError(f"checkpoint theta has shape {theta.shape}, this configuration needs {self.theta.shape}")
        self.theta = theta.copy()
        self.env_steps, self.generation = int(state["env_steps"]), int(state["generation"])
        self.rng.bit_generator.state = state["rng"]
        for key in ("episode_returns", "generation_mean_returns", "generation_max_returns",
                    "generation_min_returns", "update_norms"):
            setattr(self, key, [float(x) for x in state[key]])


Config, Agent = ESConfig, ES
