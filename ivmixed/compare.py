"""Paired comparisons: one prompt and one seed through several programs, shown side by side with each program's text.

The Python side of ``ivmixed compare``, for notebooks too::

    import ivmixed
    from ivmixed.compare import compare

    backbone = ivmixed.load("toy")
    result = compare(backbone, "a bright blob moving right", ["origin", "IV-IV"], seed=0)
    result.save("origin-vs-iviv.gif")      # tiles side by side, the program text under each
    result.videos[1].metrics               # every Video with its frames, latents, cost and metrics

Every program runs :meth:`~ivmixed.backbones.base.Backbone.generate` with the same seed, so all start from
the same initial noise (and draw the same R sub-step noise); each tile is exactly the frames of the single
``ivmixed generate`` run with that program and seed. Tiles are upscaled by an integer factor (nearest, so
pixel values are kept) until their short side is at least ``min_size`` pixels, and the label strip is drawn
with PIL's default font.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .program import Program, parse

__all__ = ["Comparison", "TileLayout", "compare", "tile_with_labels"]

#: tiles are upscaled until their short side is at least this many pixels (as io.write_video does for small clips)
MIN_TILE_SIZE = 128


@dataclass(frozen=True)
class TileLayout:
    """Where tile i sits in the side-by-side clip: rows ``0 : height``, columns ``x[i] : x[i] + width``.

    ``scale`` is the integer upscaling factor (tile pixel (r, c) is source pixel (r // scale, c // scale));
    the label strip is rows ``height + gap : height + gap + label_height``.
    """

    scale: int
    height: int  # of a tile, after upscaling
    width: int
    gap: int
    label_height: int
    x: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "tile_height": self.height, "tile_width": self.width, "gap": self.gap,
                "label_height": self.label_height, "tile_x": list(self.x)}


def _wrap(text: str, width: int, draw, font) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` pixels, preferably after '+' (between clauses)."""
    lines: list[str] = []
    current = ""
    for char in text:
        candidate = current + char
        if current and draw.textlength(candidate, font=font) > width:
            cut = current.rfind("+") + 1
            if 0 < cut < len(current):
                lines.append(current[:cut])
                current = current[cut:] + char
            else:
                lines.append(current)
                current = char
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def tile_with_labels(
    clips: np.ndarray,
    labels: Sequence[str],
    *,
    min_size: int = MIN_TILE_SIZE,
    gap: int = 4,
) -> tuple[np.ndarray, TileLayout]:
    """Clips ``(N, F, H, W, 3)`` in [0, 1] side by side, each with its label under it: ``(F, H', W', 3)`` float32.

    Background and gaps are white, text black. Returns the clip and its :class:`TileLayout`.
    """
    from PIL import Image, ImageDraw, ImageFont

    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"expected clips (N, F, H, W, 3), got shape {clips.shape}")
    n, frames, h, w, _ = clips.shape
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} clips")
    scale = max(1, -(-min_size // min(h, w)))
    th, tw = h * scale, w * scale

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(label, tw - 4, probe, font) for label in labels]
    line_height = probe.textbbox((0, 0), "Ag%|", font=font)[3] + 2
    label_height = max(len(lines) for lines in wrapped) * line_height + 6

    total_w = n * tw + (n + 1) * gap
    total_h = gap + th + gap + label_height
    strip = Image.new("RGB", (total_w, label_height), "white")
    draw = ImageDraw.Draw(strip)
    xs = tuple(gap + i * (tw + gap) for i in range(n))
    for x, lines in zip(xs, wrapped):
        for row, line in enumerate(lines):
            length = draw.textlength(line, font=font)
            draw.text((x + (tw - length) / 2, 3 + row * line_height), line, fill="black", font=font)
    label_rows = np.asarray(strip, dtype=np.float32) / 255.0

    out = np.ones((frames, total_h, total_w, 3), dtype=np.float32)
    for i, x in enumerate(xs):
        out[:, gap : gap + th, x : x + tw] = clips[i].repeat(scale, axis=1).repeat(scale, axis=2)
    out[:, gap + th + gap :, :] = label_rows[None]
    layout = TileLayout(scale=scale, height=th, width=tw, gap=gap, label_height=label_height, x=xs)
    return out, layout


@dataclass
class Comparison:
    """One prompt and seed through several programs: the :class:`~ivmixed.backbones.base.Video` of each."""

    prompt: str
    seed: int
    programs: list[Program]
    videos: list[Any]  # Video, one per program

    def frames(self) -> np.ndarray:
        """The frames of every program, ``(N, F, H, W, 3)`` float32 in [0, 1]."""
        return np.stack([v.frames[0] for v in self.videos])

    def tiled(self, *, min_size: int = MIN_TILE_SIZE, gap: int = 4) -> tuple[np.ndarray, TileLayout]:
        """The side-by-side clip with each program's text under its tile, and its layout."""
        return tile_with_labels(self.frames(), [str(p) for p in self.programs], min_size=min_size, gap=gap)

    def tile(self, index: int, tiled: np.ndarray, layout: TileLayout) -> np.ndarray:
        """Tile ``index`` of a tiled clip, back at the source resolution ``(F, H, W, 3)``."""
        s, x = layout.scale, layout.x[index]
        return tiled[:, layout.gap : layout.gap + layout.height : s, x : x + layout.width : s]

    def manifest(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "programs": [str(p) for p in self.programs],
            "videos": [v.manifest() for v in self.videos],
        }

    def save(self, path: str | os.PathLike, *, manifest: bool = True, fps: int | None = None) -> dict[str, Any]:
        """Write the side-by-side clip (``.gif``, ``.mp4``, or ``.npy`` float frames) and a manifest beside it."""
        from .io import check_output_path, save_with_manifest

        path = check_output_path(path)
        clip, layout = self.tiled()
        record = {**self.manifest(), "layout": layout.as_dict(), "output": str(path)}
        save_with_manifest(clip, path, record if manifest else None, fps=fps or self.videos[0].fps)
        return record


def compare(
    backbone: Any,
    prompt: str,
    programs: Sequence[Program | str],
    *,
    seed: int = 0,
    backbone_options: dict[str, Any] | None = None,
    progress: bool = False,
    **generate: Any,
) -> Comparison:
    """Run ``prompt`` with ``seed`` through every program on ``backbone`` (a loaded Backbone or a registered name).

    ``**generate`` are the sampling settings of :meth:`~ivmixed.backbones.base.Backbone.generate` (``steps``,
    ``frames``, ``height``, ``width``, ``guidance``, ``zigzag``, ``negative_prompt``, ``preset``); they are the
    same for every program, only the program changes.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("compare needs one non-empty prompt")
    parsed = [parse(p) if isinstance(p, str) else p for p in programs]
    if not parsed:
        raise ValueError("--programs: give at least one program")
    if len({str(p) for p in parsed}) != len(parsed):
        raise ValueError(f"--programs: a program is listed twice in {', '.join(map(str, parsed))}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"--seed must be an integer, got {seed!r}")
    for key in ("num_videos_per_prompt", "generator", "latents"):
        if key in generate:
            raise TypeError(f"compare() does not take {key}: every program starts from the noise of one seed")
    if isinstance(backbone, str):
        from .registry import load_backbone

        backbone = load_backbone(backbone, **(backbone_options or {}))
    elif backbone_options:
        raise ValueError("backbone_options are for loading a backbone by name; this backbone is already loaded")
    videos = [backbone.generate(prompt, program=p, seed=seed, progress=progress, **generate) for p in parsed]
    return Comparison(prompt=prompt, seed=seed, programs=parsed, videos=videos)
