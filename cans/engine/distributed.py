"""Multi-process (DistributedDataParallel) helpers.

``torchrun --nproc_per_node N train.py ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; ``init_distributed()`` reads them and starts the process group (NCCL on
CUDA, gloo on CPU). Several machines work the same way (``torchrun --nnodes ...``).
Without those variables everything runs in one process and the helpers are no-ops.
"""
from __future__ import annotations

import datetime
import os
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(device_type: Optional[str] = None, timeout_s: float = 1800) -> torch.device:
    """Start the process group when launched by torchrun; return this process's device.

    ``device_type``: ``'cuda'`` or ``'cpu'``; default CUDA when available. On CUDA each
    process takes ``cuda:LOCAL_RANK``. ``timeout_s`` (``train.dist_timeout``): how long a
    collective call waits for the other processes before it fails.
    """
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if env_world_size() > 1 and not is_distributed():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return device


def cleanup_distributed() -> None:
    """Leave the process group, all ranks together: the barrier first, since PyTorch 2.4's gloo
    ``destroy_process_group`` can hang when one rank reaches it well before the other."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identity in one process)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ShardSampler(Sampler):
    """Indices ``rank, rank + world, ...``: each validation image on exactly one rank, none padded.

    (DistributedSampler pads the last round with repeats, which would count some images
    twice in the averaged metrics.)
    """

    def __init__(self, length: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        self.length = length
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


__all__ = ["ShardSampler", "all_reduce_sum", "barrier", "broadcast_object", "cleanup_distributed",
           "env_world_size", "get_rank", "get_world_size", "init_distributed", "is_distributed",
           "is_main_process"]
