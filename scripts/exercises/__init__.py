r"""The exercise registry, generated from the marked solutions in the source (nothing here is hand-kept).

An exercise is a region of the reference code between two marker lines; its first lines say what to do:

        ### BEGIN SOLUTION adam_bias_correction
        ### task: divide the moments by (1 - beta^t), their bias from starting at zero
        ### hint: Adam's docstring, the lines m_hat = ... and v_hat = ...
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        ### END SOLUTION

The tests that grade it carry `@pytest.mark.grades("adam_bias_correction", ...)` (tests/conftest.py).
A student copy keeps the marker, task and hint lines and replaces the body by one line,
`raise NotImplementedError("<name>: <task>")` (`blanked`).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("autodiff", "nets", "models", "rl")
SKIP_DIRS = ("autodiff/fast/",)                  # the fast backend is never an exercise
BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION (\w+)\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
META = re.compile(r"^\s*### (task|hint): (.+?)\s*$")
# file (or folder) -> chapter; the first match wins
CHAPTERS = (("autodiff/conv.py", "layers"), ("autodiff/norm.py", "layers"), ("autodiff/ops/pooling.py", "layers"),
            ("autodiff/gradcheck.py", "optim"), ("nets/optim.py", "optim"), ("nets/losses.py", "optim"),
            ("autodiff/", "engine"), ("nets/", "layers"), ("models/", "models"), ("rl/", "rl"))
CHAPTER_ORDER = ("engine", "layers", "optim", "models", "rl")


class ExerciseError(ValueError):
    """A malformed marker, or an unknown exercise or chapter (the message is one line)."""


@dataclass
class Exercise:
    name: str
    chapter: str
    path: str                      # relative to the root, with '/'
    begin: int                     # 1-based line of '### BEGIN SOLUTION'
    end: int                       # 1-based line of '### END SOLUTION'
    task: str
    hint: str
    indent: str
    body: list                     # the solution lines (without the marker, task and hint lines)
    tests: list = field(default_factory=list)      # 'tests/test_x.py::test_name' that grade it

    @property
    def where(self) -> str:
        return f"{self.path}:{self.begin}-{self.end}"

    @property
    def stub(self) -> str:
        return f'{self.indent}raise NotImplementedError("{self.name}: {self.task}")'

    @property
    def is_blank(self) -> bool:
        return [line.strip() for line in self.body if line.strip()] == [self.stub.strip()]


def chapter_of(path: str) -> str:
    return next(chapter for prefix, chapter in CHAPTERS if path.startswith(prefix))


def source_files(root: Path = ROOT) -> list:
    files = []
    for folder in SOURCE_DIRS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if not any(rel.startswith(skip) for skip in SKIP_DIRS) and "__pycache__" not in rel:
                files.append(rel)
    return files


def parse_file(rel: str, text: str) -> list:
    """The exercises marked in one file's text."""
    exercises, lines, current = [], text.splitlines(), None
    for number, line in enumerate(lines, 1):
        begin = BEGIN.match(line)
        if begin:
            if current:
                raise ExerciseError(f"{rel}:{number}: BEGIN SOLUTION inside {current['name']!r}")
            current = {"name": begin.group(2), "indent": begin.group(1), "begin": number, "meta": {}, "body": []}
        elif END.match(line):
            if not current:
                raise ExerciseError(f"{rel}:{number}: END SOLUTION without a BEGIN")
            meta = current["meta"]
            for key in ("task", "hint"):
                if key not in meta:
                    raise ExerciseError(f"{rel}:{current['begin']}: exercise {current['name']!r} has no "
                                        f"'### {key}:' line")
            exercises.append(Exercise(current["name"], chapter_of(rel), rel, current["begin"], number, meta["task"],
                                      meta["hint"], current["indent"], current["body"]))
            current = None
        elif current:
            meta = META.match(line)
            if meta and not current["body"]:
                if '"' in meta.group(2) or "\\" in meta.group(2):
                    raise ExerciseError(f"{rel}:{number}: a task or hint may not contain '\"' or '\\'")
                current["meta"][meta.group(1)] = meta.group(2)
            else:
                current["body"].append(line)
    if current:
        raise ExerciseError(f"{rel}:{current['begin']}: BEGIN SOLUTION {current['name']!r} has no END")
    return exercises


def grading_tests(root: Path = ROOT) -> dict:
    """{exercise name: ['tests/test_x.py::test_name', ...]} from the @pytest.mark.grades(...) decorators,
    also those inside a parametrize list (pytest.param(..., marks=pytest.mark.grades("name")))."""
    graders = {}
    for path in sorted((root / "tests").glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if "grades(" not in text:
            continue
        tree = ast.parse(text)
        tables = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            todo, seen = list(node.decorator_list), []
            while todo:
                part = todo.pop()
                for sub in ast.walk(part):
                    if isinstance(sub, ast.Name) and sub.id in tables and sub.id not in seen:
                        seen.append(sub.id)
                        todo.append(tables[sub.id])
                    if isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") == "grades":
                        for arg in sub.args:
                            graders.setdefault(arg.value, [])
                            if f"tests/{path.name}::{node.name}" not in graders[arg.value]:
                                graders[arg.value].append(f"tests/{path.name}::{node.name}")
    return graders


def registry(root: Path = ROOT) -> dict:
    """{name: Exercise} in chapter order, each with its grading tests."""
    found = []
    for rel in source_files(root):
        text = (root / rel).read_text(encoding="utf-8")
        if "### BEGIN SOLUTION" in text:
            found.extend(parse_file(rel, text))
    exercises = {}
    for exercise in sorted(found, key=lambda e: CHAPTER_ORDER.index(e.chapter)):
        if exercise.name in exercises:
            raise ExerciseError(f"exercise {exercise.name!r} is marked twice ({exercises[exercise.name].where} "
                                f"and {exercise.where})")
        exercises[exercise.name] = exercise
    graders = grading_tests(root)
    for name, tests in graders.items():
        if name not in exercises:
            raise ExerciseError(f"{tests[0]} grades {name!r}, which no marker defines")
        exercises[name].tests = tests
    return exercises


def select(exercises: dict, names=(), chapter: str | None = None) -> list:
    """The exercises named, or those of a chapter, or all; unknown names are a one-line error."""
    if chapter is not None:
        if chapter not in CHAPTER_ORDER:
            raise ExerciseError(f"unknown chapter {chapter!r}; expected one of {', '.join(CHAPTER_ORDER)}")
        return [e for e in exercises.values() if e.chapter == chapter]
    unknown = [n for n in names if n not in exercises]
    if unknown:
        raise ExerciseError(f"unknown exercise {unknown[0]!r}; `python scripts/exercise.py list` shows the "
                            f"{len(exercises)} names")
    return [exercises[n] for n in names] if names else list(exercises.values())


def replace_body(text: str, exercise: Exercise, body: list) -> str:
    """The file's text with this exercise's solution lines replaced by `body` (marker lines kept)."""
    lines = text.splitlines(keepends=True)
    first = exercise.begin + (len(lines[exercise.begin:exercise.end - 1]) - len(exercise.body))
    if [line.rstrip("\n") for line in lines[first:exercise.end - 1]] != exercise.body:
        raise ExerciseError(f"{exercise.where}: the file changed since the registry was read")
    return "".join(lines[:first] + [line + "\n" for line in body] + lines[exercise.end - 1:])


def blanked(text: str, exercise: Exercise) -> str:
    return replace_body(text, exercise, [exercise.stub])


def hinted_docstring(root: Path, exercise: Exercise) -> str:
    """The docstring the hint points to: "<name>'s docstring" (a function or class of the file, or
    Class.method), "the module docstring", else the innermost function or class around the exercise."""
    tree = ast.parse((root / exercise.path).read_text(encoding="utf-8"))
    named = re.search(r"([\w.]+)'s? docstring", exercise.hint)
    around = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            if named and node.name == named.group(1).split(".")[-1] and ast.get_docstring(node):
                return ast.get_docstring(node)
            if node.lineno <= exercise.begin <= node.end_lineno and ast.get_docstring(node):
                around.append((node.lineno, ast.get_docstring(node)))
    if "module docstring" in exercise.hint:
        return ast.get_docstring(tree) or ""
    return max(around)[1] if around else (ast.get_docstring(tree) or "")
