"""Sweeps: many sampling programs × the same seeds on one backbone, summarised as mean ± 95% interval.

The Python side of ``ivmixed sweep``: :func:`sweep` runs every program on every seed (the same seeds for
every program, so the comparison is paired), :func:`format_table` prints the result and :func:`plot` draws
per-frame error against temporal coherence, one labelled point per program (the shape of the paper's Fig. 2).

One *run* is one call of :meth:`~ivmixed.backbones.base.Backbone.generate` with one seed on the whole prompt
set; the backbone's metrics of a run are already means over its clips. The 95% interval is
mean ± t_{0.975, K−1} · sd / sqrt(K) over the K runs (Student t; undefined, and reported as None, for K = 1).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from .program import Program, parse

__all__ = ["PAPER_FORMS", "sweep", "summarise", "t_quantile_975", "format_table", "plot"]

#: the forms compared in the paper (Fig. 2 and the form list of the task), in that order
PAPER_FORMS = ("origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV")

# t_{0.975, df} for df = 1..30; beyond 30 the normal quantile is within 2% of it
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (table to 30, then 1.96)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def summarise(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """(mean, half-width of the 95% interval) of per-run values; None entries (undefined metrics) are skipped."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, t_quantile_975(len(xs) - 1) * math.sqrt(var / len(xs))


def _seeds(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, bool):
        raise TypeError("seeds must be a count or a list of integers")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"need at least one seed, got {seeds}")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("need at least one seed")
    return out


def sweep(
    backbone: Any,
    programs: Sequence[str | Program],
    seeds: int | Iterable[int] = 4,
    *,
    prompts: Sequence[str] | None = None,
    progress: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    **generate_options: Any,
) -> list[dict[str, Any]]:
    """Run every program on the same seeds and return one summary row per program.

    Args:
        backbone: a loaded backbone (``ivmixed.load("toy")``).
        programs: program texts or :class:`~ivmixed.program.Program` values.
        seeds: a count K (seeds 0..K−1) or the seeds themselves.
        prompts: the prompt set of every run (default: the backbone's ``prompts`` attribute, e.g. every
            toy prompt, else its ``example_prompt``).
        progress: a tqdm bar over the runs.
        on_run: receives a record of every run (program, seed, metrics, seconds).
        **generate_options: passed to :meth:`Backbone.generate` (``steps``, ``frames``, ``guidance``,
            ``zigzag``, ``negative_prompt``, ``num_videos_per_prompt`` …).

    Each row holds ``program``, ``runs``, ``clips``, the cost per video (``idm_image_evals``,
    ``vdm_clip_evals``), ``seconds_per_run`` and, for every metric M of the backbone, ``M`` (the mean over
    runs) and ``M_ci95`` (the half-width of its 95% interval).
    """
    parsed = [parse(p) if isinstance(p, str) else p for p in programs]
    if not parsed:
        raise ValueError("give at least one program")
    seed_list = _seeds(seeds)
    if prompts is None:
        prompts = list(getattr(backbone, "prompts", None) or [getattr(backbone, "example_prompt", None) or "a video"])
    prompts = list(prompts)
    for key in ("program", "seed", "prompt", "progress", "decode"):
        if key in generate_options:
            raise TypeError(f"sweep() sets {key!r} itself")
    rows = []
    bar = tqdm(total=len(parsed) * len(seed_list), desc="sweep", unit="run", disable=not progress)
    try:
        for program in parsed:
            bar.set_postfix_str(str(program))
            per_run: list[dict[str, Any]] = []
            cost: dict[str, int] = {}
            seconds = []
            for seed in seed_list:
                started = time.perf_counter()
                video = backbone.generate(prompts, program=program, seed=seed, progress=False, decode=False, **generate_options)
                seconds.append(time.perf_counter() - started)
                cost = video.cost
                record = {"program": str(program), "seed": seed, "metrics": video.metrics or {}, "seconds": seconds[-1]}
                per_run.append(record)
                if on_run is not None:
                    on_run(record)
                bar.update(1)
            row: dict[str, Any] = {
                "program": str(program),
                "runs": len(per_run),
                "clips": len(per_run) * len(prompts) * generate_options.get("num_videos_per_prompt", 1),
                **cost,
            }
            names = list(dict.fromkeys(k for r in per_run for k in r["metrics"]))
            for name in names:
                mean, ci = summarise([r["metrics"].get(name) for r in per_run])
                row[name] = None if mean is None else round(mean, 6)
                row[f"{name}_ci95"] = None if ci is None else round(ci, 6)
            row["seconds_per_run"] = round(sum(seconds) / len(seconds), 4)
            rows.append(row)
    finally:
        bar.close()
    return rows


def _metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    fixed = {"program", "runs", "clips", "idm_image_evals", "vdm_clip_evals", "seconds_per_run"}
    return [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed and not k.endswith("_ci95")]


def _cell(mean: float | None, ci: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f} ± {ci:.4f}" if ci is not None else f"{mean:.4f}"


def format_table(rows: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """The rows of :func:`sweep` as an aligned text table (or a Markdown table): cost and mean ± 95% interval."""
    metrics = _metric_names(rows)
    head = ["program", "IDM img evals", "VDM clip evals", *metrics, "s/run"]
    body = [
        [
            r["program"],
            str(r.get("idm_image_evals", "-")),
            str(r.get("vdm_clip_evals", "-")),
            *(_cell(r.get(m), r.get(f"{m}_ci95")) for m in metrics),
            f"{r['seconds_per_run']:.2f}",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    runs = {r["runs"] for r in rows}
    note = f"mean ± 95% interval over {'/'.join(map(str, sorted(runs)))} seeds (Student t)"
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), note])


def plot(rows: Sequence[dict[str, Any]], path=None, *, x: str = "frame_error", y: str = "coherence", ax=None, title: str | None = None):
    """Per-frame error (x, lower is better) against coherence (y, higher is better), one labelled point per program.

    Error bars are the 95% intervals. Writes ``path`` when given; returns the matplotlib Axes.
    """
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not points:
        raise ValueError(f"no row has both {x!r} and {y!r}; does this backbone report metrics?")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    # a label goes above its point unless a nearby point's label is there already; then below, then further out
    x_span = (max(r[x] for r in points) - min(r[x] for r in points)) or 1.0
    y_span = (max(r[y] for r in points) - min(r[y] for r in points)) or 1.0
    slots = (5, -13, 14, -22, 23, -31)
    placed: list[tuple[float, float, int]] = []  # (x, y, slot) of the labels so far
    for r in sorted(points, key=lambda r: r[x]):
        marker = "s" if r["program"] == "origin" else "o"
        ax.errorbar(r[x], r[y], xerr=r.get(f"{x}_ci95") or 0, yerr=r.get(f"{y}_ci95") or 0, fmt=marker, capsize=3)
        near = {s for px, py, s in placed if abs(px - r[x]) < 0.12 * x_span and abs(py - r[y]) < 0.05 * y_span}
        slot = next((s for s in range(len(slots)) if s not in near), 0)
        placed.append((r[x], r[y], slot))
        ax.annotate(r["program"], (r[x], r[y]), textcoords="offset points", xytext=(4, slots[slot]), fontsize=8)
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel(f"{x.replace('_', ' ')} (lower is better)")
    ax.set_ylabel(f"{y.replace('_', ' ')} (higher is better)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if path is not None:
        (fig or ax.figure).tight_layout()
        (fig or ax.figure).savefig(path, dpi=120)
        if fig is not None:
            plt.close(fig)
    return ax
