"""RL agents on CartPole: the pieces (returns-to-go, TD target, replay buffer, target network, the
REINFORCE gradient, ES ranks), reproducibility, exact resuming, and the CLI's output contract.
Every run here is tiny: the whole file takes a few seconds."""
import copy
import json
import os
import signal

import numpy as np
import pytest

import nets
from autodiff import Tensor
import rl.dqn
import rl.evaluation
from rl.common import (first_crossing, forward_no_grad, report_env_seed, running_average, selection_env_seed,
                       split_state, stream)
from rl.dqn import DQN, DQNConfig, QNetwork, td_target, update_target
from rl.evaluation import run_greedy_episodes, run_greedy_episodes_side_by_side
from rl.replay import NStepWindow, ReplayBuffer
from rl.es import ES, ESConfig, centered_ranks
from rl.reinforce import Reinforce, ReinforceConfig, advantages_from, mlp, policy_loss, returns_to_go

TINY_DQN = dict(hidden=(16,), batch_size=8, buffer_size=500, learning_starts=20, train_frequency=1,
                eps_decay_steps=100, eval_interval=40, eval_episodes=2)


# ==================================================================== returns and targets
@pytest.mark.grades("reward_to_go")
def test_returns_to_go_hand_computed():
    # G_2 = 3, G_1 = 2 + 0.5 * 3 = 3.5, G_0 = 1 + 0.5 * 3.5 = 2.75
    np.testing.assert_allclose(returns_to_go([1.0, 2.0, 3.0], 0.5), [2.75, 3.5, 3.0])
    np.testing.assert_allclose(returns_to_go([1.0, 1.0, 1.0, 1.0], 1.0), [4, 3, 2, 1])
    assert returns_to_go([1.0, 1.0], 0.9).dtype == np.float32


@pytest.mark.grades("dqn_target")
def test_td_target_masks_terminated_only():
    rewards = np.array([1.0, 1.0, 1.0], np.float32)
    terminated = np.array([1.0, 0.0, 0.0], np.float32)       # 2nd: truncated (time limit) -> still 0
    next_q = np.array([[5.0, 7.0], [5.0, 7.0], [2.0, -1.0]], np.float32)
    y = td_target(rewards, terminated, next_q, gamma=0.5)
    np.testing.assert_allclose(y, [1.0, 1.0 + 0.5 * 7.0, 1.0 + 0.5 * 2.0])
    # Double DQN: the online net picks a', the target net scores it
    next_q_online = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    y = td_target(rewards, terminated, next_q, gamma=0.5, next_q_online=next_q_online)
    np.testing.assert_allclose(y, [1.0, 1.0 + 0.5 * 5.0, 1.0 + 0.5 * -1.0])


class FakeEnv:
    """A 4-dimensional observation that counts steps; `truncate_at` / `terminate_at` end the episode."""

    def __init__(self, truncate_at=None, terminate_at=None):
        self.truncate_at, self.terminate_at, self.t = truncate_at, terminate_at, 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(4, self.t, np.float32)
        return obs, 1.0, self.t == self.terminate_at, self.t == self.truncate_at, {}


@pytest.mark.parametrize("ending", ["truncated", "terminated"])
def test_dqn_stores_terminated_not_truncated(ending):
    agent = DQN(DQNConfig(episodes=1, n_step=1, **TINY_DQN), seed=0)       # one-step transitions
    agent.env = FakeEnv(**({"truncate_at": 3} if ending == "truncated" else {"terminate_at": 3}))
    agent.train_episode()
    assert agent.buffer.size == 3 and agent.episode_returns == [3.0]
    expected_last = 1.0 if ending == "terminated" else 0.0
    np.testing.assert_array_equal(agent.buffer.terminated[:3], [0.0, 0.0, expected_last])
    np.testing.assert_array_equal(agent.buffer.next_obs[2], np.full(4, 3.0))


# ==================================================================== replay buffer and target network
def test_replay_buffer_wraps_and_samples_filled_slots_only():
    buffer = ReplayBuffer(capacity=5, obs_dim=1)
    for i in range(3):
        buffer.add([i], 0, float(i), [i + 1], False)
    assert len(buffer) == 3 and buffer.pos == 3
    batch = buffer.sample(200, np.random.default_rng(0))
    assert set(batch["rewards"].tolist()) == {0.0, 1.0, 2.0}            # never an empty slot
    for i in range(3, 8):                                                 # 8 adds into 5 slots
        buffer.add([i], 1, float(i), [i + 1], i == 7)
    assert len(buffer) == 5 and buffer.pos == 3
    np.testing.assert_array_equal(buffer.rewards, [5, 6, 7, 3, 4])        # oldest (0, 1, 2) overwritten
    np.testing.assert_array_equal(buffer.terminated, [0, 0, 1, 0, 0])
    batch = buffer.sample(500, np.random.default_rng(1))
    assert set(batch["rewards"].tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0}
    np.testing.assert_array_equal(batch["next_obs"][:, 0], batch["obs"][:, 0] + 1)   # rows stay together


@pytest.mark.grades("n_step_return")
def test_n_step_window_sums_discounted_rewards_and_flushes_at_the_end():
    window = NStepWindow(n=3, gamma=0.5)
    emitted = []
    for t in range(5):                                  # rewards 1, 2, 4, 8, 16; the pole falls at t = 4
        last = t == 4
        emitted += window.push([t], t % 2, 2.0 ** t, [t + 1], terminated=last, episode_over=last)
        if t == 1:
            assert emitted == []                        # the window is not full yet
    assert [e[5] for e in emitted] == [3, 3, 3, 2, 1]   # k: full windows, then the flush
    np.testing.assert_allclose([e[2] for e in emitted], [1 + 1 + 1, 2 + 2 + 2, 4 + 4 + 4, 8 + 8, 16])
    assert [int(e[0][0]) for e in emitted] == [0, 1, 2, 3, 4] and [e[1] for e in emitted] == [0, 1, 0, 1, 0]
    np.testing.assert_array_equal([e[3] for e in emitted[:2]], [[3], [4]])       # s_{t+3}
    assert [e[4] for e in emitted] == [False, False, True, True, True]           # all that reach the fall
    assert window.pending == []


@pytest.mark.grades("dqn_target", "n_step_return")
def test_n_step_transitions_bootstrap_with_gamma_to_the_k():
    gamma, n = 0.9, 3
    agent = DQN(DQNConfig(episodes=1, n_step=n, gamma=gamma, **TINY_DQN), seed=0)
    agent.env = FakeEnv(truncate_at=5)
    agent.train_episode()
    size = agent.buffer.size
    assert size == 5 and agent.buffer.terminated[:5].sum() == 0          # truncated: every one bootstraps
    np.testing.assert_array_equal(agent.buffer.horizon[:5], [3, 3, 3, 2, 1])
    np.testing.assert_allclose(agent.buffer.rewards[:5], [1 + gamma + gamma ** 2] * 3 + [1 + gamma, 1], rtol=1e-6)
    next_q = np.array([[1.0, 2.0]] * 2, np.float32)
    y = td_target(np.ones(2, np.float32), np.zeros(2, np.float32), next_q, gamma ** np.array([3.0, 1.0]))
    np.testing.assert_allclose(y, [1 + 2 * gamma ** 3, 1 + 2 * gamma], rtol=1e-6)


def test_target_network_is_a_copy_not_an_alias():
    agent = DQN(DQNConfig(**dict(TINY_DQN, hidden=(8,))), seed=0)
    q, target = agent.q_net, agent.target_net
    before = [p.data.copy() for p in target.parameters()]
    for p in q.parameters():
        p.data += 1.0
    for p, b in zip(target.parameters(), before):
        np.testing.assert_array_equal(p.data, b)
    update_target(target, q, tau=0.5)                    # Polyak: halfway
    for p, t, b in zip(q.parameters(), target.parameters(), before):
        np.testing.assert_allclose(t.data, 0.5 * b + 0.5 * p.data, rtol=1e-6)
    update_target(target, q, tau=1.0)                    # hard copy: equal values, separate arrays
    for p, t in zip(q.parameters(), target.parameters()):
        np.testing.assert_array_equal(t.data, p.data)
        assert t.data is not p.data and not np.shares_memory(t.data, p.data)


def test_forward_without_a_graph_is_the_network_itself(rng):
    nets.manual_seed(3)
    q = QNetwork(4, 2, (16, 16))
    obs = rng.standard_normal(4).astype(np.float32)
    np.testing.assert_array_equal(forward_no_grad(q, obs), q(Tensor(obs[None])).data[0])
    batch = rng.standard_normal((32, 4)).astype(np.float32)
    out = forward_no_grad(q, batch.astype(np.float64))                 # observations are taken as float32
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, q(Tensor(batch)).data)


def test_a_q_network_reads_the_checkpoints_of_earlier_versions():
    """QNetwork was a Module holding a Sequential as `.net`: its state had keys net.0.weight, ...; a run
    saved then resumes now (and anything else is still refused)."""
    nets.manual_seed(3)
    q, copy = QNetwork(4, 2, (8,)), QNetwork(4, 2, (8,))
    copy.load_state_dict({f"net.{key}": value for key, value in q.state_dict().items()})
    for a, b in zip(q.parameters(), copy.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    with pytest.raises(KeyError, match="unexpected keys"):
        copy.load_state_dict({**q.state_dict(), "head.weight": np.zeros(2)})


# ==================================================================== REINFORCE
@pytest.mark.grades("policy_gradient_loss")
def test_reinforce_gradient_matches_the_analytic_softmax_gradient(rng):
    """Linear policy logits = W s + b: grad_W log pi(a|s) = (onehot(a) - pi(.|s)) s^T, so the loss
    - mean_t log pi(a_t|s_t) A_t has gradient - 1/T sum_t (onehot(a_t) - pi_t) s_t^T A_t."""
    nets.manual_seed(0)
    policy = mlp((4,), 3).double()
    T = 7
    obs = rng.standard_normal((T, 4))
    actions = rng.integers(0, 3, T)
    returns = returns_to_go(rng.uniform(0, 1, T), 0.9).astype(np.float64)
    advantages = returns - returns.mean()                                # a mean baseline
    loss = policy_loss(policy, obs, actions, advantages.astype(np.float64))
    policy.zero_grad()
    loss.backward()

    W, b = policy[0].weight.data, policy[0].bias.data
    logits = obs @ W.T + b
    pi = np.exp(logits - logits.max(1, keepdims=True))
    pi /= pi.sum(1, keepdims=True)
    score = np.eye(3)[actions] - pi                                      # d log pi(a_t|s_t) / d logits
    expected_W = -(score * advantages[:, None]).T @ obs / T
    expected_b = -(score * advantages[:, None]).sum(0) / T
    np.testing.assert_allclose(policy[0].weight.grad, expected_W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(policy[0].bias.grad, expected_b, rtol=1e-5, atol=1e-7)


@pytest.mark.grades("reinforce_baseline")
def test_baselines_and_normalisation():
    G = np.array([3.0, 2.0, 1.0], np.float32)
    np.testing.assert_allclose(advantages_from(G, None, "none", False), G)
    np.testing.assert_allclose(advantages_from(G, None, "mean", False), [1, 0, -1])
    np.testing.assert_allclose(advantages_from(G, np.array([1, 1, 1], np.float32), "value", False), [2, 1, 0])
    a = advantages_from(G, None, "none", True)
    assert abs(a.mean()) < 1e-6 and abs(a.std() - 1) < 1e-4
    with pytest.raises(ValueError, match="baseline"):
        advantages_from(G, None, "median", False)


# ==================================================================== ES pieces and curves
def test_centered_ranks_and_crossing():
    np.testing.assert_allclose(centered_ranks([10.0, -3.0, 500.0, 7.0, 7.0]), [0.25, -0.5, 0.5, -0.25, 0.0])
    returns = [10.0] * 100 + [500.0] * 100
    avg = running_average(returns)
    assert avg[0] == 10.0 and avg[99] == 10.0 and avg[-1] == 500.0
    # the window [k-100, k) first averages >= 300 when 60 of its 100 episodes are 500s
    episode, step = first_crossing(returns, 300)
    assert episode == 160 and step == 100 * 10 + 60 * 500
    assert first_crossing(returns, 501) == (None, None)
    assert first_crossing(returns[:50], 1) == (None, None)               # needs a full window


# ==================================================================== seeds: named streams, disjoint env seeds
def test_named_streams_are_distinct_and_reproducible():
    draws = {(seed, purpose, *pos): stream(seed, purpose, *pos).integers(2**62)
             for seed in (0, 1, 2) for purpose in ("init", "explore") for pos in ((), (0,), (1,))}
    assert len(set(draws.values())) == len(draws)                       # no two streams coincide
    assert stream(1, "init", 0).integers(2**62) == draws[(1, "init", 0)]
    with pytest.raises(ValueError, match="non-negative"):
        stream(-1, "init")


def test_selection_env_seeds_never_meet_reporting_seeds():
    seeds = range(200)
    report = {report_env_seed(s) for s in seeds}
    selection = {selection_env_seed(s, k) for s in seeds for k in range(50)}
    assert len(report) == 200 and len(selection) == 200 * 50             # fresh starts for every k
    assert not report & selection
    assert all(0 <= x < 2**31 for x in report | selection)
    assert report_env_seed(7) == report_env_seed(7) and report_env_seed(7) != report_env_seed(8)


# ==================================================================== keep-best (delivered vs final)
def _fake_greedy_runs(monkeypatch, scores):
    """Replace the selection's greedy episodes in rl.dqn by a function returning the next score for every
    episode of a call; records the env seeds of each call."""
    seeds, scores = [], list(scores)

    def fake(act_batch, env_seeds):
        seeds.append(list(env_seeds))
        return [scores.pop(0)] * len(env_seeds)
    monkeypatch.setattr(rl.evaluation, "run_greedy_episodes_side_by_side", fake)
    return seeds


def select(agent):
    """One keep-best selection of the agent's current network (what train_episode does every eval_interval)."""
    return agent.keep_best.select(agent.q_net, agent.env_steps, len(agent.episode_returns))


def test_keep_best_keeps_the_latest_of_the_best_networks_and_selects_on_selection_seeds(monkeypatch):
    agent = DQN(DQNConfig(episodes=1, **dict(TINY_DQN, confirm_episodes=0, replace_on_tie=True)), seed=4)
    seeds = _fake_greedy_runs(monkeypatch, [10.0, 30.0, 30.0, 20.0])
    snapshots = []
    for _ in range(4):
        snapshots.append([p.data.copy() for p in agent.q_net.parameters()])
        select(agent)
        for p in agent.q_net.parameters():                                # training moves the network on
            p.data += 0.5
    assert [s["kept"] for s in agent.selections] == [True, True, True, False]    # a tie keeps the later
    assert seeds == [[selection_env_seed(4, k, i) for i in range(2)] for k in range(4)]
    assert report_env_seed(4) not in sum(seeds, [])
    for best, kept in zip(agent.best_net.parameters(), snapshots[2]):
        np.testing.assert_array_equal(best.data, kept)
    assert agent.delivered == "best_eval" and agent.extra_metrics()["best_selection_mean"] == 30.0

    obs = np.array([0.1, -0.2, 0.03, 0.4], np.float32)
    assert agent.delivered_action(obs) == int(agent.best_net(Tensor(obs[None])).data.argmax())
    assert agent.greedy_action(obs) == int(agent.q_net(Tensor(obs[None])).data.argmax())


def test_a_tie_must_hold_on_more_episodes_before_it_replaces_the_best(monkeypatch):
    agent = DQN(DQNConfig(episodes=1, **dict(TINY_DQN, eval_episodes=10, confirm_episodes=20, replace_on_tie=True)),
                seed=5)
    # per call: screening (10 episodes), then confirmation (20) only when the screening matches the best
    seeds = _fake_greedy_runs(monkeypatch, [500.0, 500.0,    # first network: 500 on all 30 -> kept
                                            500.0, 400.0,    # second: lucky screening, 433.3 on 30 -> not kept
                                            450.0,           # third: below 500 on the screening -> no confirmation
                                            500.0, 500.0])   # fourth: holds -> kept (the latest of equals)
    for _ in range(4):
        select(agent)
    assert [s["kept"] for s in agent.selections] == [True, False, False, True]
    np.testing.assert_allclose([s["mean"] for s in agent.selections], [500, (10 * 500 + 20 * 400) / 30, 450, 500])
    assert [len(s) for s in seeds] == [10, 20, 10, 20, 10, 10, 20]
    assert seeds[0] + seeds[1] == [selection_env_seed(5, 0, i) for i in range(30)] == agent.selections[0]["env_seeds"]
    assert len(set(sum(seeds, []))) == 30 + 30 + 10 + 30 and report_env_seed(5) not in sum(seeds, [])


def test_by_default_the_earliest_of_equals_stays_and_no_confirmation_is_played_at_the_best(monkeypatch):
    agent = DQN(DQNConfig(episodes=1, **dict(TINY_DQN, eval_episodes=10, confirm_episodes=20)), seed=6)
    seeds = _fake_greedy_runs(monkeypatch, [300.0, 300.0,    # first network: kept (30 episodes)
                                            300.0,           # an equal screening: not better, no confirmation
                                            500.0, 500.0,    # better on all 30: kept
                                            500.0])          # at the best: screening only
    snapshots = []
    for _ in range(4):
        snapshots.append([p.data.copy() for p in agent.q_net.parameters()])
        select(agent)
        for p in agent.q_net.parameters():
            p.data += 0.5
    assert [s["kept"] for s in agent.selections] == [True, False, True, False]
    assert [len(s) for s in seeds] == [10, 20, 10, 10, 20, 10]
    for best, kept in zip(agent.best_net.parameters(), snapshots[2]):
        np.testing.assert_array_equal(best.data, kept)


def test_side_by_side_episodes_equal_one_after_another():
    def policy(obs):                         # a fixed policy: push towards the lean (it fails at different times)
        return (obs[..., 2] > 0).astype(int)
    env_seeds = [selection_env_seed(1, 0, i) for i in range(5)]
    together = run_greedy_episodes_side_by_side(policy, env_seeds)
    one_by_one = [run_greedy_episodes(lambda o: int(policy(o)), 1, s)[0] for s in env_seeds]
    assert together == one_by_one and len(set(together)) > 1


def test_delivered_is_best_or_final(monkeypatch):
    on = _run(DQN, DQNConfig(episodes=12, **TINY_DQN), seed=2)
    assert on.delivered == "best_eval" and on.selections and on.selections[-1]["episode"] == 12   # end: evaluated
    assert all(s["env_step"] >= 40 * (k + 1) for k, s in enumerate(on.selections[:-1]))
    off = _run(DQN, DQNConfig(episodes=12, **dict(TINY_DQN, keep_best=False)), seed=2)
    assert off.delivered == "final" and off.selections == [] and off.best_net is None
    assert off.episode_returns == on.episode_returns          # selection never touches training's generators
    # the delivered network is the final one when keep_best is off; the kept copy otherwise
    seeds = _fake_greedy_runs(monkeypatch, [])
    calls = []
    for module in (rl.dqn, rl.evaluation):        # evaluate (dqn.py) and evaluate_final (EpisodicAgent)
        monkeypatch.setattr(module, "run_greedy_episodes", lambda act, n, seed: calls.append(act) or [1.0] * n)
    off.evaluate(3, 0), off.evaluate_final(3, 0), on.evaluate(3, 0), on.evaluate_final(3, 0)
    assert [c.__name__ for c in calls] == ["delivered_action", "greedy_action"] * 2 and not seeds


def test_dqn_resume_is_bit_exact_with_the_kept_network():
    cfg = DQNConfig(episodes=14, **TINY_DQN)
    full = _run(DQN, cfg, seed=9)
    part = DQN(cfg, seed=9)
    for _ in range(7):
        part.train_step()
    meta, sections = split_state(part.state_dict())
    assert "best_net" in sections and part.selections and "selections" in meta
    meta = json.loads(json.dumps(meta))                          # the checkpoint's meta is JSON
    resumed = DQN(cfg, seed=9)
    resumed.load_state_dict({**meta, **{k: {n: np.array(a) for n, a in v.items()} for k, v in sections.items()}})
    while not resumed.finished():
        resumed.train_step()
    assert resumed.episode_returns == full.episode_returns and resumed.selections == full.selections
    for net in ("q_net", "target_net", "best_net"):
        for a, b in zip(getattr(resumed, net).parameters(), getattr(full, net).parameters()):
            np.testing.assert_array_equal(a.data, b.data)


# ==================================================================== whole (tiny) runs
def _run(agent_cls, cfg, seed):
    agent = agent_cls(cfg, seed)
    while not agent.finished():
        agent.train_step()
    return agent


@pytest.mark.parametrize("agent_cls, cfg", [
    (DQN, DQNConfig(episodes=12, **TINY_DQN)),
    (Reinforce, ReinforceConfig(episodes=8, episodes_per_update=2, baseline="value", hidden=(8,))),
    (ES, ESConfig(generations=2, population_pairs=3, hidden=(4,))),
])
def test_same_seed_same_returns(agent_cls, cfg):
    a, b, c = _run(agent_cls, cfg, 5), _run(agent_cls, cfg, 5), _run(agent_cls, cfg, 6)
    assert a.episode_returns == b.episode_returns
    assert a.episode_returns != c.episode_returns


def test_short_runs_beat_a_random_policy():
    """A uniformly random policy averages about 22 on CartPole; a few seconds of training do better on
    average over three seeds (one short run alone can still collapse onto a single action)."""
    es = [_run(ES, ESConfig(generations=8, population_pairs=8, hidden=(), sigma=0.3, alpha=0.5), seed=s)
          for s in range(3)]
    assert np.mean([es_agent.evaluate(10, env_seed=123) for es_agent in es]) > 60
    pg = [_run(Reinforce, ReinforceConfig(episodes=60, hidden=(16,), lr=2e-2), seed=s) for s in range(3)]
    assert np.mean([pg_agent.evaluate(10, env_seed=123) for pg_agent in pg]) > 60


def test_dqn_step_budget_counts_partial_episode():
    agent = _run(DQN, DQNConfig(episodes=None, steps=57, **TINY_DQN), seed=0)
    assert agent.env_steps == 57 and sum(agent.episode_returns) == 57


@pytest.mark.parametrize("hold, decay, expected", [(0, 40, [1.0, 0.55, 0.1, 0.1]), (20, 40, [1.0, 1.0, 0.4375, 0.1]),
                                                   (0, None, None)])
def test_dqn_learning_rate_decays_over_env_steps_then_holds(hold, decay, expected):
    """lr = lr0 * (1 - 0.9 * progress), progress = (steps - hold) / decay clipped to [0, 1]; without
    lr_decay_steps the progress is the budget's."""
    agent = DQN(DQNConfig(episodes=None, steps=100, lr=1.0, lr_final_fraction=0.1, lr_hold_steps=hold,
                          lr_decay_steps=decay, **TINY_DQN), seed=0)
    lrs = []
    for steps in (0, 20, 45, 80):
        agent.env_steps = steps
        lrs.append(1.0 - 0.9 * agent.lr_progress())
    np.testing.assert_allclose(lrs, expected if expected else [1.0, 0.82, 0.595, 0.28])


def test_dqn_burst_training_counts_updates():
    """train_frequency 10, gradient_steps 3: after learning_starts (20), 3 updates at steps 30, 40, 50."""
    cfg = DQNConfig(episodes=None, steps=57, **dict(TINY_DQN, train_frequency=10, gradient_steps=3))
    assert _run(DQN, cfg, seed=0).updates == 9


# ==================================================================== CLI contract and resume
CONTRACT = {"model", "config", "episode_returns", "greedy_eval_returns", "first_episode_avg300",
            "first_step_avg300", "first_episode_avg475", "first_step_avg475", "wall_seconds", "env_steps",
            "env_steps_per_second"}
CLI_RUNS = {
    "dqn": ["--episodes", "6", "--hidden", "8", "--batch-size", "8", "--learning-starts", "30",
            "--buffer-size", "300"],
    "reinforce": ["--episodes", "6", "--hidden", "8", "--baseline", "value", "--episodes-per-update", "2"],
    "es": ["--generations", "2", "--population-pairs", "2", "--hidden", "2"],
}


@pytest.mark.parametrize("model", list(CLI_RUNS))
def test_cli_writes_contract_and_resumes_exactly(model, tmp_path, monkeypatch):
    import train
    import cli.rl
    monkeypatch.setattr(cli.rl, "EVAL_EPISODES", 3)          # keep the greedy evaluation short here
    full, part = tmp_path / "full", tmp_path / "part"
    assert train.main([model, "--seed", "3", "--out", str(full), *CLI_RUNS[model]]) == 0
    metrics = json.loads((full / "metrics.json").read_text())
    assert CONTRACT <= set(metrics) and metrics["model"] == model
    assert len(metrics["greedy_eval_returns"]) == 3 and metrics["env_steps"] == sum(metrics["episode_returns"])
    assert (full / "durations.png").exists() and (full / "losses.png").exists()
    assert (full / "checkpoint.npz").exists()
    assert len(metrics["final_greedy_eval_returns"]) == 3 and metrics["report_env_seed"] == report_env_seed(3)
    if model == "dqn":                         # the final network was evaluated for keep-best, on other seeds
        assert metrics["delivered"] == "best_eval" and metrics["selection_evaluations"]
        assert metrics["report_env_seed"] not in {x for s in metrics["selection_evaluations"] for x in s["env_seeds"]}
    if model == "es":
        assert len(metrics["generation_mean_returns"]) == 2 == metrics["generations"]
        assert len(metrics["episode_returns"]) == 2 * 2 * 2

    # Ctrl-C after the 2nd episode / update / generation (the run saves at that boundary and exits
    # with 130), then --resume: the same returns and final parameters as the uninterrupted run
    agent_cls = {"dqn": DQN, "reinforce": Reinforce, "es": ES}[model]
    original, calls = agent_cls.train_step, []

    def train_step_then_ctrl_c(self):
        result = original(self)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(agent_cls, "train_step", train_step_then_ctrl_c)
    with pytest.raises(SystemExit) as stopped:
        train.main([model, "--seed", "3", "--out", str(part), *CLI_RUNS[model]])
    assert stopped.value.code == 130 and len(calls) == 2
    assert not (part / "metrics.json").exists() and (part / "checkpoint.npz").exists()
    monkeypatch.setattr(agent_cls, "train_step", original)
    assert train.main([model, "--resume", str(part), *CLI_RUNS[model][:2]]) == 0
    resumed = json.loads((part / "metrics.json").read_text())
    assert resumed["episode_returns"] == metrics["episode_returns"]
    assert resumed["greedy_eval_returns"] == metrics["greedy_eval_returns"]
    a, b = np.load(full / "checkpoint.npz"), np.load(part / "checkpoint.npz")
    weights = [k for k in a.files if k.startswith(("q_net/", "target_net/", "best_net/", "policy/", "value/"))]
    assert weights
    for k in weights:
        np.testing.assert_array_equal(a[k], b[k])


def test_cli_rejects_bad_input(tmp_path, capsys):
    import train
    assert train.main(["dqn", "--resume", str(tmp_path)]) == 2
    assert "no checkpoint.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:                 # out of range: refused while parsing
        train.main(["dqn", "--gamma", "1.5", "--episodes", "1", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "--gamma must be a number in [0, 1], got 1.5" in capsys.readouterr().err
