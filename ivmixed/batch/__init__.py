"""Generation at scale: every (prompt item, program, seed) of a prompt file as one video, resumable and shardable.

The Python side of ``ivmixed batch``. One call of :func:`run_batch` plans the videos, takes this process's
share of them, loads the backbone once and generates what is not finished yet::

    from ivmixed.batch import run_batch
    from ivmixed.prompts import read_prompts

    items = read_prompts("Captions_ChronoMagic-Bench.csv", prompt_column="name", id_column="videoid")
    result = run_batch(items, "runs/chronomagic", programs=["origin", "IV-IV"], seeds=3, backbone="animatediff")

**Pairing.** All programs of one (item, seed index k) start from the same seed, so from the same initial
noise and the same R sub-step noise: the comparison between programs is paired. The seed is
:func:`derive_seed`: with ``seed_mode="item"`` (default) ``int(sha256(f"{seed}/{item_id}/{k}")[:8 hex], 16)`` —
independent noise for every item, stable when the prompt file is reordered or extended; with
``seed_mode="shared"`` it is ``seed + k`` for every item. A batch video equals
``backbone.generate(prompt, program=…, seed=<that seed>)`` with the same settings, bit for bit.

**Layout** (everything below ``DIR``)::

    run.json                       the configuration (backbone, options, sampling settings, seed rule, format)
    index.jsonl                    one JSON line per finished video, append-only
    <program>/<id>-<k>.<fmt>       the video (program folder: the canonical program text, ':' written '_',
                                   cut and ending in a hash beyond 160 bytes)
    <program>/<id>-<k>.<fmt>.json  its manifest (program, seed, settings, cost, timings, metrics, batch key)
    .partial/<host>-<pid>-<rand>/  a running process's staging folder (locked while the process lives)
    .partial/claim-<hash>          a video being made (locked by the process making it)

**Crash safety.** A video and its manifest are written in the process's staging folder, renamed into place
(video first, manifest second), and only then is the index line appended. So a video listed in the index is
complete. Each process holds a ``lockf`` lock on its staging folder; the kernel releases it when the process
dies, however it dies, so the next run removes exactly the staging folders of dead processes. A re-run skips
every video listed in the index whose file exists, adopts a finished video whose manifest is in place but
whose index line was never written, and generates the rest. A failure while generating or writing one video
leaves it unlisted (it is retried on the next run).

**The index under several processes.** Every line is written by one ``os.write`` on a file descriptor
opened with ``O_APPEND`` while holding an exclusive ``fcntl.lockf`` lock on the index (POSIX record locks
also work on NFS). Under the lock the writer first reads what others appended and skips its line if the key
is listed already, so every key is listed once even when two runs share a folder by mistake. Lines are short
(well under 4 KiB: the prompt text is in the manifest, not the index), so even without the lock the appends
of a local file system would not interleave. A torn last line (power loss) is ignored by readers and closed
with a newline by the next writer.

**Claims.** Before making a video a process takes an exclusive non-blocking ``lockf`` lock on
``.partial/claim-<sha256(key)>``, reads the index again, and drops the video if it is listed by now. A video
claimed by another live process is left to it and looked at again at the end; the holder removes the file
(still locked) when the video is indexed, and a process that took the lock on a file removed meanwhile
claims the new one instead. So two runs started on one folder without ``--shard`` make every video once.

**Stopping.** Under the command line's signal handlers (:mod:`ivmixed.interrupts`) the batch checks for a
recorded Ctrl-C or SIGTERM before putting a video in place and before the next one, so a first interrupt
swallowed by Python on the way (while ffmpeg's subprocess starts) still stops the run; the staging folder is
removed and the claims released on the way out.

**Sharding.** The videos of one (item, seed index) form a *group*; group g belongs to process
``g % world_size``. Every process computes the same plan from the same prompt file, so the shares are
disjoint and their union is the plan, with no communication. Rank and world size come from accelerate's
``PartialState`` when the process was started by ``accelerate launch`` or ``torchrun`` (``MASTER_ADDR`` and
``WORLD_SIZE`` > 1 in the environment), else from ``RANK``/``WORLD_SIZE``, or from an explicit ``shard=(i, n)``.

**Checks first.** Everything that can be checked without a model is checked before one loads, and the
models load before anything is written: a refused run leaves no folder and no ``run.json``.
:func:`batch_status` (``--dry-run``) makes the same checks.

**Configuration check.** ``run.json`` records what decides the content of a video: the backbone and its
options (the device excepted), the sampling settings, the seed rule and the file format. A run with
another configuration in the same ``DIR`` is refused with the differences listed, unless ``new_run=True``
moves the old run aside into ``DIR/replaced-<time>/``. The *plan* may grow between runs: more prompt items,
more programs, more seeds add videos to the same ``DIR``; a prompt whose text changed under an id that
already has videos is refused.

The package's modules, by topic: :mod:`~ivmixed.batch.plan` (jobs and seeds), :mod:`~ivmixed.batch.shard`
(processes and their shares), :mod:`~ivmixed.batch.index` (``index.jsonl``), :mod:`~ivmixed.batch.store`
(the folder and ``run.json``), :mod:`~ivmixed.batch.staging` (staging folders and claims),
:mod:`~ivmixed.batch.prepare` (the checks before anything loads, ``--dry-run``) and
:mod:`~ivmixed.batch.runner` (:func:`run_batch`).
"""

from __future__ import annotations

# names other modules import from ivmixed.batch (the public ones are listed in __all__)
from .index import INDEX_FILE, Index, read_index
from .plan import BATCH_FORMATS, GENERATE_KEYS, MAX_PROGRAM_DIR_BYTES, SEED_MODES, Job, derive_seed, plan_jobs, program_dir
from .prepare import batch_status
from .runner import BatchResult, run_batch
from .shard import Shard, detect_shard, shard_jobs
from .store import (
    NEUTRAL_OPTIONS,
    PARTIAL_DIR,
    RUN_FILE,
    RUN_FILE_VERSION,
    ConfigMismatch,
    check_out_folder,
    fingerprint,
    run_config,
)

__all__ = [
    "BATCH_FORMATS",
    "SEED_MODES",
    "BatchResult",
    "ConfigMismatch",
    "Index",
    "Job",
    "Shard",
    "derive_seed",
    "detect_shard",
    "plan_jobs",
    "program_dir",
    "read_index",
    "run_batch",
    "batch_status",
    "check_out_folder",
    "shard_jobs",
]
