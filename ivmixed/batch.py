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
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .program import Program, parse
from .prompts import PromptItem, items_from_prompts, read_prompts

try:  # POSIX record locks; absent on Windows, where the O_APPEND single write alone keeps lines whole
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

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

log = logging.getLogger("ivmixed.batch")

RUN_FILE = "run.json"
INDEX_FILE = "index.jsonl"
PARTIAL_DIR = ".partial"
RUN_FILE_VERSION = 1
BATCH_FORMATS = ("mp4", "gif", "npy")
SEED_MODES = ("item", "shared")
#: sampling settings passed through to Backbone.generate (and recorded in run.json)
GENERATE_KEYS = ("steps", "frames", "height", "width", "guidance", "zigzag", "substeps", "negative_prompt", "preset")
#: backbone options that do not change a video's content (left out of the configuration check)
NEUTRAL_OPTIONS = ("device",)
#: longest program folder name; longer ones are cut and end in a hash (as long as an item id's stem may be)
MAX_PROGRAM_DIR_BYTES = 160
_PROGRAM_DIR_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+@=%-")


class ConfigMismatch(ValueError):
    """The output folder holds a run whose configuration differs from this one (or a prompt changed under an id)."""


# -- the plan ------------------------------------------------------------------------------------------


def derive_seed(seed: int, item_id: str, seed_index: int, mode: str = "item") -> int:
    """The seed of (item, seed index k): the same for every program, so programs are compared on the same noise.

    ``mode="item"``: ``int(sha256(f"{seed}/{item_id}/{k}").hexdigest()[:8], 16)``, in 0 .. 2³²−1 — each item gets
    its own noise, and an item keeps its seed when the prompt file is reordered or extended.
    ``mode="shared"``: ``seed + k`` — every item starts from the same K noises.
    """
    if mode == "shared":
        return seed + seed_index
    if mode != "item":
        raise ValueError(f"seed mode must be one of {', '.join(SEED_MODES)}, got {mode!r}")
    return int(hashlib.sha256(f"{seed}/{item_id}/{seed_index}".encode("utf-8")).hexdigest()[:8], 16)


def program_dir(program: Program | str) -> str:
    """The folder of a program's videos: its canonical text with ``:`` written ``_`` (other odd bytes ``~XX``).

    ``IV-IV`` -> ``IV-IV``; ``VV-VV@66.7%`` -> ``VV-VV@66.7%``; ``IV-IV:nf`` -> ``IV-IV_nf``. A name longer than
    :data:`MAX_PROGRAM_DIR_BYTES` (file names are limited to 255 bytes) is cut to its first bytes followed by
    ``~~`` and 16 hex digits of the SHA-256 of the full name: stable, and distinct for distinct programs. One-to-one,
    because canonical program text never contains ``_`` or ``~``, and an uncut name never contains ``~~``.
    """
    text = str(parse(program) if isinstance(program, str) else program)
    out = []
    for char in text:
        if char in _PROGRAM_DIR_SAFE:
            out.append(char)
        elif char == ":":
            out.append("_")
        else:
            out.extend(f"~{byte:02x}" for byte in char.encode("utf-8"))
    name = "".join(out)  # ASCII only
    if len(name) > MAX_PROGRAM_DIR_BYTES:
        digest = hashlib.sha256(name.encode("ascii")).hexdigest()[:16]
        name = f"{name[: MAX_PROGRAM_DIR_BYTES - len(digest) - 2]}~~{digest}"
    return name


@dataclass(frozen=True)
class Job:
    """One video of a batch: a prompt item through one program with one seed."""

    item: PromptItem
    program: Program
    seed_index: int
    seed: int
    group: int  # index of (item, seed index) in the plan; a shard holds whole groups
    folder: str  # program_dir(program)

    @property
    def name(self) -> str:
        """``<id>-<k>``: the file stem of the video inside its program folder."""
        return f"{self.item.stem}-{self.seed_index}"

    @property
    def key(self) -> str:
        """``<program folder>/<id>-<k>``: the video's identity in the index."""
        return f"{self.folder}/{self.name}"


def plan_jobs(
    items: Sequence[PromptItem],
    programs: Sequence[Program | str],
    *,
    seeds: int = 1,
    seed: int = 0,
    seed_mode: str = "item",
) -> list[Job]:
    """Every (item, seed index, program) in that order: the programs of one (item, seed) are neighbours."""
    programs = [parse(p) if isinstance(p, str) else p for p in programs]
    if not programs:
        raise ValueError("--programs: give at least one program")
    folders: dict[str, Program] = {}
    for program in programs:
        folder = program_dir(program)
        if folder in folders:
            raise ValueError(f"--programs: '{program}' is listed twice")
        folders[folder] = program
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1 (videos per item and program), got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {seed!r}")
    if seed_mode not in SEED_MODES:
        raise ValueError(f"--seed-mode must be one of {', '.join(SEED_MODES)}, got {seed_mode!r}")
    jobs = []
    for item_index, item in enumerate(items):
        for k in range(seeds):
            s = derive_seed(seed, item.id, k, seed_mode)
            group = item_index * seeds + k
            jobs.extend(Job(item, program, k, s, group, folder) for folder, program in folders.items())
    return jobs


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


def _barrier(shard: Shard) -> None:
    if shard.source == "accelerate":
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # the state made by detect_shard (PartialState is shared)


# -- the index -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover
        yield
        return
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def _pread(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows; appends still go to the end (O_APPEND)
    return os.read(fd, length)


class Index:
    """``DIR/index.jsonl``: one JSON object per finished video, appended by any number of processes.

    Each record has at least ``key`` (``<program folder>/<id>-<k>``) and ``file`` (the video, relative to
    ``DIR``). :meth:`append_once` reads what other processes appended and writes the line only if its key is not
    listed yet, all under the lock, so every key is listed once even when two runs work on the same folder.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}  # key -> last record seen
        self._offset = 0  # bytes of complete lines consumed so far
        self._bad = 0

    @property
    def keys(self) -> set[str]:
        return set(self.records)

    def refresh(self) -> list[dict[str, Any]]:
        """Read the lines appended since the last call; returns the new records."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            return self._consume(fd)
        finally:
            os.close(fd)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every key with its last record (malformed lines and an unfinished last line are skipped, and logged)."""
        self.refresh()
        return dict(self.records)

    def append_once(self, record: Mapping[str, Any]) -> bool:
        """Append ``record`` as one line unless its key is listed already; True when written.

        One ``os.write`` on an ``O_APPEND`` descriptor while holding an exclusive ``lockf`` lock; a torn last line
        (left by a crash mid-write) is closed with a newline first.
        """
        data = (json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with _locked(fd):
                self._consume(fd)
                if record["key"] in self.records:
                    return False
                size = os.fstat(fd).st_size
                if size and _pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                written = os.write(fd, data)
                while written < len(data):  # a short write: finish it while still holding the lock
                    written += os.write(fd, data[written:])
                self._consume(fd)
                return True
        finally:
            os.close(fd)

    def _consume(self, fd: int) -> list[dict[str, Any]]:
        size = os.fstat(fd).st_size
        if size <= self._offset:
            return []
        data = _pread(fd, size - self._offset, self._offset)
        end = data.rfind(b"\n") + 1  # complete lines only: a line being written (or torn) waits
        new = []
        for raw in data[:end].split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                key = record["key"]
                if not isinstance(key, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                self._bad += 1
                log.warning("%s: skipped a malformed line: %r", self.path, raw[:80])
                continue
            self.records[key] = record
            new.append(record)
        self._offset += end
        return new


def read_index(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The finished videos of a batch folder: key -> index record (the last one of each key)."""
    return Index(Path(out_dir) / INDEX_FILE).read()


# -- run.json ------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_config(
    *,
    backbone: str,
    backbone_options: Mapping[str, Any],
    generate: Mapping[str, Any],
    seed: int,
    seed_mode: str,
    format: str,
) -> dict[str, Any]:
    """What decides the content of a batch video, as plain JSON (compared on every run)."""
    settings = {}
    for key in GENERATE_KEYS:
        value = generate.get(key)
        if key == "zigzag" and value is not None and hasattr(value, "as_dict"):
            value = value.as_dict()
        if key == "substeps" and value in (None, "delta"):
            continue  # the default is not recorded, so that the run.json of earlier runs still matches
        settings[key] = value
    return _jsonable(
        {
            "backbone": backbone,
            "backbone_options": {k: v for k, v in backbone_options.items() if k not in NEUTRAL_OPTIONS},
            "generate": settings,
            "seed": seed,
            "seed_mode": seed_mode,
            "format": format,
        }
    )


def fingerprint(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new)):
            where = f"{prefix}.{key}" if prefix else key
            if key not in old:
                lines.append(f"  {where}: not set before, now {json.dumps(new[key])}")
            elif key not in new:
                lines.append(f"  {where}: was {json.dumps(old[key])}, now not set")
            else:
                lines.extend(_differences(old[key], new[key], where))
        return lines
    if old != new:
        return [f"  {prefix}: was {json.dumps(old)}, now {json.dumps(new)}"]
    return []


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored_run(out_dir: Path) -> dict[str, Any] | None:
    """The record of ``DIR/run.json``, None when there is none; ConfigMismatch when it cannot be read."""
    from .io import describe_os_error

    run_path = out_dir / RUN_FILE
    try:
        text = run_path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigMismatch(f"{run_path} cannot be read ({describe_os_error(exc)}); pass --new-run to move the old run aside") from None
    try:
        stored = json.loads(text)
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise ConfigMismatch(f"{run_path} cannot be read ({exc}); pass --new-run to move the old run aside") from None
    return stored


def _check_stored(out_dir: Path, stored: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse a run whose ``run.json`` has another format or configuration, listing the differences."""
    run_path = out_dir / RUN_FILE
    if stored.get("ivmixed_batch") != RUN_FILE_VERSION:
        raise ConfigMismatch(f"{run_path} was written by another ivmixed batch format ({stored.get('ivmixed_batch')!r}); use another --out")
    if stored.get("config") != config:
        diff = "\n".join(_differences(stored.get("config"), config))
        raise ConfigMismatch(
            f"{out_dir} holds a batch run with another configuration:\n{diff}\n"
            f"Run again with the same options to resume it, choose another --out, or pass --new-run to move the old "
            f"run aside into {out_dir}/replaced-<time>/ and start a new one."
        )


def _unknown_index(out_dir: Path) -> ConfigMismatch:
    return ConfigMismatch(
        f"{out_dir} has an {INDEX_FILE} but no {RUN_FILE}, so its configuration is unknown; "
        "choose another --out, or pass --new-run to move the old files aside"
    )


def _must_replace(out_dir: Path, config: Mapping[str, Any], new_run: bool) -> bool:
    """Check an existing run in ``out_dir`` against ``config`` without writing anything.

    Returns True when ``new_run`` is given and there is an old run of another configuration to move aside;
    raises ConfigMismatch when there is one and ``new_run`` is not given.
    """
    try:
        stored = _stored_run(out_dir)
    except ConfigMismatch:
        if new_run:
            return True
        raise
    if stored is None:
        if (out_dir / INDEX_FILE).exists():
            if new_run:
                return True
            raise _unknown_index(out_dir)
        return False
    try:
        _check_stored(out_dir, stored, config)
    except ConfigMismatch:
        if new_run:
            return True
        raise
    return False


def check_out_folder(out: str | os.PathLike) -> Path:
    """Refuse (ValueError, in words) an output folder that is a file or cannot be created or written; creates nothing.

    The nearest existing folder on the way is probed by creating and removing an empty file in it.
    """
    from .io import probe_folder

    out_dir = Path(out)
    if out_dir.is_dir():
        probe_folder(out_dir, what=f"--out {out_dir}")
        return out_dir
    if os.path.lexists(out_dir):
        what = "a broken symbolic link" if out_dir.is_symlink() and not out_dir.exists() else "a file"
        raise ValueError(f"--out {out_dir} is {what}; give a folder")
    existing = out_dir.parent if str(out_dir.parent) else Path(".")
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ValueError(f"--out {out_dir}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out_dir}: {existing} is a file, so the folder cannot be created there")
    probe_folder(existing, what=f"--out {out_dir}")
    return out_dir


#: a run.json temporary file older than this is left over by a process that died while writing it
_STALE_TEMP_S = 60.0


def _remove_stale_temps(out_dir: Path) -> None:
    """Remove ``DIR/.run.json.<pid>.tmp`` files that earlier processes left behind (a write takes milliseconds)."""
    now = time.time()
    for tmp in out_dir.glob(f".{RUN_FILE}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.lstat().st_mtime > _STALE_TEMP_S:
                tmp.unlink()


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` into a new file ``path`` (removed again when the write fails)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)


def _open_run(out_dir: Path, config: dict[str, Any], *, command: str | None) -> dict[str, Any]:
    """Create ``run.json`` if absent (the first of several racing processes wins) or check it against ``config``.

    A failure on the way (no space left, no permission) raises WriteFailed in words and leaves nothing behind:
    no temporary file, and no folder that this call created.
    """
    from .errors import WriteFailed
    from .io import describe_os_error, package_versions

    created = []  # the folders this call creates, deepest first
    folder = out_dir
    while not os.path.lexists(folder) and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    run_path = out_dir / RUN_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out_dir)
        if not run_path.exists():
            if (out_dir / INDEX_FILE).exists():
                raise _unknown_index(out_dir)
            record = {
                "ivmixed_batch": RUN_FILE_VERSION,
                "fingerprint": fingerprint(config),
                "config": config,
                "created": _utc_now(),
                "command": command,
                "versions": package_versions(),
            }
            tmp = out_dir / f".{RUN_FILE}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)  # left by an earlier process with this pid
            try:
                _write_new(tmp, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
                try:
                    os.link(tmp, run_path)  # atomic create-if-absent: exactly one racing process succeeds
                except FileExistsError:
                    pass
                except OSError:  # a file system without hard links
                    if not run_path.exists():
                        os.replace(tmp, run_path)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
    except BaseException as exc:
        what = f"cannot write {run_path}" if out_dir.is_dir() else f"cannot create the folder {out_dir}"
        if not run_path.exists():
            for folder in created:  # only while empty: another process may have started using it
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            raise WriteFailed(exc.errno, f"{what}: {describe_os_error(exc)}") from None
        raise
    stored = _stored_run(out_dir)
    if stored is None:  # moved aside by another process's --new-run in between
        raise ConfigMismatch(f"{run_path} disappeared while this run started; run the command again")
    _check_stored(out_dir, stored, config)
    return stored


def _move_old_run(out_dir: Path, folders: Iterable[str]) -> Path | None:
    """Move the files of the run in ``out_dir`` (run.json last) into ``out_dir/replaced-<time>/``."""
    run_path = out_dir / RUN_FILE
    index = Index(out_dir / INDEX_FILE)
    names = {PARTIAL_DIR, INDEX_FILE, *folders}
    names.update(record.get("file", "").split("/")[0] for record in index.read().values())
    present = sorted(n for n in names if n and (out_dir / n).exists())
    if not present and not run_path.exists():
        return None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = out_dir / f"replaced-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = out_dir / f"replaced-{stamp}-{suffix}"
    target.mkdir()
    for name in present:
        os.replace(out_dir / name, target / name)
    if run_path.exists():
        os.replace(run_path, target / RUN_FILE)
    return target


# -- running -------------------------------------------------------------------------------------------


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


def _as_items(prompts, prompt_column, id_column) -> list[PromptItem]:
    if isinstance(prompts, (str, os.PathLike)):
        return read_prompts(prompts, prompt_column=prompt_column, id_column=id_column)
    return items_from_prompts(list(prompts))


def _conflicts(index: Index, jobs: Sequence[Job]) -> list[str]:
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


def _refuse_conflicts(out_dir: Path, conflicts: list[str]) -> None:
    if conflicts:
        raise ConfigMismatch(
            f"{out_dir} already has videos for these ids, made from other prompt text:\n" + "\n".join(conflicts[:10])
            + (f"\n  … and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
            + "\nGive those items new ids, choose another --out, or pass --new-run."
        )


def _check_request(spec: Any, loaded: Any, items: Sequence[PromptItem], jobs: Sequence[Job], generate: Mapping[str, Any]) -> None:
    """Everything about the request that can be checked without loading a model (ValueError in words).

    Sizes, steps (against the backbone's timesteps where its spec declares them), the preset, every prompt
    (the toy world's vocabulary) and every program against the number of steps.
    """
    from .checks import check_request

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
        default_steps = spec.default_steps
    for program in dict.fromkeys(job.program for job in jobs):
        program.validate(default_steps if steps is None else steps)
    if spec is not None:
        for prompt in dict.fromkeys(item.prompt for item in items):
            spec.check_prompt(prompt)
        if generate.get("negative_prompt"):
            spec.check_prompt(generate["negative_prompt"])


def _loaded_spec(loaded: Any) -> Any:
    """The registered spec of a loaded backbone (for its prompt check), or None."""
    from .registry import UnknownBackbone, get_spec

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
class _Plan:
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
        return not self.replace and _finished(self.out_dir, self.index, job)


def _plan_run(
    prompts, out, *, programs, backbone, backbone_options, seeds, seed, seed_mode, format, new_run, shard, limit,
    prompt_column, id_column, generate,
) -> _Plan:
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
        from .registry import get_spec

        spec = get_spec(backbone)
        backbone_name, options, loaded = backbone, dict(backbone_options or {}), None
    else:
        if backbone_options:
            raise ValueError("backbone_options are for loading a backbone by name; this backbone is already loaded")
        spec = _loaded_spec(backbone)
        backbone_name, options, loaded = backbone.name, {k: v for k, v in backbone.describe().items() if k != "backbone"}, backbone
    _check_request(spec, loaded, items, jobs, generate)
    config = run_config(backbone=backbone_name, backbone_options=options, generate=generate, seed=seed, seed_mode=seed_mode, format=format)

    out_dir = check_out_folder(out)
    place = detect_shard(shard)
    if new_run and place.world_size > 1 and place.source != "accelerate":
        raise ValueError("--new-run needs one process (or a launch through accelerate/torchrun); run it once with one process first")
    replace = _must_replace(out_dir, config, new_run) if out_dir.is_dir() else False
    index = Index(out_dir / INDEX_FILE)
    if not replace:
        index.refresh()
        _refuse_conflicts(out_dir, _conflicts(index, jobs))
    return _Plan(out_dir, items, jobs, config, place, index, replace, backbone_name, options, loaded)


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
    plan = _plan_run(
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


def _finished(out_dir: Path, index: Index, job: Job) -> bool:
    record = index.records.get(job.key)
    return record is not None and (out_dir / record.get("file", "")).is_file()


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
        out: the batch folder (created if needed; see the module docstring for its layout).
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
    from . import interrupts

    started = time.perf_counter()
    plan = _plan_run(
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
        from .registry import load_backbone

        load_started = time.perf_counter()
        model = load_backbone(plan.backbone_name, **_device_for(place, plan.backbone_name, plan.options))
        result.load_seconds = time.perf_counter() - load_started
        _check_request(None, model, plan.items, jobs, generate)  # what only the loaded models know (their timesteps)
    interrupts.check()

    if new_run:
        if place.is_main and plan.replace:
            moved = _move_old_run(out_dir, {job.folder for job in jobs})
            if moved is not None:
                log.warning("moved the previous run aside into %s", moved)
        _barrier(place)
    _open_run(out_dir, config, command=command)
    index = Index(out_dir / INDEX_FILE)  # read again: another process may have written meanwhile
    index.refresh()
    _refuse_conflicts(out_dir, _conflicts(index, jobs))
    todo = [job for job in todo if not _finished(out_dir, index, job)]
    result.skipped = len(mine) - len(todo)
    missing = sum(1 for job in todo if job.key in index.records)
    if missing:
        log.warning("%d indexed video(s) of this share are missing on disk; generating them again", missing)
    log.info(
        "batch %s: process %d of %d (%s): %d of the plan's %d videos; %d finished, %d to do",
        out_dir, place.rank, place.world_size, place.source, len(mine), len(jobs), result.skipped, len(todo),
    )
    removed = _remove_dead_staging(out_dir)
    if removed:
        log.info("removed the unfinished files of %d interrupted process(es)", removed)

    plan_keys = {job.key for job in jobs}
    bar = None
    if progress and place.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(index.keys & plan_keys), unit="video", desc="batch", dynamic_ncols=True)
    try:
        if todo:
            with _Staging(out_dir) as staging:
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


def _device_for(place: Shard, backbone_name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """With several processes on a CUDA machine and no --device given: process i uses cuda:<local rank i>."""
    options = dict(options)
    if place.world_size == 1 or "device" in options:
        return options
    import inspect

    import torch

    from .registry import get_spec

    if not torch.cuda.is_available():
        return options
    try:
        accepted = inspect.signature(get_spec(backbone_name).resolve_factory()).parameters
    except (TypeError, ValueError):
        return options
    if "device" in accepted or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        options["device"] = f"cuda:{place.local_rank % torch.cuda.device_count()}"
    return options


def _run_jobs(model, todo, out_dir, index, staging, generate, config, place, result, bar, plan_keys, max_failures) -> None:
    """Make the videos of ``todo``, each under a claim, so that processes sharing the folder never make one twice.

    A video claimed by another live process is left to it and looked at again after the others: by then it is
    usually finished (counted in ``result.by_others``); if that process died meanwhile, this one makes it.
    """
    from . import interrupts

    run_id = fingerprint(config)
    state = {"in_a_row": 0}
    pending = list(todo)
    while pending:
        waiting = []
        for job in pending:
            interrupts.check()  # a Ctrl-C swallowed on the way (e.g. while ffmpeg started) stops the run here
            index.refresh()
            if _finished(out_dir, index, job):
                result.by_others += 1
                continue
            claim = staging.claim(job.key)
            if claim is None:
                waiting.append(job)
                continue
            try:
                index.refresh()  # finished by another process between the look above and the claim
                if _finished(out_dir, index, job):
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
    from . import interrupts
    from .io import write_manifest, write_video

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
            index.append_once({**index_record, "adopted": True, "finished": _utc_now()})
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
            index.append_once({**index_record, "seconds": round(time.perf_counter() - t0, 4), "finished": _utc_now()})
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


# -- staging -------------------------------------------------------------------------------------------

_LOCK_NAME = "lock"
_SETUP_PREFIX = ".new-"
_CLAIM_PREFIX = "claim-"
_SETUP_GRACE_S = 60.0  # a staging folder still being set up is left alone this long


class _Staging:
    """This process's staging folder ``DIR/.partial/<host>-<pid>-<random>/``, holding a lock while the process lives.

    The lock (``lockf`` on ``lock`` inside) is released by the kernel when the process dies, however it dies, so
    another process can tell a dead process's leftovers (lockable) from a live one's (locked).
    """

    def __init__(self, out_dir: Path) -> None:
        self.partial = out_dir / PARTIAL_DIR
        self._fd: int | None = None
        self.root: Path | None = None
        self._claims: dict[Path, int] = {}  # claim file -> the descriptor holding its lock

    def __enter__(self) -> "_Staging":
        from .errors import WriteFailed
        from .io import describe_os_error

        try:
            self._enter()
        except OSError as exc:  # a full disk, a folder made read-only
            self.__exit__(None, None, None)
            raise WriteFailed(exc.errno, f"cannot create the staging folder in {self.partial}: {describe_os_error(exc)}") from None
        return self

    def _enter(self) -> None:
        import socket
        import tempfile

        for attempt in range(5):  # another process may remove an empty .partial between our two calls
            try:
                self.partial.mkdir(parents=True, exist_ok=True)
                setup = Path(tempfile.mkdtemp(prefix=_SETUP_PREFIX, dir=self.partial))
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise
        self.root = setup  # removed by __exit__ if what follows fails
        self._fd = os.open(setup / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:40]
        root = self.partial / f"{host}-{os.getpid()}-{setup.name[len(_SETUP_PREFIX):]}"
        os.rename(setup, root)  # the lock stays with the open file
        self.root = root

    def claim(self, key: str) -> tuple[int, Path] | None:
        """Claim the video ``key`` for this process (a ``lockf`` lock on ``.partial/claim-<hash>``); None when another
        live process holds it. The kernel drops the lock of a process that dies, so its claims free themselves."""
        path = self.partial / f"{_CLAIM_PREFIX}{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}"
        if fcntl is None:  # pragma: no cover
            return (-1, path)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._claims[path] = fd
                return (fd, path)
            os.close(fd)  # the file was removed by its last holder in between: claim the new one

    def release(self, claim: tuple[int, Path]) -> None:
        """Give a claim up: remove its file (still holding the lock, so a waiting process sees it gone) and unlock."""
        fd, path = claim
        if self._claims.pop(path, None) is None and fd >= 0:
            return  # released already
        with contextlib.suppress(OSError):
            path.unlink()
        if fd >= 0:
            os.close(fd)

    def others(self) -> bool:
        """Whether another live process stages videos in this folder (is working on it now)."""
        for entry in self.partial.iterdir():
            if entry == self.root or not entry.is_dir() or entry.name.startswith(_SETUP_PREFIX):
                continue
            if _lock_held(entry / _LOCK_NAME):
                return True
        return False

    def fresh(self) -> Path:
        """An empty folder for the next video."""
        job = self.root / "job"
        shutil.rmtree(job, ignore_errors=True)
        job.mkdir()
        return job

    def __exit__(self, *exc) -> None:
        for path, fd in list(self._claims.items()):  # left by an interrupt in the middle of a release
            self.release((fd, path))
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self.partial.rmdir()  # only when no other process stages anything


def _remove_dead_staging(out_dir: Path) -> int:
    """Remove the staging folders of processes that died (their lock is free); returns how many."""
    partial = out_dir / PARTIAL_DIR
    if not partial.is_dir() or fcntl is None:
        return 0
    removed = 0
    for entry in list(partial.iterdir()):
        if entry.name.startswith(_CLAIM_PREFIX) and not entry.is_dir():
            _remove_free_claim(entry)
            continue
        if not entry.is_dir():
            continue
        if entry.name.startswith(_SETUP_PREFIX):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime < _SETUP_GRACE_S:
                    continue
        try:
            fd = os.open(entry / _LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while the owner lives
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    with contextlib.suppress(OSError):
        partial.rmdir()
    return removed


def _lock_held(path: Path) -> bool:
    """Whether another process holds the ``lockf`` lock on ``path`` (False when the file is gone)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock just taken
    return False


def _remove_free_claim(path: Path) -> None:
    """Remove the claim file of a process that died while making that video (its lock is free)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()  # while holding the lock; a process claiming it now sees another file and claims that
    except OSError:
        pass
    finally:
        os.close(fd)
