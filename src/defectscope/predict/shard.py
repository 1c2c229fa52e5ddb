"""This process's share of the inputs under torchrun; one process is a share of one. torch only when distributed."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """This process's share of the inputs: every `world_size`-th one from `rank`."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def total(self, value: int) -> int:
        """Sum of `value` over ranks."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(tensor)
        return int(tensor.item())

    def close(self) -> None:
        """Leave the process group (after the last barrier)."""
        if self.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def start_shard() -> Shard:
    """Under torchrun (WORLD_SIZE > 1): join the process group over gloo, which needs no GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Shard(dist.get_rank(), dist.get_world_size())
