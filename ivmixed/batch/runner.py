"""Running a batch: :func:`run_batch` loads the backbone once and makes the videos of this process's share, each under a claim."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..program import Program
from ..prompts import PromptItem

from .index import INDEX_FILE, Index, is_finished
from .prepare import plan_run, check_batch_request, prompt_conflicts, refuse_conflicts
from .shard import Shard, barrier, device_for, shard_jobs
from .staging import Staging, remove_dead_staging
from .store import fingerprint, move_old_run, open_run, utc_now

log = logging.getLogger("ivmixed.batch")


@dataclass
class BatchResult:
    """What one process did: counts over the plan and over its share, failures, and time."""

    out_dir: Path
    shard: Shard
    planned: int  # videos in the whole plan
    assigned: int  # videos in this process's share
    skipped: int = 0  # already finished when the run started
    generated: int = 0
    adopted: int = 0  # complete on disk but not yet in the index: indexed without generating again
    by_others: int = 0  # of this share, finished meanwhile by another process working on the same folder
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, error)
    seconds: float = 0.0
    load_seconds: float = 0.0
    stopped_early: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped_early

    @property
    def videos_per_second(self) -> float:
        busy = self.seconds - self.load_seconds
        return self.generated / busy if busy > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "rank": self.shard.rank,
            "world_size": self.shard.world_size,
            "planned": self.planned,
            "assigned": self.assigned,
            "skipped": self.skipped,
            "generated": self.generated,
            "adopted": self.adopted,
            "by_other_processes": self.by_others,
            "failed": [{"key": k, "error": e} for k, e in self.failed],
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "videos_per_second": round(self.videos_per_second, 3),
            "ok": self.ok,
        }


def run_batch(
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
    limit: int | None = None,
    prompt_column: str | None = None,
    id_column: str | None = None,
    progress: bool = True,
    max_consecutive_failures: int = 10,
    command: str | None = None,
    **generate: Any,
) -> BatchResult:
    """Generate every (item, program, seed) video of ``prompts`` into ``out`` that is not finished yet.

    Args:
        prompts: a prompt file (.txt, .csv, .tsv, .jsonl; see :mod:`ivmixed.prompts`), a list of prompt strings
            (ids ``00001`` …) or a list of :class:`~ivmixed.prompts.PromptItem`.
        out: the batch folder (created if needed; see :mod:`ivmixed.batch` for its layout).
        programs: program texts or :class:`~ivmixed.program.Program` values; every item runs all of them.
        backbone: a registered backbone name (loaded once, after every check) or a loaded
            :class:`~ivmixed.backbones.base.Backbone` (notebooks).
        backbone_options: options for loading ``backbone`` by name (``model=``, ``dtype=`` …).
        seeds: videos per (item, program), K; seed index k = 0..K−1.
        seed, seed_mode: the seed rule, see :func:`derive_seed`.
        format: ``mp4``, ``gif`` or ``npy`` (float frames, exact).
        new_run: move an existing run with another configuration aside instead of refusing.
        shard: ``(rank, world_size)`` to override the detected process placement (see :func:`detect_shard`).
        limit: only the first ``limit`` prompt items.
        prompt_column, id_column: columns of a CSV/TSV/JSONL prompt file.
        progress: one tqdm bar over the whole plan (shown by process 0; it counts the other processes' videos too).
        max_consecutive_failures: stop this process after that many failed videos in a row (a full disk …).
        command: the command line, recorded in run.json.
        **generate: sampling settings for :meth:`Backbone.generate`: ``steps``, ``frames``, ``height``, ``width``,
            ``guidance``, ``zigzag``, ``negative_prompt``, ``preset``.

    Returns:
        a :class:`BatchResult` for this process. Failed videos are listed there and stay unfinished.

    Raises:
        PromptFileError, ValueError, ConfigMismatch: before anything loads or is written.
        WriteFailed: ``run.json`` cannot be written (nothing is left behind).
        KeyboardInterrupt: after the clean-up (this process's staging folder removed, its claims released).
    """
    from .. import interrupts

    started = time.perf_counter()
    plan = plan_run(
        prompts, out, programs=programs, backbone=backbone, backbone_options=backbone_options, seeds=seeds, seed=seed,
        seed_mode=seed_mode, format=format, new_run=new_run, shard=shard, limit=limit, prompt_column=prompt_column,
        id_column=id_column, generate=generate,
    )
    out_dir, jobs, place, index, config = plan.out_dir, plan.jobs, plan.place, plan.index, plan.config
    mine = shard_jobs(jobs, place.rank, place.world_size)
    result = BatchResult(out_dir=out_dir, shard=place, planned=len(jobs), assigned=len(mine))
    todo = [job for job in mine if not plan.finished(job)]

    # the models load before anything is written: a run that fails to load leaves no trace
    model = plan.loaded
    if todo and model is None:
        from ..registry import load_backbone

        load_started = time.perf_counter()
        model = load_backbone(plan.backbone_name, **device_for(place, plan.backbone_name, plan.options))
        result.load_seconds = time.perf_counter() - load_started
        check_batch_request(None, model, plan.items, jobs, generate)  # what only the loaded models know (their timesteps)
    interrupts.check()

    if new_run:
        if place.is_main and plan.replace:
            moved = move_old_run(out_dir, {job.folder for job in jobs})
            if moved is not None:
                log.warning("moved the previous run aside into %s", moved)
        barrier(place)
    open_run(out_dir, config, command=command)
    index = Index(out_dir / INDEX_FILE)  # read again: another process may have written meanwhile
    index.refresh()
    refuse_conflicts(out_dir, prompt_conflicts(index, jobs))
    todo = [job for job in todo if not is_finished(out_dir, index, job)]
    result.skipped = len(mine) - len(todo)
    missing = sum(1 for job in todo if job.key in index.records)
    if missing:
        log.warning("%d indexed video(s) of this share are missing on disk; generating them again", missing)
    log.info(
        "batch %s: process %d of %d (%s): %d of the plan's %d videos; %d finished, %d to do",
        out_dir, place.rank, place.world_size, place.source, len(mine), len(jobs), result.skipped, len(todo),
    )
    removed = remove_dead_staging(out_dir)
    if removed:
        log.info("removed the unfinished files of %d interrupted process(es)", removed)

    plan_keys = {job.key for job in jobs}
    bar = None
    if progress and place.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(index.keys & plan_keys), unit="video", desc="batch", dynamic_ncols=True)
    try:
        if todo:
            with Staging(out_dir) as staging:
                if staging.others():
                    log.info("another process is working on %s: videos are shared out as they are claimed", out_dir)
                _run_jobs(model, todo, out_dir, index, staging, generate, config, place, result, bar, plan_keys, max_consecutive_failures)
    finally:
        if bar is not None:
            with contextlib.suppress(Exception):
                index.refresh()
                bar.update(max(0, len(index.keys & plan_keys) - bar.n))
            bar.close()
    result.seconds = time.perf_counter() - started
    return result


def _run_jobs(model, todo, out_dir, index, staging, generate, config, place, result, bar, plan_keys, max_failures) -> None:
    """Make the videos of ``todo``, each under a claim, so that processes sharing the folder never make one twice.

    A video claimed by another live process is left to it and looked at again after the others: by then it is
    usually finished (counted in ``result.by_others``); if that process died meanwhile, this one makes it.
    """
    from .. import interrupts

    run_id = fingerprint(config)
    state = {"in_a_row": 0}
    pending = list(todo)
    while pending:
        waiting = []
        for job in pending:
            interrupts.check()  # a Ctrl-C swallowed on the way (e.g. while ffmpeg started) stops the run here
            index.refresh()
            if is_finished(out_dir, index, job):
                result.by_others += 1
                continue
            claim = staging.claim(job.key)
            if claim is None:
                waiting.append(job)
                continue
            try:
                index.refresh()  # finished by another process between the look above and the claim
                if is_finished(out_dir, index, job):
                    result.by_others += 1
                    continue
                if not _make_one(model, job, out_dir, index, staging, generate, config, place, result, run_id, state, max_failures):
                    return
            finally:
                staging.release(claim)
            if bar is not None:
                index.refresh()  # count the other processes' videos too
                done = len(index.keys & plan_keys)
                if done > bar.n:
                    bar.update(done - bar.n)
        if waiting and len(waiting) == len(pending):
            time.sleep(0.05)  # every one left is being made by another process right now
        pending = waiting


def _make_one(model, job, out_dir, index, staging, generate, config, place, result, run_id, state, max_failures) -> bool:
    """Generate (or adopt) one video and index it; False when the process should stop (too many failures in a row)."""
    from .. import interrupts
    from ..io import write_manifest, write_video

    video_path = out_dir / job.folder / f"{job.name}.{config['format']}"
    manifest_file = video_path.with_name(video_path.name + ".json")
    batch_record = {
        "key": job.key,
        "run": run_id,
        "item_id": job.item.id,
        "prompt_source": f"{job.item.source}:{job.item.line}",
        "prompt_sha": job.item.prompt_sha,
        "seed_index": job.seed_index,
    }
    index_record = {
        "key": job.key,
        "file": f"{job.folder}/{video_path.name}",
        "item": job.item.id,
        "program": str(job.program),
        "seed_index": job.seed_index,
        "seed": job.seed,
        "prompt_sha": job.item.prompt_sha,
        "rank": place.rank,
    }
    try:
        if _adoptable(video_path, manifest_file, batch_record):
            index.append_once({**index_record, "adopted": True, "finished": utc_now()})
            result.adopted += 1
        else:
            t0 = time.perf_counter()
            video = model.generate(job.item.prompt, program=job.program, seed=job.seed, progress=False, **generate)
            staged = staging.fresh() / video_path.name
            write_video(video.frames[0], staged, fps=video.fps)
            record = video.with_extra(batch=batch_record).manifest()
            record["output"] = index_record["file"]
            staged_manifest = write_manifest(record, staged)
            interrupts.check()  # stopped while the video was written: it stays unfinished
            video_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, video_path)  # the video first, then its manifest: a manifest means a whole video
            os.replace(staged_manifest, manifest_file)
            index.append_once({**index_record, "seconds": round(time.perf_counter() - t0, 4), "finished": utc_now()})
            result.generated += 1
        state["in_a_row"] = 0
    except Exception as exc:  # one failed video must not end a benchmark run; it stays unfinished
        interrupts.check()  # a failure caused by a stop (ffmpeg killed by the same Ctrl-C) is the stop
        state["in_a_row"] += 1
        message = f"{type(exc).__name__}: {exc}"
        result.failed.append((job.key, message))
        log.error("%s failed (%s); it stays unfinished and is retried on the next run", job.key, message)
        if max_failures and state["in_a_row"] >= max_failures:
            result.stopped_early = True
            log.error("stopping after %d failures in a row", state["in_a_row"])
            return False
    return True


def _adoptable(video_path: Path, manifest_file: Path, batch_record: Mapping[str, Any]) -> bool:
    """A video and manifest in place whose index line was never written (the process died in between)."""
    if not (video_path.is_file() and manifest_file.is_file()):
        return False
    try:
        stored = json.loads(manifest_file.read_text()).get("batch", {})
    except (OSError, ValueError, AttributeError):
        return False
    return all(stored.get(k) == batch_record[k] for k in ("key", "run", "prompt_sha", "seed_index"))
