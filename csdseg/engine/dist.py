"""torch.distributed in one place: every stage runs alone or under ``torchrun`` unchanged."""
from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as torch_dist


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when not launched by torchrun."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) sets TORCHELASTIC_RUN_ID in every process it starts."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def joined() -> bool:
    """Whether this process is in a process group (then training wraps the model in DDP)."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; pick this rank's GPU.

    Under torchrun even one process joins (``--nproc_per_node=1``): it then runs the code path
    of N processes (NCCL or gloo, DDP, the teacher beside DDP), which is how one GPU checks it
    (bench/gpu_check.py). Outside torchrun a WORLD_SIZE > 1 (set by another launcher) joins too.
    """
    if torch_dist.is_initialized() or (int(os.environ.get("WORLD_SIZE", "1")) <= 1
                                       and not launched_by_torchrun()):
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch_dist.init_process_group(backend=backend)
    # left to the garbage collector at interpreter exit, the process group's destructor can
    # hang (seen with gloo on a loaded 2-core machine: both ranks done, stuck in GC); tear it
    # down explicitly instead
    atexit.register(_leave)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def _leave() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier() -> None:
    if world()[1] > 1:
        torch_dist.barrier()


def mean_across(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over ranks (for logged losses and metrics)."""
    if world()[1] > 1:
        value = value.clone()
        torch_dist.all_reduce(value)
        value /= world()[1]
    return value


def shard(items: list, rank: int | None = None, world_size: int | None = None) -> list:
    """This rank's share of a list (inference stages split the image list this way)."""
    r, w = world()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    return items[rank::world_size]
