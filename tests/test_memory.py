"""autodiff.fast.memory (loaded with the fast backend): with glibc, memory freed by one step is reused by the next without page faults;
NUMPY_DL_LAB_KEEP_MEMORY=0 leaves malloc alone; any other value is a clear error. Each case runs in
a fresh Python process (the setting is the process's)."""
import ctypes
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# Each "step" allocates and frees 3, 6, 9 and 12 MB arrays; prints the page faults of each step.
STEPS = """
import json, resource, numpy as np, autodiff
from autodiff.fast.memory import keep_freed_memory
def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for step in range(5):
    before = faults()
    arrays = [np.ones((3 << 20) // 4 * k, np.float32) for k in (1, 2, 3, 4)]
    del arrays
    counts.append(faults() - before)
print(json.dumps([keep_freed_memory(), counts]))
"""


def run(code: str, setting: str = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "NUMPY_DL_LAB_KEEP_MEMORY"}
    env["NUMPY_DL_LAB_BACKEND"] = "fast"                  # the setting belongs to the fast backend
    if setting is not None:
        env["NUMPY_DL_LAB_KEEP_MEMORY"] = setting
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(not glibc, reason="the setting is glibc's (Linux)")
def test_freed_memory_is_reused_without_page_faults():
    result = run(STEPS)
    kept, counts = json.loads(result.stdout)
    assert kept is True
    assert counts[0] > 500                      # the first step maps its memory ...
    assert max(counts[1:]) <= 20, counts        # ... the next ones reuse it (without: ~1,800 each)


@pytest.mark.skipif(not glibc, reason="the setting is glibc's (Linux)")
def test_opting_out_leaves_malloc_alone_and_empty_means_the_default():
    assert json.loads(run(STEPS, "0").stdout)[0] is False
    assert json.loads(run(STEPS, " ").stdout)[0] is True


def test_a_bad_setting_is_a_clear_error():
    result = run("import autodiff", "yes")
    assert result.returncode != 0
    assert "NUMPY_DL_LAB_KEEP_MEMORY: expected 0 (leave malloc as it is) or 1" in result.stderr
    assert "got 'yes'" in result.stderr
