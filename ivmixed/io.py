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
from typing import Any, Iterator

import numpy as np

__all__ = [
    "VIDEO_SUFFIXES",
    "check_output_path",
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


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an output path that cannot be written, before any work starts."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"--out {path}: unknown file type '{path.suffix}'; use one of {', '.join(VIDEO_SUFFIXES)}")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is not a folder")
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name ending in {', '.join(VIDEO_SUFFIXES)}")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--out {path}: cannot write in {existing}")
    return path


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest written beside a video: ``clip.mp4`` -> ``clip.mp4.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; finished files get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # on disk before it gets the final name
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _as_clips(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (F, H, W, 3) or (B, F, H, W, 3), got shape {frames.shape}")
    return frames


def tile_clips(frames: np.ndarray) -> np.ndarray:
    """Several clips ``(B, F, H, W, 3)`` side by side as one clip ``(F, H, B·W, 3)``."""
    clips = _as_clips(frames)
    return np.concatenate(list(clips), axis=2)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_video(frames: np.ndarray, path: str | os.PathLike, *, fps: int = 8) -> Path:
    """Write float frames in [0, 1] by the suffix of ``path``.

    ``.npy``: float32, shape (F, H, W, 3) for one clip, (B, F, H, W, 3) for several. ``.gif`` / ``.mp4``:
    several clips are tiled side by side; clips smaller than 128 pixels are upscaled (nearest) so a person
    can see them.
    """
    path = check_output_path(path)
    clips = _as_clips(frames).astype(np.float32)
    with atomic_path(path) as tmp:
        _encode(clips, tmp, path.suffix.lower(), fps)
    return path


def _encode(clips: np.ndarray, out: Path, suffix: str, fps: int) -> None:
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
    clips = _as_clips(frames).astype(np.float32)
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
