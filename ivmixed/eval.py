"""Evaluation of a batch folder: per-program quality and cost, paired differences against a baseline, the quality–cost plot.

The Python side of ``ivmixed eval``. :func:`evaluate` reads a folder written by ``ivmixed batch`` (its
``index.jsonl`` and the manifest beside every video), measures the decoded videos with the requested
metrics (see :mod:`ivmixed.metrics`) and returns an :class:`EvalReport`::

    from ivmixed.eval import evaluate

    report = evaluate("runs/chronomagic", metrics=["clip_score", "frame_consistency", "motion"], baseline="origin")
    print(report.format_table())
    report.save("runs/chronomagic/eval")        # eval.json, eval.md, quality_cost.png

**What is measured.** Every video gets the metrics its backbone wrote into its manifest (the toy world's exact
``frame_error``, ``coherence``, ``video_error``, ``prompt_accuracy``) and every requested frame metric, computed
on the frames read back from the file (``.npy`` exactly; ``.mp4``/``.gif`` at 8 bits, lossy for ``.mp4``, and
shrunk back to the generated size when the writer enlarged a small video). Backbone metrics whose name ends in
``_error`` are lower-is-better, the others higher-is-better; a registered metric states its own direction.

**Cost.** From the manifests: ``idm_image_evals`` and ``vdm_clip_evals`` (CFG doubling included), seconds of
sampling per video (``timings.total_s``), and ``model_evals`` = vdm_clip_evals + idm_image_evals / F — one IDM pass
over all F frames counted like one VDM pass, the paper's count (IV-IV on 50 steps: 500 against origin's 100).

**Statistics.** Per program: the mean over prompts of each prompt's mean over its seeds, with a 95% interval
mean ± t_{0.975, P−1} · sd / sqrt(P) over the P prompts (the seeds of one prompt are not independent; with a
single prompt the interval is over its videos). Paired: for every (prompt, seed index) present in both a program
and the baseline — the same initial noise, see :mod:`ivmixed.batch` — the difference program − baseline; its
mean with a 95% percentile bootstrap interval that resamples prompts with replacement (all seeds of a prompt
together; pairs when there is one prompt), ``bootstrap`` resamples from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .batch import INDEX_FILE, RUN_FILE, read_index
from .stats import mean_ci95, t_quantile_975

__all__ = [
    "COST_AXES",
    "EvalReport",
    "VideoScores",
    "bootstrap_mean_interval",
    "evaluate",
    "read_frames",
    "t_quantile_975",
]

log = logging.getLogger("ivmixed.eval")

#: the cost measures a plot can use as its x axis
COST_AXES = ("model_evals", "seconds", "idm_image_evals", "vdm_clip_evals")
_COST_LABELS = {
    "model_evals": "model evaluations per video (an IDM pass over all frames = 1)",
    "seconds": "seconds of sampling per video",
    "idm_image_evals": "IDM image evaluations per video",
    "vdm_clip_evals": "VDM clip evaluations per video",
}
EVAL_FILES = {"json": "eval.json", "markdown": "eval.md", "plot": "quality_cost.png"}


@dataclass
class VideoScores:
    """One video of the batch: where it is, what made it, what it cost and its metric values."""

    key: str
    program: str
    item: str
    seed_index: int
    seed: int | None
    prompt: str
    file: str
    idm_image_evals: float | None = None
    vdm_clip_evals: float | None = None
    model_evals: float | None = None
    seconds: float | None = None
    height: int | None = None
    width: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


# -- reading a batch folder ----------------------------------------------------------------------------


def read_frames(path: str | os.PathLike, *, height: int | None = None, width: int | None = None) -> np.ndarray:
    """The frames of a batch video as float32 (F, H, W, 3) in [0, 1].

    ``.npy`` is read as written. ``.gif`` and ``.mp4`` are read at 8 bits; when ``height`` and ``width`` (the
    generated size) are given and the file is an integer multiple of them (the writer enlarges small videos by
    repeating pixels, and pads ``.mp4`` to even sides), every k-th pixel is kept so the frames have that size again.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        frames = np.load(path, allow_pickle=False).astype(np.float32)
    elif suffix in (".gif", ".mp4"):
        import imageio.v2 as imageio

        frames = np.stack([np.asarray(f)[..., :3] for f in imageio.mimread(path, memtest=False)]).astype(np.float32) / 255.0
        if height and width:
            factor = frames.shape[1] // height
            if factor >= 1 and frames.shape[2] // width == factor and frames.shape[1] >= factor * height:
                frames = frames[:, : factor * height : factor, : factor * width : factor]
    else:
        raise ValueError(f"{path}: not a video file ivmixed writes (.npy, .gif, .mp4)")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: expected one clip of frames (F, H, W, 3), got shape {frames.shape}")
    return frames


def _check_batch_dir(batch_dir: Path) -> None:
    if not batch_dir.exists():
        raise FileNotFoundError(f"batch folder {batch_dir} does not exist")
    if not batch_dir.is_dir():
        raise ValueError(f"{batch_dir} is a file; give the folder written by `ivmixed batch`")
    if not (batch_dir / INDEX_FILE).is_file():
        raise ValueError(f"{batch_dir} is not a batch folder (it has no {INDEX_FILE}); make one with `ivmixed batch PROMPTS --out {batch_dir}`")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _video_from_manifest(record: Mapping[str, Any], manifest: Mapping[str, Any]) -> VideoScores:
    cost = manifest.get("cost") or {}
    idm, vdm = _number(cost.get("idm_image_evals")), _number(cost.get("vdm_clip_evals"))
    settings = manifest.get("settings") or {}
    frames, height, width = (_number(settings.get(k)) for k in ("frames", "height", "width"))
    model_evals = vdm + idm / frames if idm is not None and vdm is not None and frames else None
    prompts = manifest.get("prompts") or [""]
    batch = manifest.get("batch") or {}
    metrics = {k: _number(v) for k, v in (manifest.get("metrics") or {}).items() if _number(v) is not None or v is None}
    return VideoScores(
        key=record["key"],
        program=str(record.get("program") or manifest.get("program")),
        item=str(record.get("item") or batch.get("item_id")),
        seed_index=int(record.get("seed_index", batch.get("seed_index", 0))),
        seed=record.get("seed", manifest.get("seed")),
        prompt=str(prompts[0]),
        file=str(record["file"]),
        idm_image_evals=idm,
        vdm_clip_evals=vdm,
        model_evals=model_evals,
        seconds=_number((manifest.get("timings") or {}).get("total_s")),
        height=int(height) if height else None,
        width=int(width) if width else None,
        metrics=metrics,
    )


def _read_videos(batch_dir: Path) -> tuple[list[VideoScores], list[str]]:
    """(videos with their manifest values, skipped keys with the reason)."""
    videos, skipped = [], []
    for key, record in read_index(batch_dir).items():
        file = batch_dir / str(record.get("file", ""))
        manifest_file = file.with_name(file.name + ".json")
        if not file.is_file():
            skipped.append(f"{key}: the video {file.name} is missing")
            continue
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            skipped.append(f"{key}: unreadable manifest {manifest_file.name} ({type(exc).__name__})")
            continue
        videos.append(_video_from_manifest(record, manifest))
    for reason in skipped:
        log.warning("skipped %s", reason)
    return videos, skipped


# -- statistics ----------------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _program_summary(videos: Sequence[VideoScores], value) -> tuple[float | None, float | None, int]:
    """(mean of per-prompt means, 95% half-width over prompts (over videos for one prompt), videos used)."""
    by_item: dict[str, list[float]] = {}
    for v in videos:
        x = value(v)
        if _finite(x):
            by_item.setdefault(v.item, []).append(float(x))
    used = sum(len(xs) for xs in by_item.values())
    if len(by_item) == 1:
        mean, ci = mean_ci95(next(iter(by_item.values())))
    else:
        mean, ci = mean_ci95([sum(xs) / len(xs) for xs in by_item.values()])
    return mean, ci, used


def bootstrap_mean_interval(values: Sequence[float], clusters: Sequence[Any] | None = None, *, resamples: int = 2000, seed: int = 0) -> tuple[float | None, float | None]:
    """The 95% percentile bootstrap interval of the mean of ``values``, resampling whole clusters with replacement.

    ``clusters[i]`` names the cluster of ``values[i]`` (the prompt); with fewer than two clusters the values
    themselves are resampled. A resampled mean is Σ(cluster sums) / Σ(cluster sizes). (None, None) for fewer
    than two values.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None, None
    if resamples < 1:
        raise ValueError(f"bootstrap resamples must be >= 1, got {resamples}")
    labels = list(clusters) if clusters is not None else list(range(x.size))
    if len(set(labels)) < 2:
        labels = list(range(x.size))
    names = list(dict.fromkeys(labels))
    index = {name: i for i, name in enumerate(names)}
    codes = np.array([index[label] for label in labels])
    sums = np.bincount(codes, weights=x, minlength=len(names))
    sizes = np.bincount(codes, minlength=len(names)).astype(np.float64)
    draw = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    means = sums[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


# -- the report ----------------------------------------------------------------------------------------


def _direction_word(higher_is_better: bool | None) -> str:
    return {True: "higher is better", False: "lower is better"}.get(higher_is_better, "no better direction")


@dataclass
class EvalReport:
    """What :func:`evaluate` found: per-program rows, paired rows against the baseline, and every video's values.

    ``rows[i]`` holds ``program``, ``videos``, ``prompts``, the mean cost per video (``model_evals``,
    ``idm_image_evals``, ``vdm_clip_evals``, ``seconds`` with ``seconds_ci95``) and, for every metric M, ``M``
    and ``M_ci95``. ``paired[i]`` holds ``program``, ``baseline``, ``pairs``, ``cost_ratio`` (model_evals
    against the baseline's) and, for every metric M, ``M`` (the mean difference program − baseline),
    ``M_low``, ``M_high`` (the bootstrap interval) and ``M_pairs``.
    """

    batch_dir: str
    baseline: str | None
    programs: list[str]
    metrics: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    videos: list[VideoScores]
    skipped: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    bootstrap: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_dir": self.batch_dir,
            "run": self.run,
            "baseline": self.baseline,
            "programs": self.programs,
            "metrics": self.metrics,
            "statistics": {
                "per_program": "mean over prompts of per-prompt means; 95% interval Student t over prompts",
                "paired": "mean of program − baseline over (prompt, seed) pairs; 95% percentile bootstrap resampling prompts",
                **self.bootstrap,
            },
            "per_program": self.rows,
            "paired": self.paired,
            "skipped": self.skipped,
            "videos": [asdict(v) for v in self.videos],
        }

    # -- tables

    def _program_table(self) -> tuple[list[str], list[list[str]]]:
        names = list(self.metrics)
        head = ["program", "videos", "model evals", "IDM img evals", "VDM clip evals", "s/video", *names]
        body = []
        for r in self.rows:
            body.append(
                [
                    r["program"] + (" (baseline)" if r["program"] == self.baseline else ""),
                    str(r["videos"]),
                    _count(r.get("model_evals")),
                    _count(r.get("idm_image_evals")),
                    _count(r.get("vdm_clip_evals")),
                    "-" if r.get("seconds") is None else f"{r['seconds']:.3g}",
                    *(_mean_ci(r.get(m), r.get(f"{m}_ci95")) for m in names),
                ]
            )
        return head, body

    def _paired_table(self) -> tuple[list[str], list[list[str]]]:
        names = list(self.metrics)
        head = ["program", "pairs", "cost ×", *(f"Δ {m}" for m in names)]
        body = []
        for r in self.paired:
            body.append(
                [
                    r["program"],
                    str(r["pairs"]),
                    "-" if r.get("cost_ratio") is None else f"{r['cost_ratio']:.2f}",
                    *(_difference(r.get(m), r.get(f"{m}_low"), r.get(f"{m}_high")) for m in names),
                ]
            )
        return head, body

    def format_table(self, *, markdown: bool = False) -> str:
        """The per-program table and the paired table, as aligned text (or Markdown), with a note on the statistics."""
        directions = ", ".join(f"{m}: {_direction_word(info.get('higher_is_better'))}" for m, info in self.metrics.items())
        gap = [""] if markdown else []  # Markdown needs a blank line between a table and the text after it
        parts = [_table(*self._program_table(), markdown=markdown), *gap]
        parts.append("mean ± 95% interval over prompts (Student t); " + (directions or "no metrics"))
        if self.paired:
            parts.append("")
            parts.append(f"paired differences against {self.baseline} on the same (prompt, seed):")
            parts += [*gap, _table(*self._paired_table(), markdown=markdown), *gap]
            parts.append(f"Δ = program − {self.baseline}, mean [95% bootstrap interval, {self.bootstrap.get('resamples', 0)} resamples of the prompts]")
        elif self.baseline is not None:
            parts.append(f"only one program ({self.baseline}): no paired comparison")
        if self.skipped:
            parts.append(f"{len(self.skipped)} video(s) skipped: " + "; ".join(self.skipped[:5]) + (" …" if len(self.skipped) > 5 else ""))
        return "\n".join(parts)

    def to_markdown(self) -> str:
        lines = [f"# Evaluation of `{self.batch_dir}`", ""]
        for name, info in self.metrics.items():
            lines.append(f"- **{name}** ({_direction_word(info.get('higher_is_better'))}): {info.get('source', '')}")
        lines += ["", self.format_table(markdown=True), ""]
        return "\n".join(lines)

    # -- the picture

    def default_y(self) -> str:
        """The metric a plot shows by default: ``clip_score`` if measured, else the first with a direction."""
        if "clip_score" in self.metrics:
            return "clip_score"
        for name, info in self.metrics.items():
            if info.get("higher_is_better") is not None:
                return name
        if self.metrics:
            return next(iter(self.metrics))
        raise ValueError("no metrics to plot: the videos' manifests have none and no --metrics were measured")

    def check_axes(self, x: str, y: str | None) -> str:
        """The y axis to use; refuses axes that are neither a cost nor a measured metric."""
        y = y or self.default_y()
        for axis, name in (("x", x), ("y", y)):
            if name not in self.metrics and not (axis == "x" and name in COST_AXES):
                choices = (list(COST_AXES) if axis == "x" else []) + list(self.metrics)
                raise ValueError(f"plot {axis} axis {name!r} is not measured here; choose one of: {', '.join(choices)}")
        return y

    def plot(self, path: str | os.PathLike | None = None, *, x: str = "model_evals", y: str | None = None, ax=None, title: str | None = None):
        """Quality (y, a metric) against cost (x, a cost measure or another metric): one point per program, 95% error bars.

        Writes ``path`` when given; returns the matplotlib Axes.
        """
        y = self.check_axes(x, y)
        plt = _pyplot(headless=ax is None and path is not None)
        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for row in self.rows:
            px, py = row.get(x), row.get(y)
            if px is None or py is None:
                continue
            ax.errorbar(px, py, xerr=row.get(f"{x}_ci95") or 0, yerr=row.get(f"{y}_ci95") or 0, fmt="s" if row["program"] == self.baseline else "o", capsize=3)
            ax.annotate(row["program"], (px, py), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.margins(x=0.15, y=0.15)
        ax.set_xlabel(_COST_LABELS[x] if x in _COST_LABELS else f"{x} ({_direction_word(self.metrics[x].get('higher_is_better'))})")
        ax.set_ylabel(f"{y} ({_direction_word(self.metrics[y].get('higher_is_better'))})")
        ax.set_title(title or f"{Path(self.batch_dir).name}: {y} against {'cost' if x in COST_AXES else x}")
        ax.grid(alpha=0.3)
        if path is not None:
            (fig or ax.figure).tight_layout()
            (fig or ax.figure).savefig(path, dpi=120)
            if fig is not None:
                plt.close(fig)
        return ax

    def save(self, out_dir: str | os.PathLike, *, plot: bool = True, x: str = "model_evals", y: str | None = None) -> dict[str, Path]:
        """Write eval.json, eval.md and (with ``plot``) quality_cost.png into ``out_dir``, each atomically."""
        from .io import atomic_path

        out = check_out_dir(out_dir)
        if plot:
            self.check_axes(x, y)
            require_matplotlib()
        written = {}
        with atomic_path(out / EVAL_FILES["json"]) as tmp:
            tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        written["json"] = out / EVAL_FILES["json"]
        with atomic_path(out / EVAL_FILES["markdown"]) as tmp:
            tmp.write_text(self.to_markdown(), encoding="utf-8")
        written["markdown"] = out / EVAL_FILES["markdown"]
        if plot:
            with atomic_path(out / EVAL_FILES["plot"]) as tmp:
                self.plot(tmp, x=x, y=y)
            written["plot"] = out / EVAL_FILES["plot"]
        return written


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that cannot be written (a file, no write permission), before any work starts."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for eval.json, eval.md and the plot")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise ValueError(f"--out {out}: cannot write in {existing}")
    return out


def require_matplotlib() -> None:
    """Raise ImportError with the install command when matplotlib is missing."""
    _pyplot(headless=False, load=False)


def _pyplot(*, headless: bool, load: bool = True):
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the quality–cost plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'ivmixed[notebooks]'); pass --no-plot to write only the tables"
        ) from None
    if not load:
        return None
    if headless:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _mean_ci(mean: float | None, ci: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {ci:.4f}" if ci is not None else f"{mean:.4f}"


def _difference(mean: float | None, low: float | None, high: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]" if low is not None else f"{mean:+.4f}"


def _table(head: list[str], body: list[list[str]], *, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


# -- evaluate ------------------------------------------------------------------------------------------


def _parse_metric_options(metric_options: Mapping[str, Mapping[str, Any]] | None, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    options = {name: dict(opts) for name, opts in (metric_options or {}).items()}
    stray = [name for name in options if name not in names]
    if stray:
        raise ValueError(f"options given for metric(s) {', '.join(stray)}, which are not measured; add them to --metrics ({', '.join(names) or 'none given'})")
    return options


def evaluate(
    batch_dir: str | os.PathLike,
    metrics: Sequence[str] = (),
    *,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    baseline: str | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    progress: bool = True,
    plot_axes: tuple[str, str | None] | None = None,
) -> EvalReport:
    """Measure every finished video of a batch folder and summarise per program and paired against ``baseline``.

    Args:
        batch_dir: a folder written by ``ivmixed batch`` / :func:`ivmixed.batch.run_batch`.
        metrics: registered metric names to compute on the frames (``clip_score``, ``frame_consistency``,
            ``motion``, plugins'; see ``ivmixed list --metrics``). The backbone metrics of the manifests are
            always included.
        metric_options: ``{metric: {option: value}}``, e.g. ``{"clip_score": {"model": "/models/clip-l"}}``.
        baseline: the program the others are compared with (default: ``origin`` if present, else the first).
        bootstrap: bootstrap resamples of the paired intervals.
        seed: seed of the bootstrap.
        progress: a tqdm bar over the videos while frame metrics are computed.
        plot_axes: ``(x, y)`` of a plot to be drawn from the report, checked with the rest (y None: the default).

    Everything is checked — the folder, the metric names and options, the baseline, the weights being local —
    before any metric model loads.
    """
    from .program import parse

    root = Path(batch_dir)
    _check_batch_dir(root)
    names = list(dict.fromkeys(metrics))
    options = _parse_metric_options(metric_options, names)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 1:
        raise ValueError(f"--bootstrap must be an integer >= 1 (resamples), got {bootstrap!r}")

    from .metrics import get_metric_spec

    specs = {name: get_metric_spec(name) for name in names}
    for name, spec in specs.items():
        spec.check(**options.get(name, {}))

    videos, skipped = _read_videos(root)
    if not videos:
        raise ValueError(f"{root} has no finished videos to evaluate" + (f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""))
    programs = list(dict.fromkeys(v.program for v in videos))
    if baseline is not None:
        wanted = str(parse(baseline))
        if wanted not in programs:
            raise ValueError(f"--baseline {baseline!r}: the batch has no videos of that program; its programs are: {', '.join(programs)}")
        baseline = wanted
    else:
        baseline = "origin" if "origin" in programs else programs[0]

    backbone_name = None
    run: dict[str, Any] = {}
    try:
        run = json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
        backbone_name = (run.get("config") or {}).get("backbone")
    except (OSError, ValueError, AttributeError):
        pass
    info: dict[str, dict[str, Any]] = {}
    for v in videos:
        for name in v.metrics:
            info.setdefault(name, {"source": f"manifest (backbone {backbone_name or '?'})", "higher_is_better": not name.endswith("_error")})

    if plot_axes is not None:
        x, y = plot_axes
        known = set(info) | set(names)
        for axis, name in (("x", x), ("y", y)):
            if name is not None and name not in known and not (axis == "x" and name in COST_AXES):
                choices = (list(COST_AXES) if axis == "x" else []) + list(dict.fromkeys([*info, *names]))
                raise ValueError(f"plot {axis} axis {name!r} is not measured here; choose one of: {', '.join(choices)}")
        require_matplotlib()

    loaded = {name: spec.load(**options.get(name, {})) for name, spec in specs.items()}
    for name, metric in loaded.items():
        describe = getattr(metric, "describe", None)
        info[name] = {
            "source": f"ivmixed.metrics entry point '{name}' from {specs[name].distribution or '?'}",
            "higher_is_better": specs[name].higher_is_better,
            "summary": specs[name].summary,
            "options": {k: str(v) for k, v in options.get(name, {}).items()},
            **({"details": describe()} if callable(describe) else {}),
        }
    if loaded:
        _measure(root, videos, loaded, progress, skipped)

    rows = _summarise_programs(programs, videos, list(info), baseline)
    paired = _pair(programs, videos, list(info), baseline, rows, bootstrap, seed)
    return EvalReport(
        batch_dir=str(root),
        baseline=baseline,
        programs=programs,
        metrics=info,
        rows=rows,
        paired=paired,
        videos=videos,
        skipped=skipped,
        run={k: run.get(k) for k in ("fingerprint", "config", "command") if k in run},
        bootstrap={"resamples": bootstrap, "seed": seed},
    )


def _measure(root: Path, videos: list[VideoScores], loaded: Mapping[str, Any], progress: bool, skipped: list[str]) -> None:
    from tqdm.auto import tqdm

    for v in tqdm(list(videos), desc="eval", unit="video", disable=not progress, dynamic_ncols=True):
        try:
            frames = read_frames(root / v.file, height=v.height, width=v.width)
        except (OSError, ValueError) as exc:
            skipped.append(f"{v.key}: cannot read {v.file} ({exc})")
            log.warning("skipped %s", skipped[-1])
            videos.remove(v)
            continue
        for name, metric in loaded.items():
            v.metrics[name] = float(metric(frames, v.prompt))


def _summarise_programs(programs: Sequence[str], videos: Sequence[VideoScores], names: Sequence[str], baseline: str) -> list[dict[str, Any]]:
    rows = []
    for program in programs:
        mine = [v for v in videos if v.program == program]
        row: dict[str, Any] = {"program": program, "videos": len(mine), "prompts": len({v.item for v in mine}), "seeds": len({v.seed_index for v in mine})}
        for cost in ("model_evals", "idm_image_evals", "vdm_clip_evals"):
            values = [getattr(v, cost) for v in mine if getattr(v, cost) is not None]
            row[cost] = round(sum(values) / len(values), 4) if values else None
        mean, ci, _ = _program_summary(mine, lambda v: v.seconds)
        row["seconds"], row["seconds_ci95"] = _rounded(mean), _rounded(ci)
        for name in names:
            mean, ci, _ = _program_summary(mine, lambda v, n=name: v.metrics.get(n))
            row[name], row[f"{name}_ci95"] = _rounded(mean), _rounded(ci)
        rows.append(row)
    return rows


def _pair(programs, videos, names, baseline, rows, resamples: int, seed: int) -> list[dict[str, Any]]:
    base = {(v.item, v.seed_index): v for v in videos if v.program == baseline}
    base_cost = next((r.get("model_evals") for r in rows if r["program"] == baseline), None)
    out = []
    for program in programs:
        if program == baseline:
            continue
        mine = {(v.item, v.seed_index): v for v in videos if v.program == program}
        common = [k for k in mine if k in base]
        own_cost = next((r.get("model_evals") for r in rows if r["program"] == program), None)
        row: dict[str, Any] = {
            "program": program,
            "baseline": baseline,
            "pairs": len(common),
            "cost_ratio": round(own_cost / base_cost, 4) if own_cost is not None and base_cost else None,
        }
        for name in names:
            keys = [k for k in common if _finite(mine[k].metrics.get(name)) and _finite(base[k].metrics.get(name))]
            diffs = [mine[k].metrics[name] - base[k].metrics[name] for k in keys]
            low, high = bootstrap_mean_interval(diffs, [k[0] for k in keys], resamples=resamples, seed=seed)
            row[name] = _rounded(sum(diffs) / len(diffs)) if diffs else None
            row[f"{name}_low"], row[f"{name}_high"] = _rounded(low), _rounded(high)
            row[f"{name}_pairs"] = len(diffs)
        out.append(row)
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
