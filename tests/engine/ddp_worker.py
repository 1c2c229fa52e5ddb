"""Run by the DDP test under torchrun: train a few steps, write this rank's weight digest."""

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from defectscope.config import load_config
from defectscope.engine.fit import fit, make_fabric


def main() -> None:
    config, out = sys.argv[1], Path(sys.argv[2])
    cfg = load_config(config)
    fabric = make_fabric(cfg)
    result = fit(cfg, fabric=fabric)
    digest = hashlib.sha256()
    for value in result.model.state_dict().values():
        digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    rank = dist.get_rank() if dist.is_initialized() else 0
    record = {
        "rank": rank, "world_size": fabric.world_size, "digest": digest.hexdigest(), "steps": result.steps,
        "initial_steps_per_rank": len(fabric.setup_dataloaders(
            torch.utils.data.DataLoader(list(range(8)), batch_size=1))),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
