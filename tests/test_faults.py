"""Nothing lost, nothing hung (issue 27): every budget and size flag has a range, a bad flag or a
filesystem fault is one line and exit 2, a run folder belongs to one run, a sweep resumes every seed with
its own flags and its workers die with it, every command ends with one JSON line, and `--threads auto`
does not depend on the machine's load. CLI behaviour runs in subprocesses (exit code, the lines on stderr)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import train

pytestmark = pytest.mark.backend_independent     # the harness's behaviour, not the engine's

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")
EVALUATE = str(ROOT / "scripts" / "evaluate.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_PROGRESS": "1", "NUMPY_DL_LAB_THREADS": "1"}


def cli(*argv, script=TRAIN, timeout=60, prefix=()):
    """(exit code, stdout, stderr lines) of one command; a hang fails the test instead of stalling it."""
    done = subprocess.run([*prefix, sys.executable, script, *map(str, argv)], capture_output=True, text=True,
                          env=ENV, timeout=timeout, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr.strip().splitlines()


def in_process(argv, capsys, main=train.main):
    """The same in this process (faster): (exit code, stderr lines)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err.strip().splitlines()


def one_line_exit_2(code, err, *words):
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], err


# ==================================================================== 1. every budget has a range
@pytest.mark.parametrize("argv, flag", [(("reinforce", "--episodes", "-3"), "--episodes"),
                                        (("dqn", "--episodes", "-3"), "--episodes"),
                                        (("dqn", "--steps", "-5"), "--steps"),
                                        (("es", "--generations", "-1"), "--generations"),
                                        (("es", "--episodes", "-2", "--generations", "0"), "--episodes")])
def test_a_negative_budget_is_refused_before_anything_runs(argv, flag, tmp_path):
    code, _, err = cli(*argv, "--out", tmp_path / "r", timeout=30)
    one_line_exit_2(code, err, f"train.py {argv[0]}:", flag, ">= 1")
    assert not (tmp_path / "r").exists()


def test_every_number_flag_of_every_command_has_a_range():
    """Each int or float flag of every command refuses a value out of its range at parse time (only the
    LSTM's input-gate bias may be any finite number)."""
    parser = train.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == set(train.COMMANDS)
    free = {("seq-memory", "--input-bias")}
    for name, sub in commands.items():
        for action in sub._actions:
            flag = action.option_strings[-1] if action.option_strings else None
            if flag is None or action.type in (None, str) or action.choices or (name, flag) in free:
                continue
            for bad in ("-3", "nan"):
                with pytest.raises(SystemExit) as stop:
                    sub.parse_args([flag, bad])
                assert stop.value.code == 2, (name, flag, bad)


def test_argparse_errors_are_one_line(capsys):
    code, _, err = cli("vae", "--epochs", "x")
    one_line_exit_2(code, err, "train.py vae: --epochs must be an integer >= 1, got x")
    for argv in (("nosuch",), ("vae", "--no-such-flag"), ("dcgan", "--iterations")):
        one_line_exit_2(*in_process(argv, capsys), "train.py")
    import evaluate
    one_line_exit_2(*in_process([], capsys, evaluate.main), "evaluate.py")


# ==================================================================== 2. filesystem faults
def test_out_naming_a_file_or_a_path_below_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "below"):
        code, _, err = cli("reinforce", "--episodes", "2", "--out", out)
        one_line_exit_2(code, err, str(out))
    assert (tmp_path / "f").read_text() == "mine"


def _in_private_mount(mount: str, target: Path):
    """A command prefix that runs in a private mount namespace with `mount` applied to `target` (root only)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private read-only or full filesystem")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("unshare -m is not allowed here")
    return ["unshare", "-m", "sh", "-c", f"{mount} {target} && exec \"$@\"", "sh"]


def test_a_read_only_folder_is_refused_before_training(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    prefix = _in_private_mount(f"mount --bind {folder} {folder} && mount -o remount,ro,bind", folder)
    code, _, err = cli("vae", "--epochs", "50", "--limit", "100", "--hidden", "8", "--out", folder,
                       prefix=prefix, timeout=30)
    one_line_exit_2(code, err, str(folder))


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path):
    folder = tmp_path / "full"
    folder.mkdir()
    prefix = _in_private_mount("mount -t tmpfs -o size=48k tmpfs", folder)
    code, _, err = cli("vae", "--epochs", "1", "--limit", "100", "--hidden", "16", "--iwae-k", "2",
                       "--num-samples", "4", "--out", folder / "run", prefix=prefix, timeout=60)
    one_line_exit_2(code, err, "No space left", str(folder / "run"))


def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    import nets.checkpoint
    out = tmp_path / "r"
    assert train.main(["reinforce", "--episodes", "2", "--out", str(out)]) == 0
    before = (out / "checkpoint.npz").read_bytes()

    def disk_full(f, **arrays):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(nets.checkpoint.np, "savez", disk_full)
    assert train.main(["reinforce", "--resume", str(out), "--episodes", "4"]) == 2
    assert (out / "checkpoint.npz").read_bytes() == before
    assert sorted(p.name for p in out.iterdir() if ".tmp" in p.name) == []


def test_a_killed_write_leaves_no_tmp_file_behind(tmp_path):
    out = tmp_path / "r"
    assert train.main(["reinforce", "--episodes", "2", "--out", str(out)]) == 0
    (out / "checkpoint.npz.abc123.tmp").write_bytes(b"killed half way")
    assert train.main(["reinforce", "--resume", str(out), "--episodes", "3"]) == 0
    assert not (out / "checkpoint.npz.abc123.tmp").exists()


# ==================================================================== 3. one run per folder
def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    out = tmp_path / "r"
    first = subprocess.Popen([sys.executable, TRAIN, "reinforce", "--episodes", "100000", "--out", str(out)],
                             env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (out / "checkpoint.npz").exists() or (out / ".lock").exists():
                break
            time.sleep(0.05)
        for argv in (("reinforce", "--episodes", "3", "--out", out), ("reinforce", "--resume", out)):
            code, _, err = cli(*argv)
            one_line_exit_2(code, err, str(out))
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "r"
    out.mkdir()
    (out / ".lock").write_text(dead.stdout.strip())
    code, _, err = cli("reinforce", "--episodes", "2", "--out", out)
    assert code == 0 and any("stale" in line for line in err), err
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("finished", ["checkpoint.npz", "metrics.json"])
def test_a_finished_folder_is_never_overwritten(tmp_path, finished):
    out = tmp_path / "r"
    out.mkdir()
    (out / finished).write_text("the user's")
    code, _, err = cli("tabular", "--experiment", "random-walk", "--runs", "1", "--episodes", "2", "--out", out)
    one_line_exit_2(code, err, "--resume")
    assert (out / finished).read_text() == "the user's"


def test_default_folders_are_unique_within_a_second(tmp_path, monkeypatch):
    import datetime

    class SameSecond(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(datetime, "datetime", SameSecond)
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert train.main(["tabular", "--experiment", "random-walk", "--runs", "1", "--episodes", "2"]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_a_failed_start_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "deep" / "r"
    code, _, err = cli("char-lm", "--seq-len", "100000", "--steps", "1", "--out", out)
    one_line_exit_2(code, err, "train.py char-lm:", "--seq-len")
    assert not (tmp_path / "deep").exists()


# ==================================================================== 4. a sweep resumes with its own flags
def test_a_resumed_sweep_starts_its_unstarted_seeds_with_the_sweeps_flags(tmp_path, capsys):
    out = tmp_path / "s"
    assert train.main(["reinforce", "--seeds", "0-1", "--workers", "2", "--episodes", "4", "--out", str(out)]) == 0
    shutil.rmtree(out / "seed-1")                 # as if interrupted before seed 1 started
    assert train.main(["reinforce", "--seeds", "0-1", "--resume", str(out)]) == 0
    metrics = json.loads((out / "seed-1" / "metrics.json").read_text())
    assert metrics["config"]["episodes"] == 4
    one_line_exit_2(*in_process(["reinforce", "--seeds", "0-1", "--resume", out, "--episodes", "5"], capsys),
                    "--episodes 5 differs")


# ==================================================================== 5. workers die with their parent
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the workers")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_no_worker_outlives_the_sweep(sig, tmp_path):
    parent = subprocess.Popen([sys.executable, TRAIN, "reinforce", "--episodes", "100000", "--seeds", "0-1",
                               "--workers", "2", "--out", str(tmp_path / "s")], env=ENV, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        for _ in range(300):
            workers = _children(parent.pid)
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert len(workers) == 2
        seeds = [tmp_path / "s" / f"seed-{s}" for s in (0, 1)]
        for _ in range(600):                       # until both workers are training (their progress files)
            if all((d / "progress.txt").exists() for d in seeds):
                break
            time.sleep(0.05)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.time() + 20
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)]
        assert all((d / "checkpoint.npz").exists() for d in seeds)     # each saved on its way out
    finally:
        for pid in [parent.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        parent.wait()


# ==================================================================== 6. char-lm's --model is not the command
def test_a_bigram_sweep_summarises_and_messages_name_the_command(tmp_path, capsys):
    assert train.main(["char-lm", "--model", "bigram", "--steps", "5", "--seeds", "0-1", "--workers", "2",
                       "--out", str(tmp_path / "s")]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["statistics"]["test_nll_nats_per_char"]["n"] == 2
    capsys.readouterr()
    assert train.main(["char-lm", "--model", "lstm", "--seq-len", "100000", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("train.py char-lm: ")


# ==================================================================== 7. the smaller ones
@pytest.mark.parametrize("argv", [
    ("revnet", "--epochs", "1", "--width", "8", "--hidden", "8", "--depth", "1", "--memory-depths", "1", "2", "3",
     "--memory-batch", "4", "--batch-size", "500"),
    ("char-lm", "--model", "bigram", "--sample-chars", "20"),
    ("seq-memory", "--lengths", "2", "3", "4", "--models", "rnn", "--steps", "2", "--hidden", "4",
     "--test-size", "10", "--batch-size", "8"),
])
def test_every_command_ends_with_one_json_line(argv, tmp_path, capsys):
    assert train.main([*argv, "--out", str(tmp_path / "r")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["out"] == str(tmp_path / "r")


def test_tabular_writes_a_checkpoint(tmp_path):
    out = tmp_path / "t"
    assert train.main(["tabular", "--experiment", "random-walk", "--runs", "1", "--episodes", "2",
                       "--out", str(out)]) == 0
    import nets
    meta = nets.load_checkpoint(out / "checkpoint.npz")["meta"]
    assert meta["model"] == "tabular" and meta["config"]["experiment"] == "random-walk"


def test_a_diverging_run_prints_only_its_one_line(tmp_path):
    code, _, err = cli("vae", "--lr", "1e4", "--epochs", "2", "--limit", "200", "--hidden", "16",
                       "--out", tmp_path / "v")
    assert code == 3 and len(err) == 1 and "diverged" in err[0], err


def test_messages_say_what_is_wrong(tmp_path, capsys):
    one_line_exit_2(*in_process(["vae", "--resume", tmp_path / "nowhere"], capsys), "does not exist")
    (tmp_path / "checkpoint.npz").write_bytes(np.random.default_rng(0).bytes(200))
    code, err = in_process(["vae", "--resume", tmp_path], capsys)
    one_line_exit_2(code, err, "not an .npz file")
    assert "pickle" not in err[0]
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "vae"}))
    code, _, err = cli(tmp_path, script=EVALUATE)
    one_line_exit_2(code, err)
    assert "--resume" not in err[0]
    help_text = " ".join(cli("conv-vae", "--help")[1].split())
    cache = help_text[help_text.rindex("--cache-dir X"):]
    cache = cache[:cache.index(" --", 5)]
    assert cache.count("default") == 1, cache


def test_an_abort_without_a_checkpoint_does_not_promise_one(tmp_path, capsys, monkeypatch):
    import cli.tabular

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli.tabular.tabular_experiments, "run_experiment", interrupted)
    assert train.main(["tabular", "--experiment", "random-walk", "--out", str(tmp_path / "t")]) == 130
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "stays" not in err


# ==================================================================== 8. threads
def test_auto_threads_do_not_depend_on_the_load(monkeypatch):
    from nets import threads
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    assert not hasattr(threads, "busy_cores")             # "auto" used to subtract the busy cores
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert threads.choose_threads("auto") == 4
    monkeypatch.setenv(threads.ENV_VAR, "auto")
    assert threads.choose_threads() == 4                  # what `import nets` applies
