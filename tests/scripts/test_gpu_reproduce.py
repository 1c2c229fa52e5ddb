"""scripts/gpu_reproduce.sh in its CPU smoke mode: one step per paper config on the demo tiles."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # three trainings and evaluations: minutes on 2 cores
def test_the_gpu_script_runs_every_paper_config_and_writes_a_summary(tmp_path):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_reproduce.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "summary.md").read_text().splitlines()
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["pvqae", "vitae", "fader"]
