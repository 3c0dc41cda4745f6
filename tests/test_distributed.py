"""Data-parallel training (torchrun, DDP over gloo): every rank ends with the same weights."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "ddp_worker.py"


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_two_processes_hold_identical_weights_after_training(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER),
                        str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ranks = [(tmp_path / f"rank{i}.txt").read_text().split() for i in (0, 1)]
    (before0, after0, n0, world0), (before1, after1, n1, world1) = ranks
    assert world0 == world1 == "2"
    assert (n0, n1) == ("2", "2")  # each rank trained on its own half of the images
    assert before0 == before1 and after0 == after1  # identical weights at the end
    assert after0 != before0  # and they did train
