"""Tabular RL (rl/dynamic_programming.py, rl/tabular.py, rl/random_walk.py) and the textbook experiments
(rl/tabular_experiments.py, train.py tabular): closed forms, exact updates, and tiny experiment runs."""
import json

import gymnasium as gym
import numpy as np
import pytest

from rl.dynamic_programming import (TabularModel, bellman_optimality_residual, exact_policy_values,
                                    finite_horizon_values, policy_evaluation, policy_iteration, value_iteration)
from rl.random_walk import RandomWalkEnv
from rl.tabular import (BatchEnv, epsilon_greedy, epsilon_greedy_probs, expected_sarsa_target, first_visit_returns,
                        mc_control, mc_prediction, mc_prediction_env, q_learning_target, sarsa_lambda, sarsa_target,
                        td0_prediction, td0_update, td_control, td_lambda_prediction)
from rl import tabular_experiments
from rl.tabular_experiments import TabularConfig, greedy_path


def three_state_table():
    """s0: a0 stays with reward 1; a1 moves to s1 with prob 1/2 (else stays), reward 0.
    s1: a0 stays with reward 2; a1 ends the episode with reward 10. s2: terminal."""
    return {0: {0: [(1.0, 0, 1.0, False)], 1: [(0.5, 1, 0.0, False), (0.5, 0, 0.0, False)]},
            1: {0: [(1.0, 1, 2.0, False)], 1: [(1.0, 2, 10.0, True)]},
            2: {0: [(1.0, 2, 0.0, True)], 1: [(1.0, 2, 0.0, True)]}}


def chain_table(n: int, n_actions: int = 1):
    """0 -> 1 -> ... -> n-1 -> terminal n, every action the same; reward 1 on the last step only."""
    table = {s: {a: [(1.0, s + 1, float(s == n - 1), s == n - 1)] for a in range(n_actions)} for s in range(n)}
    table[n] = {a: [(1.0, n, 0.0, True)] for a in range(n_actions)}
    return table


# ==================================================================== dynamic programming
@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.97])
@pytest.mark.grades("bellman_backup", "policy_evaluation", "value_iteration")
def test_value_iteration_matches_closed_form_on_three_states(gamma):
    model = TabularModel.from_table(three_state_table())
    v1 = max(2.0 / (1 - gamma), 10.0)                                # stay forever, or take the 10
    v0 = max(1.0 / (1 - gamma), 0.5 * gamma * v1 / (1 - 0.5 * gamma))  # stay, or try to move: V0 = g(V1 + V0)/2
    V, policy, info = value_iteration(model, gamma, theta=1e-12)
    np.testing.assert_allclose(V, [v0, v1, 0.0], atol=1e-9)
    assert policy[1].argmax() == (0 if 2.0 / (1 - gamma) > 10.0 else 1)
    assert info["sweeps"] > 1
    V_pi, policy_pi, _ = policy_iteration(model, gamma, theta=1e-12)
    np.testing.assert_allclose(V_pi, [v0, v1, 0.0], atol=1e-9)
    np.testing.assert_array_equal(policy_pi, policy)


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "FrozenLake8x8-v1"])
@pytest.mark.grades("bellman_backup", "policy_evaluation", "value_iteration")
def test_policy_and_value_iteration_agree_with_a_linear_solve_on_frozenlake(env_id):
    model = TabularModel.from_env(gym.make(env_id))
    V_vi, pi_vi, _ = value_iteration(model, 0.99, theta=1e-12)
    V_pi, pi_pi, _ = policy_iteration(model, 0.99, theta=1e-12)
    exact = exact_policy_values(model, pi_vi, 0.99)
    assert np.abs(V_vi - exact).max() <= 1e-6 and np.abs(V_pi - exact).max() <= 1e-6
    assert bellman_optimality_residual(model, exact, 0.99) < 1e-9      # no action improves: optimal
    # both policies are optimal: the same values by a direct solve, even where they break ties differently
    np.testing.assert_allclose(exact_policy_values(model, pi_pi, 0.99), exact, atol=1e-9)
    assert V_vi[0] > 0.1 and V_vi[0] < 1.0


def test_value_iteration_on_the_cliff_stops_at_terminal_outcomes():
    # CliffWalking's goal state has ordinary (non-absorbing) rows in P: only the `terminated` flag of the
    # transition into it ends the return. Undiscounted, the shortest path (13 steps of -1) is optimal.
    model = TabularModel.from_env(gym.make("CliffWalking-v1"))
    V, policy, _ = value_iteration(model, 1.0, theta=1e-12)
    assert V[36] == pytest.approx(-13.0)
    assert len(greedy_path(model, policy)) - 1 == 13


@pytest.mark.grades("policy_evaluation")
def test_random_walk_values_by_policy_evaluation_and_env_dynamics():
    env = RandomWalkEnv()
    model = TabularModel.from_env(env)
    V, _ = policy_evaluation(model, np.ones((7, 1)), gamma=1.0, theta=1e-13)
    np.testing.assert_allclose(V, env.true_values, atol=1e-9)
    np.testing.assert_allclose(env.true_values[1:-1], np.arange(1, 6) / 6)
    obs, _ = env.reset(seed=3)
    assert obs == 3
    obs, reward, terminated, truncated, _ = env.step(0)
    assert obs in (2, 4) and reward == 0.0 and not terminated and not truncated
    with pytest.raises(ValueError, match="single action 0"):
        env.step(1)


def test_finite_horizon_success_is_the_probability_within_the_limit():
    # chain of 3 steps: the goal is reached within 3 steps, never within 2
    model = TabularModel.from_table(chain_table(3))
    policy = np.ones((4, 1))
    assert finite_horizon_values(model, 2, policy)[0] == 0.0
    assert finite_horizon_values(model, 3, policy)[0] == 1.0


def test_model_errors_are_clear():
    with pytest.raises(ValueError, match="no transition table P"):
        TabularModel.from_env(gym.make("CartPole-v1"))
    table = three_state_table()
    table[0][1] = [(0.5, 1, 0.0, False)]
    with pytest.raises(ValueError, match=r"P\[0\]\[1\]: outcome probabilities sum to 0.5"):
        TabularModel.from_table(table)


# ==================================================================== the sampled environment
def test_batch_env_samples_the_table_outcomes():
    model = TabularModel.from_env(gym.make("FrozenLake-v1"))          # slippery: 3 outcomes of 1/3
    n = 30_000
    env = BatchEnv(model, n, np.random.default_rng(0))
    states = np.full(n, 5 + 1)                                        # state 6, action 1 (down): 5, 10, 7
    next_states, _, _ = env.step(states, np.ones(n, dtype=np.int64))
    frequencies = np.array([(next_states == s).mean() for s in (5, 7, 10)])
    assert np.abs(frequencies - 1 / 3).max() < 4 * np.sqrt(2 / 9 / n)
    assert set(np.unique(next_states)) == {5, 7, 10}


def test_epsilon_greedy_frequencies_and_tie_breaking():
    rng = np.random.default_rng(0)
    q = np.tile([[0.0, 2.0, 2.0, -1.0]], (40_000, 1))                 # actions 1 and 2 tie for the max
    actions = epsilon_greedy(q, 0.2, rng)
    expected = epsilon_greedy_probs(q[:1], 0.2)[0]                    # [.05, .45, .45, .05]
    np.testing.assert_allclose(expected, [0.05, 0.45, 0.45, 0.05])
    observed = np.bincount(actions, minlength=4) / len(actions)
    assert np.abs(observed - expected).max() < 0.01


# ==================================================================== TD updates and targets
@pytest.mark.grades("td_error")
def test_td0_update_on_a_fixed_transition():
    V = np.array([[0.0, 0.3, 0.6, 0.9]])
    delta = td0_update(V, np.array([0]), np.array([1]), np.array([0.5]), np.array([2]), np.array([False]),
                       alpha=0.1, gamma=0.9)
    expected_delta = 0.5 + 0.9 * 0.6 - 0.3
    np.testing.assert_allclose(delta, [expected_delta])
    np.testing.assert_allclose(V, [[0.0, 0.3 + 0.1 * expected_delta, 0.6, 0.9]])
    td0_update(V, np.array([0]), np.array([3]), np.array([1.0]), np.array([2]), np.array([True]), 0.5, 0.9)
    assert V[0, 3] == pytest.approx(0.9 + 0.5 * (1.0 - 0.9))         # terminal: no bootstrap


@pytest.mark.grades("sarsa_target", "q_learning_target", "expected_sarsa_target")
def test_sarsa_expected_sarsa_and_q_learning_differ_only_in_the_target():
    reward, gamma, epsilon = np.array([-1.0]), 0.9, 0.3
    q_next = np.array([[1.0, 5.0, 3.0]])
    explored = np.array([2])                                          # the agent explores: takes action 2
    assert sarsa_target(reward, np.array([False]), q_next, explored, gamma)[0] == pytest.approx(-1 + 0.9 * 3.0)
    assert q_learning_target(reward, np.array([False]), q_next, explored, gamma)[0] == pytest.approx(-1 + 0.9 * 5.0)
    mean = epsilon / 3 * (1 + 5 + 3) + (1 - epsilon) * 5.0
    assert expected_sarsa_target(reward, np.array([False]), q_next, explored, gamma, epsilon)[0] == \
        pytest.approx(-1 + 0.9 * mean)
    greedy = np.array([1])                                            # when A' is greedy, SARSA = Q-learning
    assert sarsa_target(reward, np.array([False]), q_next, greedy, gamma)[0] == \
        q_learning_target(reward, np.array([False]), q_next, greedy, gamma)[0]
    for target in (sarsa_target, q_learning_target, expected_sarsa_target):
        assert target(reward, np.array([True]), q_next, explored, gamma, epsilon)[0] == -1.0


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.5), (0.9, 0.8)])
@pytest.mark.grades("eligibility_traces")
def test_eligibility_traces_decay_by_gamma_lambda(gamma, lam):
    # one episode on a 5-step chain from V = 0: every TD error is 0 except the last (= 1), which reaches
    # the state visited k steps before the end with the weight (gamma lambda)^k
    n, alpha = 5, 0.5
    model = TabularModel.from_table(chain_table(n))
    V = td_lambda_prediction(model, np.ones((n + 1, 1)), 1, 1, alpha, gamma, lam, np.random.default_rng(0))
    np.testing.assert_allclose(V[0, :n], alpha * (gamma * lam) ** np.arange(n - 1, -1, -1))
    model2 = TabularModel.from_table(chain_table(n, n_actions=2))
    Q, _ = sarsa_lambda(model2, 1, 1, alpha, 0.0, gamma, lam, np.random.default_rng(0))
    np.testing.assert_allclose(Q[0, :n].sum(axis=1), alpha * (gamma * lam) ** np.arange(n - 1, -1, -1))


def test_lambda_zero_reproduces_the_one_step_methods():
    walk = TabularModel.from_env(RandomWalkEnv())
    args = (walk, np.ones((7, 1)), 20, 4)
    v_td0 = td0_prediction(*args, alpha=0.1, gamma=1.0, rng=np.random.default_rng(5), v0=0.5)
    v_lam = td_lambda_prediction(*args, alpha=0.1, gamma=1.0, lam=0.0, rng=np.random.default_rng(5), v0=0.5)
    np.testing.assert_array_equal(v_td0, v_lam)
    cliff = TabularModel.from_env(gym.make("CliffWalking-v1"))
    q_sarsa, r_sarsa = td_control(cliff, "sarsa", 5, 3, 0.5, 0.1, 1.0, np.random.default_rng(7), max_steps=300)
    q_lam, r_lam = sarsa_lambda(cliff, 5, 3, 0.5, 0.1, 1.0, 0.0, np.random.default_rng(7), max_steps=300)
    np.testing.assert_array_equal(q_sarsa, q_lam)
    np.testing.assert_array_equal(r_sarsa, r_lam)


def test_td_control_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        td_control(TabularModel.from_table(chain_table(2)), "sarsa_max", 1, 1, 0.5, 0.1, 1.0, np.random.default_rng(0))


# ==================================================================== Monte Carlo
def test_first_visit_returns_by_hand():
    keys = np.array([[0], [1], [0], [2]])
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    valid = np.ones((4, 1), dtype=bool)
    returns, first = first_visit_returns(keys, rewards, valid, 0.5, 3)
    g3 = 4.0
    g2 = 3.0 + 0.5 * g3
    g1 = 2.0 + 0.5 * g2
    g0 = 1.0 + 0.5 * g1
    np.testing.assert_allclose(returns[:, 0], [g0, g1, g2, g3])
    np.testing.assert_array_equal(first[:, 0], [True, True, False, True])     # state 0 again at t = 2


def test_mc_prediction_fast_and_reference_approach_the_true_values():
    env = RandomWalkEnv()
    model, truth = TabularModel.from_env(env), env.true_values
    V = mc_prediction(model, np.ones((7, 1)), 100, 40, gamma=1.0, rng=np.random.default_rng(1))
    assert np.abs(V.mean(axis=0)[1:-1] - truth[1:-1]).max() < 0.03     # the average over 40 runs
    V_ref, counts = mc_prediction_env(RandomWalkEnv(), lambda obs: 0, 2000, 1.0, np.random.default_rng(2))
    assert counts[3] == 2000                                           # C starts every episode: one first visit
    assert max(abs(V_ref[s] - truth[s]) for s in range(1, 6)) < 0.05


def test_mc_control_learns_the_better_action():
    # s0 (either action) -> s1; at s1 action 0 ends with +1, action 1 with -1
    table = {0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 1, 0.0, False)]},
             1: {0: [(1.0, 2, 1.0, True)], 1: [(1.0, 2, -1.0, True)]},
             2: {0: [(1.0, 2, 0.0, True)], 1: [(1.0, 2, 0.0, True)]}}
    epsilon = 0.2
    Q, returns = mc_control(TabularModel.from_table(table), 400, 8, epsilon, 1.0, np.random.default_rng(0))
    assert (Q[:, 1].argmax(axis=1) == 0).all()
    np.testing.assert_array_equal(Q[:, 1, 0], 1.0)
    # s0's returns are those of the epsilon-soft policy at s1: 1 - 2 * epsilon / 2 in expectation
    assert abs(Q[:, 0].mean() - (1 - epsilon)) < 0.05
    assert returns.shape == (400, 8)


# ==================================================================== the experiments (tiny)
def test_greedy_path_on_the_cliff():
    model = TabularModel.from_env(gym.make("CliffWalking-v1"))
    Q = np.zeros((48, 4))
    Q[36, 0] = 1.0                                   # up from the start, then right along row 2, then down
    Q[24:35, 1] = 1.0
    Q[35, 2] = 1.0
    assert len(greedy_path(model, Q)) - 1 == 13
    assert greedy_path(model, np.zeros((48, 4))) is None                # "up" forever from the start: a loop


def _tiny(experiment, **changes):
    values = {"runs": 3, "episodes": 30, "eval_episodes": 20, "max_steps": 200}
    values.update(changes)
    return TabularConfig(experiment=experiment, **values)


TINY = {"random-walk": ["--runs", "2", "--episodes", "6"],
        "cliff": ["--runs", "3", "--episodes", "8", "--max-steps", "100"],
        "frozenlake": ["--runs", "1", "--episodes", "20", "--eval-episodes", "20"],
        "taxi": ["--runs", "2", "--episodes", "5", "--eval-episodes", "3"],
        "blackjack": ["--episodes", "300"]}


@pytest.mark.parametrize("experiment", sorted(TINY))
def test_cli_tiny_runs_write_the_contract_keys_and_a_figure(experiment, tmp_path):
    import train
    out = tmp_path / experiment
    assert train.main(["tabular", "--experiment", experiment, "--seed", "3", "--out", str(out), *TINY[experiment]]) == 0
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert metrics["seed"] == 3 and (out / (experiment.replace("-", "_") + ".png")).stat().st_size > 0
    if experiment == "random-walk":
        assert metrics["episodes"] == 6 and len(metrics["td_rms_error"]) == len(metrics["mc_rms_error"]) == 6
    elif experiment == "cliff":
        assert metrics["runs"] == 3 and len(metrics["sarsa_rewards_per_episode"]) == 8
        assert len(metrics["q_learning_rewards_per_episode"]) == 8
        assert set(metrics["greedy_path_length"]) == {"sarsa", "q_learning"}
    elif experiment == "frozenlake":
        for name, n_states in (("4x4", 16), ("8x8", 64)):
            result = metrics[name]
            assert result["gamma"] == 0.99 and len(result["value_iteration_values"]) == n_states
            assert len(result["policy_iteration_values"]) == n_states
            assert set(result["success_rate"]) == {"value_iteration", "policy_iteration", "q_learning"}
            assert result["max_abs_diff_vs_linear_solve"]["value_iteration"] <= 1e-6
    elif experiment == "taxi":
        assert len(metrics["q_learning_greedy_mean_reward_runs"]) == 2
        assert -200 <= metrics["q_learning_greedy_mean_reward"] <= 20
    else:
        assert np.shape(metrics["values_usable_ace_after_300"]) == (10, 10)


def test_same_seed_same_numbers_other_seed_other_numbers():
    tiny = _tiny("cliff", episodes=4, max_steps=100)
    a, _ = tabular_experiments.run_experiment(tiny, seed=1)
    b, _ = tabular_experiments.run_experiment(tiny, seed=1)
    c, _ = tabular_experiments.run_experiment(tiny, seed=2)
    np.testing.assert_array_equal(a["sarsa_rewards_per_episode"], b["sarsa_rewards_per_episode"])
    assert not np.array_equal(a["sarsa_rewards_per_episode"], c["sarsa_rewards_per_episode"])


def test_cli_refuses_resume_and_bad_flags(tmp_path, capsys):
    import train
    out = str(tmp_path / "done")
    assert train.main(["tabular", "--experiment", "random-walk", "--runs", "1", "--episodes", "2", "--out", out]) == 0
    capsys.readouterr()
    assert train.main(["tabular", "--experiment", "random-walk", "--resume", out]) == 2
    assert "finished" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        train.main(["tabular", "--experiment", "cliff", "--runs", "0", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "--runs must be an integer >= 1, got 0" in capsys.readouterr().err
