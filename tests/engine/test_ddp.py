"""Two CPU processes under torchrun (gloo) train a few steps and end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.ddp
def test_two_ranks_stay_in_sync(tiny_config_file, tmp_path):
    config = tiny_config_file(model="vq_e", steps=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(WORKER), str(config), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert all(r["steps"] == 3 for r in ranks)
    assert ranks[0]["initial_steps_per_rank"] == 4  # the sampler split 8 items over 2 ranks
    assert ranks[0]["digest"] == ranks[1]["digest"]
