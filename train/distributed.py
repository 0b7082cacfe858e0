"""Distributed state from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE).

`python run.py train ...` is world size 1 with no flag; `torchrun --nproc_per_node G run.py
train ...` is G processes. NCCL on CUDA, gloo on CPU. Metrics cross ranks as sums.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import torch
import torch.distributed as dist

# Imported before any process group exists, on purpose: its functions take `group=group.WORLD`
# as a default argument, evaluated at import. DistributedDataParallel imports it; imported
# after init_process_group, those defaults keep the default group alive, so
# destroy_process_group could not free it and gloo's worker threads ran on until the
# interpreter's exit (tests/test_train_ddp.py counts them). Tearing a group down during
# interpreter exit is the likely cause of a rare SIGABRT after a clean stop, seen once in
# the two-rank stop test ("terminate called without an active exception").
if dist.is_available():
    import torch.distributed.nn.functional  # noqa: F401


@dataclass(frozen=True)
class World:
    """Where this process stands: rank among world_size, and the device it computes on."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto") -> World:
    """Read torchrun's environment, pick the device, and join the process group.

    device: "auto" (CUDA when available), "cpu" or "cuda". With CUDA the device is set
    before init_process_group so NCCL binds the right GPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible; give torchrun --nproc_per_node at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return World(rank, local_rank, world_size, torch_device)


def cleanup_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[World]:
    """`with distributed() as world:` joins the group and leaves it on every exit path."""
    try:
        yield init_distributed(device)
    finally:
        cleanup_distributed()


def all_reduce(tensor: torch.Tensor, world: World, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ("sum" or "max") across ranks; a no-op for world size 1."""
    if world.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def reduce_sums(sums: Dict[str, float], world: World) -> Dict[str, float]:
    """Sum every value across ranks (float64), so ratios are taken of global sums."""
    if not sums or not world.is_distributed:
        return dict(sums)
    keys = sorted(sums)
    values = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64,
                          device=world.device)
    all_reduce(values, world)
    return dict(zip(keys, values.tolist()))


def any_rank(flags: List[bool], world: World) -> List[bool]:
    """For each flag: is it set on any rank? One collective for all flags."""
    values = torch.tensor([1.0 if f else 0.0 for f in flags], device=world.device)
    all_reduce(values, world, op="max")
    return [bool(v > 0) for v in values.tolist()]


def gather_objects(obj: Any, world: World) -> List[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not world.is_distributed:
        return [obj]
    gathered: List[Any] = [None] * world.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank."""
    if not world.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.is_distributed:
        dist.barrier()
