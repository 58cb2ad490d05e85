"""The exercise mode (scripts/exercise.py): the registry read from the markers, a student copy (blanked
regions, no solution text, the reference backend by default, `check` naming the exercise in one line),
and the grading tests that no older test provided (each marked with the exercise it grades)."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import autodiff.functional as F
from autodiff import Tensor, gradcheck
from exercises import CHAPTER_ORDER, ExerciseError, registry, select

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = registry()


# ==================================================================== the registry
def test_registry_has_40_exercises_each_with_a_task_hint_and_grading_test():
    assert len(EXERCISES) >= 40
    for exercise in EXERCISES.values():
        assert exercise.task and exercise.hint and exercise.body, exercise.name
        assert exercise.tests, f"{exercise.name} has no @pytest.mark.grades test"
        assert exercise.chapter in CHAPTER_ORDER
        assert not exercise.path.startswith("autodiff/fast/")
    assert {e.chapter for e in EXERCISES.values()} >= {"layers", "optim", "models", "rl"}


def test_unknown_names_and_chapters_are_one_line_errors():
    with pytest.raises(ExerciseError, match="unknown exercise 'nope'"):
        select(EXERCISES, ["nope"])
    with pytest.raises(ExerciseError, match="unknown chapter 'x'; expected one of engine"):
        select(EXERCISES, chapter="x")
    from exercises import parse_file
    with pytest.raises(ExerciseError, match="has no END"):
        parse_file("a.py", "    ### BEGIN SOLUTION a\n    ### task: t\n    ### hint: h\n    x = 1\n")
    with pytest.raises(ExerciseError, match="no '### hint:' line"):
        parse_file("a.py", "    ### BEGIN SOLUTION a\n    ### task: t\n    x = 1\n    ### END SOLUTION\n")


def run_tool(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(cwd))
    env.pop("NUMPY_DL_LAB_BACKEND", None)
    return subprocess.run([sys.executable, "scripts/exercise.py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_input_exits_2_with_one_line():
    result = run_tool("hint", "no_such_exercise")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown exercise 'no_such_exercise'" in result.stderr
    result = run_tool("check")
    assert result.returncode == 2 and "name exercises, or give --chapter C or --all" in result.stderr


def test_hint_prints_the_task_hint_and_the_docstring():
    result = run_tool("hint", "adam_bias_correction")
    assert result.returncode == 0
    assert "m_hat = m / (1 - beta1^t)" in result.stdout and "task: divide the moments" in result.stdout


# ==================================================================== a student copy
@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    target = tmp_path_factory.mktemp("student") / "lab"
    result = run_tool("make", str(target))                      # every exercise blanked
    assert result.returncode == 0, result.stderr
    return target


def solution_lines(root: Path = ROOT) -> dict:
    """{exercise: the code lines (>= 12 characters) of its solution that appear nowhere else in the lab}."""
    from exercise import tracked_files
    regions = {e.path: e for e in EXERCISES.values()}
    outside = []
    for rel in tracked_files(root):
        if rel.endswith((".py", ".md", ".cfg", ".txt")):
            lines = (root / rel).read_text(encoding="utf-8").splitlines()
            inside = {n for e in EXERCISES.values() if e.path == rel for n in range(e.begin - 1, e.end)}
            outside += [line for n, line in enumerate(lines) if n not in inside or rel not in regions]
    text = "\n".join(outside)
    return {e.name: [c for c in (line.split("#")[0].strip() for line in e.body) if len(c) >= 12 and c not in text]
            for e in EXERCISES.values()}


def test_student_copy_has_no_solution_text_and_no_mutations(student_copy):
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in student_copy.rglob("*")
             if p.is_file() and p.suffix in (".py", ".md", ".cfg", ".txt", ".toml")}
    assert not (student_copy / ".git").exists() and not (student_copy / "tests/exercise_mutants.py").exists()
    copied = registry(student_copy)
    unique = solution_lines()
    assert sum(map(len, unique.values())) > 60           # the check has something to look for
    for exercise in EXERCISES.values():
        assert copied[exercise.name].is_blank, exercise.name
        for code in unique[exercise.name]:
            leaks = [p for p, text in texts.items() if code in text]
            assert not leaks, f"{exercise.name}: {code!r} is in {leaks[0]}"
    backend = (student_copy / "autodiff/backend.py").read_text(encoding="utf-8")
    assert 'DEFAULT_BACKEND = "reference"' in backend


def test_check_in_a_student_copy_names_the_blank_exercise_in_one_line(student_copy):
    result = run_tool("check", "td_error", "gae", cwd=student_copy)
    assert result.returncode == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith(("td_error", "gae "))]
    assert len(rows) == 2 and all("blank" in row for row in rows), result.stdout
    # the solution written back: check passes for it
    original = EXERCISES["td_error"]
    path = student_copy / original.path
    text = path.read_text(encoding="utf-8")
    copied = registry(student_copy)["td_error"]
    from exercises import replace_body
    path.write_text(replace_body(text, copied, original.body), encoding="utf-8")
    result = run_tool("check", "td_error", cwd=student_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "td_error" in result.stdout and " done " in result.stdout


# ==================================================================== graders the older tests did not provide
@pytest.mark.grades("central_difference")
def test_gradcheck_leaves_its_inputs_unchanged():
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    before = x.data.copy()
    assert gradcheck(lambda a: (a * a).tanh(), x)
    assert np.array_equal(x.data, before)


@pytest.mark.grades("made_masks")
def test_made_masks_of_a_small_example():
    from models.made import masks_from_degrees
    hidden, output, direct = masks_from_degrees([np.array([1, 2, 3]), np.array([1, 2])])
    np.testing.assert_array_equal(hidden[0], [[1, 0, 0], [1, 1, 0]])      # unit of degree k sees inputs <= k
    np.testing.assert_array_equal(output, [[0, 0], [1, 0], [1, 1]])        # output i sees units of degree < i
    np.testing.assert_array_equal(direct, [[0, 0, 0], [1, 0, 0], [1, 1, 0]])


@pytest.mark.grades("reparameterize")
def test_reparameterize_with_a_given_eps():
    from models.vae import reparameterize
    mu, logvar, eps = np.array([[0.5, -1.0]]), np.array([[0.3, -2.0]]), np.array([[1.5, -0.7]])
    z = reparameterize(Tensor(mu), Tensor(logvar), eps)
    np.testing.assert_allclose(z.data, mu + np.exp(0.5 * logvar) * eps, rtol=1e-12)


@pytest.mark.grades("neg_elbo")
def test_neg_elbo_is_the_pixels_bce_sum_plus_the_kl():
    from models.vae import neg_elbo
    rng = np.random.default_rng(0)
    logits, x = rng.standard_normal((3, 5)), (rng.random((3, 5)) > 0.5).astype(float)
    mu, logvar = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    terms = neg_elbo(Tensor(logits), Tensor(x), Tensor(mu), Tensor(logvar))
    p = 1 / (1 + np.exp(-logits))
    recon = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)
    kl = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum(axis=1)
    np.testing.assert_allclose(terms[0].data, recon + kl, rtol=1e-10)


@pytest.mark.grades("policy_evaluation", "bellman_backup")
def test_policy_evaluation_of_a_stochastic_policy_equals_the_linear_solve():
    import gymnasium as gym
    from rl.dynamic_programming import TabularModel, exact_policy_values, policy_evaluation
    model = TabularModel.from_env(gym.make("FrozenLake-v1"))
    policy = np.random.default_rng(0).dirichlet(np.ones(model.n_actions), size=model.n_states)
    V, _ = policy_evaluation(model, policy, gamma=0.9, theta=1e-12)
    np.testing.assert_allclose(V, exact_policy_values(model, policy, 0.9), atol=1e-9)


@pytest.mark.grades("es_gradient")
def test_es_step_on_a_linear_return_is_the_mirrored_estimate():
    """F(theta) = c . theta: the mirrored estimate is (1/m) sum_i (c . eps_i) eps_i, exactly."""
    from rl.es import ES, ESConfig
    es = ES(ESConfig(generations=1, population_pairs=5, sigma=0.1, alpha=0.3, rank_normalize=False), seed=0)
    c = np.linspace(-1, 1, es.theta.size)
    es.episode_return = lambda theta, seed: float(c @ theta)
    eps = copy.deepcopy(es.rng).standard_normal((5, es.theta.size)).astype(np.float32)
    theta = es.theta.copy()
    es.train_generation()
    expected = 0.3 * ((eps @ c) @ eps) / 5
    np.testing.assert_allclose(es.theta - theta, expected, rtol=1e-3, atol=1e-5)


# ==================================================================== the engine's rules, one gradcheck each
def _rule(grades, fn, *shapes, low=-2.0, high=2.0):
    return pytest.param(fn, shapes, low, high, marks=grades, id=grades.args[0])


RULES = [
    _rule(pytest.mark.grades("unbroadcast"), lambda a, b: a + b, (2, 3, 4), (3, 1)),
    _rule(pytest.mark.grades("mul_backward"), lambda a, b: a * b, (3, 4), (3, 4)),
    _rule(pytest.mark.grades("div_backward"), lambda a, b: a / b, (3, 4), (3, 4), low=0.5, high=2.0),
    _rule(pytest.mark.grades("matmul_backward"), lambda a, b: a @ b, (2, 3, 4), (4, 4)),
    _rule(pytest.mark.grades("exp_backward"), lambda x: x.exp(), (3, 4)),
    _rule(pytest.mark.grades("log_backward"), lambda x: x.log(), (3, 4), low=0.5, high=3.0),
    _rule(pytest.mark.grades("sigmoid_backward"), lambda x: F.sigmoid(x), (3, 4)),
    _rule(pytest.mark.grades("tanh_backward"), lambda x: F.tanh(x), (3, 4)),
    _rule(pytest.mark.grades("softmax_backward"), lambda x: F.softmax(x, axis=0), (3, 4)),
    _rule(pytest.mark.grades("log_softmax_backward"), lambda x: F.log_softmax(x, axis=1), (3, 4)),
    _rule(pytest.mark.grades("log_softmax_stable"), lambda x: F.log_softmax(x, axis=0), (3, 4)),
    _rule(pytest.mark.grades("mean_backward"), lambda x: x.mean(axis=(0, 2)), (2, 3, 4)),
    _rule(pytest.mark.grades("max_ties"), lambda x: x.max(axis=1), (3, 4)),
    _rule(pytest.mark.grades("transpose_backward"), lambda x: x.transpose(1, 2, 0), (2, 3, 4)),
    _rule(pytest.mark.grades("index_add"), lambda x: x[np.array([0, 2, 0, 0]), np.array([1, 1, 1, 0])], (3, 2)),
]


@pytest.mark.parametrize("fn, shapes, low, high", RULES)
def test_rule_passes_gradcheck(fn, shapes, low, high):
    rng = np.random.default_rng(0)
    inputs = [Tensor(rng.uniform(low, high, shape), requires_grad=True) for shape in shapes]
    assert gradcheck(fn, *inputs)


@pytest.mark.grades("topological_order")
def test_a_node_used_twice_by_one_op_is_ordered_once():
    from autodiff.engine import topological_order
    x = Tensor(np.array([0.3, -0.5]), requires_grad=True)
    h = x.exp()
    loss = (h * h).sum()                                  # h is both parents of the product
    order = topological_order([loss])
    assert len(order) == len({id(node) for node in order}) == 4
    position = [[id(node) for node in order].index(id(t)) for t in (x, h, loss)]
    assert position == sorted(position)                   # every node after its parents
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp(2 * x.data))


def test_readme_do_it_yourself_names_real_exercises_and_every_chapter():
    import re
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Do it yourself"):text.index("## Models and agents")]
    for name in re.findall(r"exercise\.py hint (\w+)", section):
        assert name in EXERCISES, name
    assert re.findall(r"^\| (\w+) \| `", section, re.M) == list(CHAPTER_ORDER)


@pytest.mark.grades("eligibility_traces")
def test_accumulating_traces_count_every_visit():
    """One state that loops on itself (p = 1/2) before a reward of 1: every TD error is 0 but the last (= 1),
    so with gamma = lambda = 1, Q(0, 0) = alpha * (the number of visits): accumulating, not replacing."""
    from rl.dynamic_programming import TabularModel
    from rl.tabular import sarsa_lambda
    table = {0: {0: [(0.5, 0, 0.0, False), (0.5, 1, 1.0, True)]}, 1: {0: [(1.0, 1, 0.0, True)]}}
    Q, _ = sarsa_lambda(TabularModel.from_table(table), 1, 16, 0.125, 0.0, 1.0, 1.0, np.random.default_rng(0))
    visits = Q[:, 0, 0] / 0.125
    np.testing.assert_allclose(visits, np.round(visits))
    assert visits.min() >= 1 and visits.max() >= 2
