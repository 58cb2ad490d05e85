"""Actor-critic on CartPole: the loss gradient against the hand-derived one, GAE's bootstrap on truncation
but not on termination, exact resume from a mid-episode checkpoint, and short runs. A few seconds in all."""
import json

import numpy as np
import pytest

import nets
from autodiff import Tensor
from rl.actor_critic import ActorCritic, ActorCriticConfig, actor_critic_loss, clipped_policy_loss, gae
from rl.common import split_state
from rl.reinforce import mlp

TINY = dict(steps=600, n_envs=3, n_steps=8, hidden=(8,))


# ==================================================================== the loss and its gradient
def _softmax(z):
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _hand_gradients(policy, value, obs, actions, advantages, returns):
    """Linear policy logits z = W s + b and linear critic V = u s + c, a batch of B steps:
        policy loss  -1/B sum_t log pi(a_t|s_t) A_t      d/dz_t = -(onehot(a_t) - pi_t) A_t / B
        value loss    1/B sum_t (V(s_t) - R_t)^2          d/dV_t = 2 (V(s_t) - R_t) / B
        entropy       1/B sum_t H(pi_t)                   d/dz_t = -pi_t * (log pi_t + H_t) / B
    then dW = dz^T s, db = sum_t dz_t (and likewise for u, c)."""
    B = len(actions)
    W, b = policy[0].weight.data, policy[0].bias.data
    u, c = value[0].weight.data, value[0].bias.data
    pi = _softmax(obs @ W.T + b)
    log_pi = np.log(pi)
    H = -(pi * log_pi).sum(1, keepdims=True)
    dz = {"policy_loss": -(np.eye(W.shape[0])[actions] - pi) * advantages[:, None] / B,
          "entropy": -pi * (log_pi + H) / B}
    dV = 2 * ((obs @ u.T + c)[:, 0] - returns)[:, None] / B
    grads = {name: {"policy": (g.T @ obs, g.sum(0)), "value": (np.zeros_like(u), np.zeros_like(c))}
             for name, g in dz.items()}
    grads["value_loss"] = {"policy": (np.zeros_like(W), np.zeros_like(b)), "value": (dV.T @ obs, dV.sum(0))}
    return grads


@pytest.mark.parametrize("term", ["policy_loss", "value_loss", "entropy", "total"])
def test_loss_gradient_matches_the_hand_derived_one(term, rng):
    nets.manual_seed(0)
    policy, value = mlp((4,), 3).double(), mlp((4,), 1).double()
    B, entropy_coef = 9, 0.3
    obs = rng.standard_normal((B, 4))
    actions = rng.integers(0, 3, B)
    advantages, returns = rng.standard_normal(B), rng.uniform(0, 5, B)
    loss, terms = actor_critic_loss(policy, value, obs, actions, advantages, returns, entropy_coef)
    policy.zero_grad()
    value.zero_grad()
    (loss if term == "total" else terms[term]).backward()

    hand = _hand_gradients(policy, value, obs, actions, advantages, returns)
    weights = {"policy_loss": 1.0, "value_loss": 1.0, "entropy": -entropy_coef}
    for net_name, net in (("policy", policy), ("value", value)):
        for i, param in enumerate((net[0].weight, net[0].bias)):
            if term == "total":
                expected = sum(w * hand[name][net_name][i] for name, w in weights.items())
            else:
                expected = hand[term][net_name][i]
            got = np.zeros_like(param.data) if param.grad is None else param.grad
            # rtol 1e-5: reinforce.policy_loss holds the advantages in float32
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9, err_msg=f"{term}: {net_name}[{i}]")
    # the terms' values, too: H of a 3-way softmax lies in (0, log 3]
    assert 0 < float(terms["entropy"]) <= np.log(3) + 1e-12
    assert float(loss) == pytest.approx(float(terms["policy_loss"]) + float(terms["value_loss"])
                                        - entropy_coef * float(terms["entropy"]))


def test_clipped_surrogate_is_the_policy_gradient_at_ratio_one_and_flat_beyond_the_clip(rng):
    nets.manual_seed(1)
    policy = mlp((4,), 2).double()
    B, eps = 6, 0.2
    obs = rng.standard_normal((B, 4))
    actions = rng.integers(0, 2, B)
    advantages = np.array([1.0, -1.0, 2.0, -0.5, 0.3, -2.0])
    logits = obs @ policy[0].weight.data.T + policy[0].bias.data
    log_pi = np.log(_softmax(logits))[np.arange(B), actions]
    grads = {}
    for name, old in (("at one", log_pi), ("shifted", log_pi + np.log([0.7, 0.7, 1.3, 1.3, 1.0, 1.0]))):
        policy.zero_grad()
        clipped_policy_loss(policy, obs, actions, advantages, old, eps).backward()
        grads[name] = policy[0].weight.grad.copy()
    hand = _hand_gradients(policy, mlp((4,), 1).double(), obs, actions, advantages, np.zeros(B))
    np.testing.assert_allclose(grads["at one"], hand["policy_loss"]["policy"][0], rtol=1e-5, atol=1e-9)
    # rho = 1/0.7 > 1 + eps with A > 0, or rho = 1/1.3 < 1 - eps with A < 0: clipped, no gradient; the
    # other four still push (rho A is the smaller term there); rows 4, 5 at rho = 1 as before
    score = (np.eye(2)[actions] - _softmax(logits))
    rho = 1.0 / np.array([0.7, 0.7, 1.3, 1.3, 1.0, 1.0])
    active = np.array([0, 1, 1, 0, 1, 1], bool)
    expected = -((score * (rho * advantages * active)[:, None]).T @ obs) / B
    np.testing.assert_allclose(grads["shifted"], expected, rtol=1e-5, atol=1e-9)


# ==================================================================== GAE: where to bootstrap
@pytest.mark.grades("gae")
def test_gae_bootstraps_on_truncation_not_on_termination():
    """Two environments, two steps; env 0's episode is truncated at step 0, env 1's terminates there."""
    gamma, lam = 0.5, 0.8
    rewards = np.array([[1.0, 1.0], [1.0, 1.0]])
    values = np.array([[2.0, 2.0], [3.0, 3.0]])
    next_values = np.array([[10.0, 10.0], [6.0, 6.0]])   # step 0: V of each episode's last observation
    terminated = np.array([[0.0, 1.0], [0.0, 0.0]])
    dones = np.array([[1.0, 1.0], [0.0, 0.0]])
    adv = gae(rewards, values, next_values, terminated, dones, gamma, lam)
    last = 1.0 + gamma * 6.0 - 3.0                           # step 1: a new episode, bootstrapped at the end
    np.testing.assert_allclose(adv[1], [last, last])
    np.testing.assert_allclose(adv[0], [1.0 + gamma * 10.0 - 2.0,   # truncated: bootstraps, stops there
                                        1.0 - 2.0])                 # terminated: no future at all
    # no episode end: the recursion A_t = delta_t + gamma lam A_{t+1} runs through
    flowing = gae(rewards, values, next_values, np.zeros((2, 2)), np.zeros((2, 2)), gamma, lam)
    np.testing.assert_allclose(flowing[0], 1.0 + gamma * 10.0 - 2.0 + gamma * lam * last)
    # lambda = 0 is the one-step TD error
    np.testing.assert_allclose(gae(rewards, values, next_values, terminated, dones, gamma, 0.0)[1], [last, last])


class CountingEnv:
    """Observation = the step count (4 copies); the episode ends at step `end`, truncated or terminated."""

    def __init__(self, end: int, truncate: bool):
        self.end, self.truncate, self.t = end, truncate, 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        ended = self.t == self.end
        return np.full(4, self.t, np.float32), 1.0, ended and not self.truncate, ended and self.truncate, {}


def test_rollout_keeps_the_last_observation_and_flags_of_an_ending_episode():
    agent = ActorCritic(ActorCriticConfig(**dict(TINY, n_envs=2, n_steps=4)), seed=0)
    agent.envs = [CountingEnv(end=2, truncate=True), CountingEnv(end=3, truncate=False)]
    agent.obs = np.zeros((2, 4), np.float32)
    r = agent.collect_rollout()
    np.testing.assert_array_equal(r["next_obs"][:, 0, 0], [1, 2, 1, 2])    # 2 = the truncated episode's end,
    np.testing.assert_array_equal(r["obs"][:, 0, 0], [0, 1, 0, 1])         # not the reset observation 0
    np.testing.assert_array_equal(r["terminated"], [[0, 0], [0, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(r["dones"], [[0, 0], [1, 0], [0, 1], [1, 0]])
    assert agent.episode_returns == [2.0, 3.0, 2.0] and agent.env_steps == 8     # in the order they ended
    np.testing.assert_array_equal(agent.running_returns, [0.0, 1.0])


# ==================================================================== runs, resume
def _train(agent, updates):
    for _ in range(updates):
        agent.train_step()
    return agent


@pytest.mark.parametrize("reuse", [{}, {"epochs": 2, "minibatches": 2}])
def test_resume_from_a_mid_episode_checkpoint_is_exact(reuse):
    cfg = ActorCriticConfig(**TINY, **reuse)
    full = _train(ActorCritic(cfg, seed=4), 12)
    first = _train(ActorCritic(cfg, seed=4), 5)
    meta, sections = split_state(first.state_dict())
    assert first.running_returns.any()                       # the checkpoint falls inside episodes
    meta = json.loads(json.dumps(meta))                      # as the checkpoint file stores it
    sections = {k: {n: np.array(a) for n, a in v.items()} for k, v in sections.items()}
    resumed = ActorCritic(cfg, seed=4)
    resumed.load_state_dict({**meta, **sections})
    _train(resumed, 7)
    assert resumed.episode_returns == full.episode_returns and resumed.env_steps == full.env_steps
    assert resumed.losses() == full.losses()
    for a, b in zip(resumed.policy.parameters() + resumed.value.parameters(),
                    full.policy.parameters() + full.value.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(ValueError, match="environments"):
        ActorCritic(ActorCriticConfig(**dict(TINY, n_envs=2)), seed=4).load_state_dict({**meta, **sections})


def test_short_run_counts_steps_and_episodes_and_learns():
    cfg = ActorCriticConfig(**TINY)
    a, b, c = (_train(ActorCritic(cfg, seed=s), 10) for s in (1, 1, 2))
    assert a.episode_returns == b.episode_returns and a.episode_returns != c.episode_returns
    assert a.env_steps == 10 * 3 * 8 == sum(a.episode_returns) + a.running_returns.sum()   # reward 1 per step
    assert all(len(v) == 10 and np.all(np.isfinite(v)) for v in a.losses().values())
    learner = ActorCritic(ActorCriticConfig(steps=10_000), seed=0)          # the defaults, a short budget
    while not learner.finished():
        learner.train_step()
    assert learner.env_steps >= 10_000
    assert np.mean(learner.episode_returns[:20]) < 30           # a random policy averages about 22
    assert np.mean(learner.episode_returns[-20:]) > 60
    assert np.mean(learner.evaluate(5, env_seed=123)) > 50     # the untrained greedy policy: about 10


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="n_envs"):
        ActorCritic(ActorCriticConfig(n_envs=0), seed=0)
    with pytest.raises(ValueError, match="gae_lambda"):
        ActorCritic(ActorCriticConfig(gae_lambda=1.5), seed=0)
    with pytest.raises(ValueError, match="minibatches"):
        ActorCritic(ActorCriticConfig(n_envs=2, n_steps=2, minibatches=5), seed=0)


# ==================================================================== the command line
def test_cli_writes_the_contract_and_resumes_exactly(tmp_path, monkeypatch):
    import os
    import signal
    import train
    import cli.rl
    monkeypatch.setattr(cli.rl, "EVAL_EPISODES", 3)
    flags = ["--seed", "3", "--steps", "768", "--hidden", "8"]            # 3 updates of 8 envs x 32 steps
    full, part = tmp_path / "full", tmp_path / "part"
    assert train.main(["actor-critic", *flags, "--out", str(full)]) == 0
    metrics = json.loads((full / "metrics.json").read_text())
    assert {"episode_returns", "greedy_eval_returns", "first_step_avg475", "env_steps", "delivered"} <= set(metrics)
    assert metrics["env_steps"] == 768 and metrics["updates"] == 3 and len(metrics["greedy_eval_returns"]) == 3
    assert (full / "durations.png").exists() and (full / "losses.png").exists()

    original, calls = ActorCritic.train_step, []

    def train_step_then_ctrl_c(self):
        result = original(self)
        calls.append(1)
        if len(calls) == 2:                                 # Ctrl-C after the 2nd update: save and exit 130
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(ActorCritic, "train_step", train_step_then_ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        train.main(["actor-critic", *flags, "--out", str(part)])
    assert stopped.value.code == 130 and len(calls) == 2
    monkeypatch.setattr(ActorCritic, "train_step", original)
    assert not (part / "metrics.json").exists()
    assert train.main(["actor-critic", "--resume", str(part)]) == 0
    resumed = json.loads((part / "metrics.json").read_text())
    assert resumed["episode_returns"] == metrics["episode_returns"]
    assert resumed["greedy_eval_returns"] == metrics["greedy_eval_returns"]
