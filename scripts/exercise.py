r"""Learn it by writing it: any marked derivative or update rule of the lab becomes a graded exercise.

    python scripts/exercise.py list [--chapter engine]          # status: done / blank / failing
    python scripts/exercise.py make ~/lab-student --chapter engine   # a copy with those regions blanked
    cd ~/lab-student && pip install -e '.[test]' && python scripts/exercise.py check --chapter engine
    python scripts/exercise.py hint softmax_backward            # the hint and the docstring it points to
    python scripts/exercise.py prove --all                      # every grader fails on blank and mutants

An exercise is a region of the reference code between `### BEGIN SOLUTION name` and `### END SOLUTION`
(scripts/exercises/__init__.py); the tests marked `@pytest.mark.grades("name")` grade it. `make` writes
the lab's tracked files to DIR with the chosen regions replaced by `raise NotImplementedError("name:
task")`, and the reference backend as the default (the fast backend would not run the student's code).
Exit status: 0 all good, 1 an exercise fails, 2 bad input.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))
from exercises import (ROOT, CHAPTER_ORDER, ExerciseError, blanked, hinted_docstring,  # noqa: E402
                       registry, runner, select)

# not copied to a student copy: the mutations are wrong solutions written next to the right ones
NOT_COPIED = ("tests/exercise_mutants.py", "tests/test_exercise_proof.py")
SKIPPED = (".git", "__pycache__", ".pytest_cache", ".hypothesis", "runs", ".cache", "build", "dist")
DEFAULT_LINE = 'DEFAULT_BACKEND = "fast"'


def tracked_files(root: Path) -> list:
    """The lab's files: `git ls-files` in a checkout, else a walk without caches, runs and .git."""
    if (root / ".git").exists():
        listing = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
        if listing.returncode == 0:
            return [f for f in listing.stdout.splitlines() if (root / f).is_file()]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info")]
        files += [(Path(folder) / n).relative_to(root).as_posix() for n in names if not n.endswith(".pyc")]
    return sorted(files)


def make(target: Path, chosen: list, root: Path = ROOT) -> int:
    if target.exists() and any(target.iterdir()):
        raise ExerciseError(f"{target} exists and is not empty; choose a new directory")
    by_file = {}
    for exercise in chosen:
        by_file.setdefault(exercise.path, []).append(exercise)
    copied = 0
    for rel in tracked_files(root):
        if rel in NOT_COPIED:
            continue
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        if rel in by_file or rel == "autodiff/backend.py":
            text = (root / rel).read_text(encoding="utf-8")
            for exercise in sorted(by_file.get(rel, []), key=lambda e: -e.begin):    # bottom up: lines stay valid
                text = blanked(text, exercise)
            if rel == "autodiff/backend.py":
                if text.count(DEFAULT_LINE) != 1:
                    raise ExerciseError(f"autodiff/backend.py: expected one line {DEFAULT_LINE!r}")
                text = text.replace(DEFAULT_LINE, 'DEFAULT_BACKEND = "reference"   # a student copy')
            destination.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(root / rel, destination)
        copied += 1
    print(f"wrote {copied} files to {target}: {len(chosen)} exercises blanked "
          f"({', '.join(sorted({e.chapter for e in chosen}, key=CHAPTER_ORDER.index))}); the reference backend is "
          f"the default there")
    print(f"next: cd {target} && pip install -e '.[test]' && python scripts/exercise.py check "
          f"{'--all' if len(chosen) > 1 else chosen[0].name}")
    return 0


def statuses(chosen: list, run: bool = True, run_blank: bool = False) -> dict:
    """{name: ('blank' | 'done' | 'failing' | 'written', first failure line)} in this copy. A blank
    exercise's tests run only with run_blank (`check`: their one-line failure names the exercise)."""
    status = {e.name: ("blank", "") for e in chosen if e.is_blank}
    to_run = [e for e in chosen if run_blank or not e.is_blank]
    if not run:
        return {**status, **{e.name: ("written", "") for e in to_run if not e.is_blank}}
    if not to_run:
        return status
    results = runner.run_check([e.name for e in to_run], [t for e in to_run for t in e.tests], ROOT)
    for exercise in to_run:
        mine = [(outcome, message) for nodeid, (outcome, message, names) in results.items() if exercise.name in names]
        failed = [message or outcome for outcome, message in mine if outcome not in ("passed", "skipped")]
        failed.sort(key=lambda message: f"{exercise.name}:" not in message)     # its own failure first
        state = "blank" if exercise.is_blank else "failing"
        if not mine:
            status[exercise.name] = (state, "no grading test ran")
        else:
            status[exercise.name] = (state, failed[0]) if failed else ("done", "")
    return status


def print_table(chosen: list, status: dict, width: int = 400) -> None:
    print(f"{'exercise':<28} {'chapter':<7} {'status':<8} {'where':<38} task / first failure")
    for e in chosen:
        state, message = status[e.name]
        text = message or e.task
        print(f"{e.name:<28} {e.chapter:<7} {state:<8} {e.where:<38} {text}"[:width])
    print()
    print(f"{'chapter':<8} {'done':>5} {'failing':>8} {'blank':>6} {'total':>6}")
    for chapter in CHAPTER_ORDER:
        mine = [status[e.name][0] for e in chosen if e.chapter == chapter]
        if mine:
            counts = (mine.count("done"), mine.count("failing"), mine.count("blank"), len(mine))
            print(f"{chapter:<8} {counts[0]:>5} {counts[1]:>8} {counts[2]:>6} {counts[3]:>6}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the exercises and their status in this copy")
    listing.add_argument("--chapter", choices=CHAPTER_ORDER)
    listing.add_argument("--no-run", action="store_true", help="do not run the tests (status 'written')")
    maker = commands.add_parser("make", help="write a student copy with exercises blanked")
    maker.add_argument("dir", type=Path)
    maker.add_argument("--chapter", choices=CHAPTER_ORDER)
    maker.add_argument("--only", nargs="+", default=[], metavar="NAME")
    for name in ("check", "prove"):
        command = commands.add_parser(name, help="run the grading tests" if name == "check" else
                                      "blanked and mutated solutions must fail, the reference pass")
        command.add_argument("names", nargs="*")
        command.add_argument("--chapter", choices=CHAPTER_ORDER)
        command.add_argument("--all", action="store_true")
    hint = commands.add_parser("hint", help="the hint and the docstring it points to")
    hint.add_argument("name")
    args = parser.parse_args(argv)

    exercises = registry()
    if args.command == "hint":
        exercise = select(exercises, [args.name])[0]
        print(f"{exercise.name} ({exercise.chapter}, {exercise.where})\ntask: {exercise.task}\nhint: {exercise.hint}")
        print("\n" + hinted_docstring(ROOT, exercise))
        return 0
    if args.command == "make":
        if args.chapter and args.only:
            raise ExerciseError("make: give --chapter or --only, not both")
        chosen = select(exercises, args.only, args.chapter)
        return make(args.dir.expanduser().resolve(), chosen)
    if args.command in ("check", "prove"):
        if not (args.names or args.chapter or args.all):
            raise ExerciseError(f"{args.command}: name exercises, or give --chapter C or --all")
    chosen = select(exercises, getattr(args, "names", []), args.chapter)
    if args.command == "prove":
        return prove(chosen)
    status = statuses(chosen, run=not getattr(args, "no_run", False), run_blank=args.command == "check")
    print_table(chosen, status)
    return 1 if args.command == "check" and any(s != "done" for s, _ in status.values()) else 0


def prove(chosen: list) -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from exercise_mutants import MUTANTS
    except ImportError:
        raise ExerciseError("prove: tests/exercise_mutants.py is missing (a student copy has no mutations)")
    start, caught, total, bad = time.perf_counter(), 0, 0, 0
    for exercise in chosen:
        result = runner.prove(exercise, MUTANTS.get(exercise.name, []))
        hits = sum(1 for *_, failure in result["mutants"] if failure)
        caught, total = caught + hits, total + len(result["mutants"])
        ok = result["blank"] and not result["reference"] and hits == len(result["mutants"]) > 0
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {exercise.name:<28} blank {'caught' if result['blank'] else 'MISSED'}, "
              f"reference {'passes' if not result['reference'] else 'FAILS: ' + result['reference'][0]}, "
              f"mutants caught {hits}/{len(result['mutants'])}")
        for old, new, failure in result["mutants"]:
            if not failure:
                print(f"     missed: {old!r} -> {new!r}")
    print(f"{len(chosen)} exercises, {caught}/{total} mutations caught, {bad} not proven, "
          f"{time.perf_counter() - start:.0f} s")
    return 1 if bad else 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExerciseError as error:
        print(f"exercise.py: {error}", file=sys.stderr)
        sys.exit(2)
