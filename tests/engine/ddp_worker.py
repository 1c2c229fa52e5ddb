"""Run by the DDP test under torchrun: train a few steps, write this rank's weight digest."""

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from defectscope.config import load_config
from defectscope.engine import run


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    cfg = load_config(config)
    result = run(cfg, evaluate_test=False)
    digest = hashlib.sha256()
    for value in result.model.state_dict().values():
        digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    rank = dist.get_rank() if dist.is_initialized() else 0
    record = {
        "rank": rank, "world_size": dist.get_world_size(), "digest": digest.hexdigest(), "steps": result.steps,
        # run() launched the process group; a distributed sampler splits 8 items over the ranks
        "initial_steps_per_rank": len(torch.utils.data.distributed.DistributedSampler(list(range(8)))),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
