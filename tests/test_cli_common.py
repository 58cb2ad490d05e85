"""The training commands' shared machinery: Ctrl-C handling and atomic output files."""
import os
import signal

import numpy as np
import pytest

from cli.common import save_on_interrupt, update_step, write_metrics, write_samples


def test_ctrl_c_inside_an_update_waits_for_its_end_then_saves():
    events = []
    with pytest.raises(SystemExit) as stop:
        with save_on_interrupt(lambda: events.append("saved")):
            for step in range(3):
                with update_step():
                    events.append(f"start {step}")
                    if step == 1:
                        os.kill(os.getpid(), signal.SIGINT)     # Ctrl-C in the middle of update 1
                    events.append(f"end {step}")                # ... which still completes
    assert stop.value.code == 130
    assert events == ["start 0", "end 0", "start 1", "end 1", "saved"]


def test_ctrl_c_outside_an_update_stops_at_once():
    events = []
    with pytest.raises(SystemExit):
        with save_on_interrupt(lambda: events.append("saved")):
            os.kill(os.getpid(), signal.SIGINT)
            events.append("not reached")
    assert events == ["saved"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored


def test_outputs_are_written_atomically_and_readable(tmp_path):
    write_metrics(tmp_path, {"model": "x", "value": np.float32(1.5)})
    write_samples(tmp_path, np.zeros((2, 28, 28)), labels=[1, 2])
    assert sorted(os.listdir(tmp_path)) == ["metrics.json", "samples.npz"]      # no temp files left
    assert os.stat(tmp_path / "metrics.json").st_mode & 0o044                   # not owner-only
    with np.load(tmp_path / "samples.npz") as samples:
        assert samples["images"].dtype == np.float32 and samples["labels"].tolist() == [1, 2]
