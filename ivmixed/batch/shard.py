"""Sharding: this process's place among the processes of a run, its share of the plan, and its device."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .plan import Job

log = logging.getLogger("ivmixed.batch")


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of a run, and where that was read from."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single process"  # "accelerate", "environment", "given", "single process"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def shard_jobs(jobs: Sequence[Job], rank: int, world_size: int) -> list[Job]:
    """The jobs of process ``rank`` of ``world_size``: whole (item, seed) groups, group g to process g % world_size."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard {rank}/{world_size}: need 0 <= rank < world size")
    return [job for job in jobs if job.group % world_size == rank]


def detect_shard(shard: tuple[int, int] | Shard | None = None) -> Shard:
    """Rank and world size: ``shard`` if given, else accelerate's ``PartialState`` when launched by accelerate or
    torchrun, else the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` environment, else a single process."""
    if isinstance(shard, Shard):
        return shard
    if shard is not None:
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"--shard {rank}/{world}: need 0 <= I < N (processes are numbered from 0)")
        return Shard(rank, world, 0, "given")
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", env.get("LOCAL_PROCESS_RANK", "0")))
    except ValueError as exc:
        raise ValueError(f"bad RANK / WORLD_SIZE / LOCAL_RANK in the environment: {exc}") from None
    if world > 1 and env.get("MASTER_ADDR"):
        try:
            import torch
            from accelerate import PartialState

            # on a machine without CUDA, PartialState() alone would see one process; cpu=True gives the gloo group
            state = PartialState(cpu=not torch.cuda.is_available())
            if state.num_processes == world:
                return Shard(state.process_index, state.num_processes, state.local_process_index, "accelerate")
            log.warning("accelerate sees %d process(es) but WORLD_SIZE is %d; using the environment", state.num_processes, world)
        except ImportError:
            pass
    if world > 1:
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
        return Shard(rank, world, local, "environment")
    return Shard()


def barrier(shard: Shard) -> None:
    if shard.source == "accelerate":
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # the state made by detect_shard (PartialState is shared)


def device_for(place: Shard, backbone_name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """With several processes on a CUDA machine and no --device given: process i uses cuda:<local rank i>."""
    options = dict(options)
    if place.world_size == 1 or "device" in options:
        return options
    import inspect

    import torch

    from ..registry import get_spec

    if not torch.cuda.is_available():
        return options
    try:
        accepted = inspect.signature(get_spec(backbone_name).resolve_factory()).parameters
    except (TypeError, ValueError):
        return options
    if "device" in accepted or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        options["device"] = f"cuda:{place.local_rank % torch.cuda.device_count()}"
    return options
