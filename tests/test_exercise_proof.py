"""Every grader grades (a mutation test of our own suite): for each exercise, with its solution blanked
its grading tests fail; as written they pass; with each plausible wrong solution in
tests/exercise_mutants.py (a sign, a factor of 2, a transposed product, an off-by-one...) they fail.
The solution is swapped in this process (the function's code object, scripts/exercises/runner.py), so
no copy of the lab is made. `python scripts/exercise.py prove --all` prints the same as a table.
Not copied into a student copy."""
from __future__ import annotations

import pytest

from exercise_mutants import MUTANTS
from exercises import registry, runner

EXERCISES = registry()


def test_every_exercise_has_at_least_one_mutation_and_every_mutation_an_exercise():
    assert set(MUTANTS) == set(EXERCISES), set(MUTANTS) ^ set(EXERCISES)
    assert all(len(m) >= 1 for m in MUTANTS.values())


@pytest.mark.grades_proof
@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_grader_fails_blank_and_mutated_solutions_and_passes_the_reference(name):
    result = runner.prove(EXERCISES[name], MUTANTS[name])
    assert result["blank"], f"{name}: its grading tests pass with the solution blanked"
    assert name in result["blank"], f"{name}: blanked, the first failure does not name it: {result['blank']}"
    assert not result["reference"], f"{name}: the reference fails its grading tests: {result['reference'][0]}"
    missed = [(old, new) for old, new, failure in result["mutants"] if not failure]
    assert not missed, f"{name}: mutations not caught: {missed}"
