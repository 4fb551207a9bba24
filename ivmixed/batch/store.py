"""The batch folder and its ``run.json``: the output folder check, the configuration check, creating and replacing a run."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .index import INDEX_FILE, Index
from .plan import GENERATE_KEYS

RUN_FILE = "run.json"
PARTIAL_DIR = ".partial"
RUN_FILE_VERSION = 1
#: backbone options that do not change a video's content (left out of the configuration check)
NEUTRAL_OPTIONS = ("device",)


class ConfigMismatch(ValueError):
    """The output folder holds a run whose configuration differs from this one (or a prompt changed under an id)."""


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


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stored_run(out_dir: Path) -> dict[str, Any] | None:
    """The record of ``DIR/run.json``, None when there is none; ConfigMismatch when it cannot be read."""
    from ..io import describe_os_error

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


def check_stored(out_dir: Path, stored: Mapping[str, Any], config: Mapping[str, Any]) -> None:
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


def must_replace(out_dir: Path, config: Mapping[str, Any], new_run: bool) -> bool:
    """Check an existing run in ``out_dir`` against ``config`` without writing anything.

    Returns True when ``new_run`` is given and there is an old run of another configuration to move aside;
    raises ConfigMismatch when there is one and ``new_run`` is not given.
    """
    try:
        stored = stored_run(out_dir)
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
        check_stored(out_dir, stored, config)
    except ConfigMismatch:
        if new_run:
            return True
        raise
    return False


def check_out_folder(out: str | os.PathLike) -> Path:
    """Refuse (ValueError, in words) an output folder that is a file or cannot be created or written; creates nothing.

    The nearest existing folder on the way is probed by creating and removing an empty file in it.
    """
    from ..io import probe_folder, probe_nearest_folder

    out_dir = Path(out)
    if out_dir.is_dir():
        probe_folder(out_dir, what=f"--out {out_dir}")
        return out_dir
    if os.path.lexists(out_dir):
        what = "a broken symbolic link" if out_dir.is_symlink() and not out_dir.exists() else "a file"
        raise ValueError(f"--out {out_dir} is {what}; give a folder")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    probe_nearest_folder(parent, what=f"--out {out_dir}", not_a_folder="is a file, so the folder cannot be created there")
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


def open_run(out_dir: Path, config: dict[str, Any], *, command: str | None) -> dict[str, Any]:
    """Create ``run.json`` if absent (the first of several racing processes wins) or check it against ``config``.

    A failure on the way (no space left, no permission) raises WriteFailed in words and leaves nothing behind:
    no temporary file, and no folder that this call created.
    """
    from ..errors import WriteFailed
    from ..io import describe_os_error, package_versions

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
                "created": utc_now(),
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
    stored = stored_run(out_dir)
    if stored is None:  # moved aside by another process's --new-run in between
        raise ConfigMismatch(f"{run_path} disappeared while this run started; run the command again")
    check_stored(out_dir, stored, config)
    return stored


def move_old_run(out_dir: Path, folders: Iterable[str]) -> Path | None:
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
