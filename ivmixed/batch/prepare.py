"""A batch run checked from end to end before anything loads or is written, and :func:`batch_status` (``--dry-run``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..program import Program
from ..prompts import PromptItem, items_from_prompts, read_prompts

from .index import INDEX_FILE, Index, is_finished
from .plan import BATCH_FORMATS, GENERATE_KEYS, Job, plan_jobs
from .shard import Shard, detect_shard
from .store import ConfigMismatch, check_out_folder, must_replace, run_config


def _as_items(prompts, prompt_column, id_column) -> list[PromptItem]:
    if isinstance(prompts, (str, os.PathLike)):
        return read_prompts(prompts, prompt_column=prompt_column, id_column=id_column)
    return items_from_prompts(list(prompts))


def prompt_conflicts(index: Index, jobs: Sequence[Job]) -> list[str]:
    """Ids whose finished videos were made from another prompt text, as message lines."""
    conflicts, seen = [], set()
    for job in jobs:
        record = index.records.get(job.key)
        if record is None or job.item.id in seen:
            continue
        if record.get("prompt_sha") not in (None, job.item.prompt_sha):
            seen.add(job.item.id)
            conflicts.append(f"  id '{job.item.id}' ({job.item.source}:{job.item.line}): its videos were made from another prompt")
    return conflicts


def refuse_conflicts(out_dir: Path, conflicts: list[str]) -> None:
    if conflicts:
        raise ConfigMismatch(
            f"{out_dir} already has videos for these ids, made from other prompt text:\n" + "\n".join(conflicts[:10])
            + (f"\n  … and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
            + "\nGive those items new ids, choose another --out, or pass --new-run."
        )


def check_batch_request(
    spec: Any, loaded: Any, items: Sequence[PromptItem], jobs: Sequence[Job], generate: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> None:
    """Everything about the request that can be checked without loading a model (ValueError in words).

    Sizes, steps (against the backbone's timesteps where its spec declares them), the preset, every prompt
    (the toy world's vocabulary) and every program against the number of steps.
    """
    from ..checks import check_request

    steps = generate.get("steps")
    if loaded is not None:
        defaults = loaded.defaults
        check_request(guidance=generate.get("guidance"))
        loaded.check_request(
            frames=defaults.frames if generate.get("frames") is None else generate["frames"],
            height=defaults.height if generate.get("height") is None else generate["height"],
            width=defaults.width if generate.get("width") is None else generate["width"],
            steps=defaults.steps if steps is None else steps,
        )
        preset = generate.get("preset")
        if preset is not None and preset not in defaults.presets:
            raise ValueError(f"--preset {preset!r}: backbone '{loaded.name}' has no such preset; its presets: {', '.join(sorted(defaults.presets)) or 'none'}")
        default_steps = defaults.steps
    else:
        check_request(
            frames=generate.get("frames"), height=generate.get("height"), width=generate.get("width"), steps=steps,
            guidance=generate.get("guidance"), size_multiple=spec.size_multiple, backbone=spec.name,
        )
        spec.check_steps(steps)
        spec.check_preset(generate.get("preset"))
        default_steps = spec.default_steps_for(spec.check_options(dict(options or {})))
    for program in dict.fromkeys(job.program for job in jobs):
        program.validate(default_steps if steps is None else steps)
    if spec is not None:
        for prompt in dict.fromkeys(item.prompt for item in items):
            spec.check_prompt(prompt)
        if generate.get("negative_prompt"):
            spec.check_prompt(generate["negative_prompt"])


def _loaded_spec(loaded: Any) -> Any:
    """The registered spec of a loaded backbone (for its prompt check), or None."""
    from ..registry import UnknownBackbone, get_spec

    try:
        spec = get_spec(loaded.name)
    except (UnknownBackbone, ValueError):
        return None
    factory = spec.factory
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        same = type(loaded).__module__ == module and type(loaded).__qualname__ == attr
    else:
        same = factory is type(loaded)
    return spec if same else None


@dataclass
class Plan:
    """A batch run checked from end to end, with nothing loaded and nothing written."""

    out_dir: Path
    items: list[PromptItem]
    jobs: list[Job]
    config: dict[str, Any]
    place: Shard
    index: Index
    replace: bool  # --new-run with an old run of another configuration in out_dir
    backbone_name: str
    options: dict[str, Any]
    loaded: Any

    def finished(self, job: Job) -> bool:
        return not self.replace and is_finished(self.out_dir, self.index, job)


def plan_run(
    prompts, out, *, programs, backbone, backbone_options, seeds, seed, seed_mode, format, new_run, shard, limit,
    prompt_column, id_column, generate,
) -> Plan:
    """Every check of a batch run that needs no model, in the order the user can act on them; writes nothing."""
    unknown = sorted(set(generate) - set(GENERATE_KEYS))
    if unknown:
        raise TypeError(f"run_batch() got unexpected keyword argument(s) {', '.join(unknown)}; sampling settings are {', '.join(GENERATE_KEYS)}")
    if format not in BATCH_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(BATCH_FORMATS)}, got {format!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    items = _as_items(prompts, prompt_column, id_column)[:limit]
    jobs = plan_jobs(items, programs, seeds=seeds, seed=seed, seed_mode=seed_mode)

    if isinstance(backbone, str):
        from ..registry import get_spec

        spec = get_spec(backbone)
        backbone_name, options, loaded = backbone, dict(backbone_options or {}), None
    else:
        if backbone_options:
            raise ValueError("backbone_options are for loading a backbone by name; this backbone is already loaded")
        spec = _loaded_spec(backbone)
        backbone_name, options, loaded = backbone.name, {k: v for k, v in backbone.describe().items() if k != "backbone"}, backbone
    check_batch_request(spec, loaded, items, jobs, generate, options)
    config = run_config(backbone=backbone_name, backbone_options=options, generate=generate, seed=seed, seed_mode=seed_mode, format=format)

    out_dir = check_out_folder(out)
    place = detect_shard(shard)
    if new_run and place.world_size > 1 and place.source != "accelerate":
        raise ValueError("--new-run needs one process (or a launch through accelerate/torchrun); run it once with one process first")
    replace = must_replace(out_dir, config, new_run) if out_dir.is_dir() else False
    index = Index(out_dir / INDEX_FILE)
    if not replace:
        index.refresh()
        refuse_conflicts(out_dir, prompt_conflicts(index, jobs))
    return Plan(out_dir, items, jobs, config, place, index, replace, backbone_name, options, loaded)


def batch_status(
    prompts: str | os.PathLike | Sequence[str] | Sequence[PromptItem],
    out: str | os.PathLike,
    *,
    programs: Sequence[Program | str],
    backbone: Any = "toy",
    backbone_options: Mapping[str, Any] | None = None,
    seeds: int = 1,
    seed: int = 0,
    seed_mode: str = "item",
    format: str = "mp4",
    new_run: bool = False,
    shard: tuple[int, int] | Shard | None = None,
    world_size: int | None = None,
    prompt_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    **generate: Any,
) -> dict[str, Any]:
    """How far a batch is, without loading or writing anything: planned, finished, to do, and to do per process.

    Takes the arguments of :func:`run_batch` and makes the same checks (the request, the output folder, the
    configuration recorded in ``run.json``, prompts changed under an id), raising the same errors: a run that
    :func:`run_batch` would refuse is refused here too. ``world_size`` overrides the detected number of processes.
    """
    plan = plan_run(
        prompts, out, programs=programs, backbone=backbone, backbone_options=backbone_options, seeds=seeds, seed=seed,
        seed_mode=seed_mode, format=format, new_run=new_run, shard=shard, limit=limit, prompt_column=prompt_column,
        id_column=id_column, generate=generate,
    )
    world = plan.place.world_size if world_size is None else world_size
    done = {job.key for job in plan.jobs if plan.finished(job)}
    todo = [job for job in plan.jobs if job.key not in done]
    return {
        "out_dir": str(plan.out_dir),
        "items": len(plan.items),
        "programs": [str(p) for p in dict.fromkeys(j.program for j in plan.jobs)],
        "seeds": seeds,
        "planned": len(plan.jobs),
        "finished": len(done),
        "to_do": len(todo),
        "to_do_per_process": [sum(1 for j in todo if j.group % world == r) for r in range(world)],
        "replaces_old_run": plan.replace,
    }
