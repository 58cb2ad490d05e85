"""scripts/bench.py: its --json output is strict JSON with the fields the README's table is built from."""
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_bench_json_has_every_field_and_parses_strictly():
    command = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "vae", "--repeats", "1",
               "--threads", "1", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    (result,) = report["results"]
    assert result["workload"] == "vae" and result["repeats"] == 1 and result["gflop_per_step"] > 0
    assert result["median_ms"] > 0 and result["peak_rss_mb"] > 0 and result["matmul_gflops"] > 0
    assert result["threads"].endswith(":1")             # --threads reached the BLAS library
    assert report["freed_memory_kept"] is result["freed_memory_kept"] in (True, False)
    unknown = subprocess.run(command[:2] + ["nosuch"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown workload 'nosuch'" in unknown.stderr

