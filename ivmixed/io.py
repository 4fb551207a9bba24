"""Writing results: videos (.mp4, .gif, .npy) and JSON manifests, each written to a temporary name and renamed into place.

A reader never sees a half-written file: either the previous content or the complete new one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import WriteFailed

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "VIDEO_SUFFIXES",
    "OutputExists",
    "WriteFailed",
    "check_output_path",
    "probe_folder",
    "probe_nearest_folder",
    "write_video",
    "write_manifest",
    "save_with_manifest",
    "manifest_path",
    "package_versions",
    "atomic_path",
]

VIDEO_SUFFIXES = (".mp4", ".gif", ".npy")
#: videos smaller than this on their short side are upscaled (nearest) by an integer factor when written as .gif/.mp4
MIN_DISPLAY_SIZE = 128


class OutputExists(ValueError):
    """The output file (or its manifest) exists already and replacing it was not asked for."""


def check_output_path(
    path: str | os.PathLike,
    *,
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES,
    overwrite: bool = True,
    manifest: bool = True,
    what: str = "--out",
) -> Path:
    """Refuse an output path that cannot be written, before any work starts.

    The folder is probed by creating and removing an empty file in it (the nearest existing folder when it is
    still to be made), because access checks say yes to root even on ``/proc`` or ``/sys``. With
    ``overwrite=False`` an existing file, symbolic link or manifest (``manifest=True``) at the path is refused
    with :class:`OutputExists`.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name ending in {', '.join(suffixes)}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} {path}: unknown file type '{path.suffix}'; use one of {', '.join(suffixes)}")
    probe_nearest_folder(path.parent if str(path.parent) else Path("."), what=f"{what} {path}")
    if not overwrite:
        taken = [p for p in ((path, manifest_path(path)) if manifest else (path,)) if os.path.lexists(p)]
        if taken:
            kind = "a symbolic link" if path.is_symlink() else "a file"
            listed = " and ".join(str(p) for p in taken)
            raise OutputExists(
                f"{what} {path}: {listed} exist{'s' if len(taken) == 1 else ''} already"
                + (f" ({path} is {kind})" if os.path.lexists(path) else "")
                + "; pass --overwrite to replace it, or choose another name"
            )
    return path


def probe_folder(folder: str | os.PathLike, *, what: str = "--out") -> None:
    """Create and remove an empty file in ``folder``; a folder that cannot be written raises ValueError in words."""
    folder = Path(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".ivmixed-probe-", dir=folder)
    except OSError as exc:
        raise ValueError(f"{what}: cannot create files in {folder} ({describe_os_error(exc)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def probe_nearest_folder(folder: str | os.PathLike, *, what: str = "--out", not_a_folder: str = "is not a folder") -> Path:
    """Probe (:func:`probe_folder`) the nearest existing folder at or above ``folder``, which may be still to be made.

    A broken symbolic link on the way, or a file where a folder would be (``what: FILE <not_a_folder>``), raises
    ValueError in words. Returns the folder probed; creates nothing.
    """
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ValueError(f"{what}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what}: {existing} {not_a_folder}")
    probe_folder(existing, what=what)
    return existing


def describe_os_error(exc: OSError) -> str:
    """An OSError in words, without the errno number or temporary file names: 'permission denied'."""
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest written beside a video: ``clip.mp4`` -> ``clip.mp4.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it is renamed onto ``path``, on error removed.

    An ``OSError`` on the way (no space left, no permission, a vanished folder) becomes :class:`WriteFailed`,
    which names ``path`` and the cause in words, never the temporary name.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; finished files get the usual permissions
        yield tmp
        with open(tmp, "rb") as fh:  # on disk before it gets the final name
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            raise WriteFailed(exc.errno, f"cannot write {path}: {describe_os_error(exc)}") from exc
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _as_clips(frames: np.ndarray) -> np.ndarray:
    import numpy as np

    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (F, H, W, 3) or (B, F, H, W, 3), got shape {frames.shape}")
    return frames


def tile_clips(frames: np.ndarray) -> np.ndarray:
    """Several clips ``(B, F, H, W, 3)`` side by side as one clip ``(F, H, B·W, 3)``."""
    import numpy as np

    clips = _as_clips(frames)
    return np.concatenate(list(clips), axis=2)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    import numpy as np

    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_video(frames: np.ndarray, path: str | os.PathLike, *, fps: int = 8) -> Path:
    """Write float frames in [0, 1] by the suffix of ``path``.

    ``.npy``: float32, shape (F, H, W, 3) for one clip, (B, F, H, W, 3) for several. ``.gif`` / ``.mp4``:
    several clips are tiled side by side; clips smaller than 128 pixels are upscaled (nearest) so a person
    can see them.
    """
    path = check_output_path(path)
    check_fps(fps)
    clips = _as_clips(frames).astype("float32")
    with atomic_path(path) as tmp:
        _encode(clips, tmp, path.suffix.lower(), fps)
    return path


#: the highest frame rate a written video may have
MAX_FPS = 240


def check_fps(fps: Any, what: str = "fps") -> None:
    """Refuse a frame rate that is not a number in 0 < fps <= 240 (before anything is sampled or written)."""
    import math

    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"{what} (frames per second of the written video) must be a number in 0 < fps <= {MAX_FPS}, got {fps!r}")


def _encode(clips: np.ndarray, out: Path, suffix: str, fps: int) -> None:
    import numpy as np

    if suffix == ".npy":
        with open(out, "wb") as fh:
            np.save(fh, clips[0] if clips.shape[0] == 1 else clips)
        return
    import imageio.v2 as imageio

    clip = to_uint8(tile_clips(clips))
    factor = max(1, -(-MIN_DISPLAY_SIZE // min(clip.shape[1], clip.shape[2])))
    if factor > 1:
        clip = clip.repeat(factor, axis=1).repeat(factor, axis=2)
    if suffix == ".gif":
        imageio.mimsave(out, list(clip), format="GIF", duration=1000 / fps, loop=0)
        return
    if clip.shape[1] % 2 or clip.shape[2] % 2:  # yuv420p needs even sides
        clip = np.pad(clip, ((0, 0), (0, clip.shape[1] % 2), (0, clip.shape[2] % 2), (0, 0)), mode="edge")
    writer = imageio.get_writer(out, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1, quality=8)
    try:
        for frame in clip:
            writer.append_data(frame)
    finally:
        writer.close()


def save_with_manifest(frames: np.ndarray, path: str | os.PathLike, record: dict[str, Any] | None, *, fps: int = 8) -> Path:
    """Write a video and its manifest so that a video never stands beside another run's manifest.

    The video is encoded completely first; then an old manifest is removed, the video renamed into place and
    the new manifest written. A crash in between leaves a video without a manifest, never a mismatched pair.
    """
    path = check_output_path(path)
    check_fps(fps)
    clips = _as_clips(frames).astype("float32")
    with atomic_path(path) as tmp:
        _encode(clips, tmp, path.suffix.lower(), fps)
        if record is not None:
            manifest_path(path).unlink(missing_ok=True)
    if record is not None:
        write_manifest(record, path)
    return path


def write_manifest(record: dict[str, Any], video_path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON beside ``video_path`` (see :func:`manifest_path`), atomically."""
    out = manifest_path(video_path)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")
    return out


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers: ivmixed, torch, diffusers, transformers, numpy."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    out = {}
    for name in ("ivmixed", "torch", "diffusers", "transformers", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
