"""Process-group set-up: one code path for a single process and for ``torchrun`` (DDP over NCCL or gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .config import TrainError

__all__ = ["DistEnv", "setup", "teardown"]


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sum of each scalar over processes, read back to the host in one transfer."""
        t = torch.stack(list(values.values()))
        if self.world > 1:
            dist.all_reduce(t)
        return dict(zip(values, t.tolist()))

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BN statistics drift apart between DDP forwards) to every rank."""
        if self.world > 1:
            for b in module.buffers():
                dist.broadcast(b, src=0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise TrainError(f"--device {name!r}: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), else run as a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank() if world > 1 else 0, world, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
