"""Sweeps: many sampling programs × the same seeds on one backbone, summarised as mean ± 95% interval.

The Python side of ``ivmixed sweep``: :func:`sweep` runs every program on every seed (the same seeds for
every program, so the comparison is paired), :func:`format_table` prints the result and :func:`plot` draws
per-frame error against temporal coherence, one labelled point per program (the shape of the paper's Fig. 2).

One *run* is one call of :meth:`~ivmixed.backbones.base.Backbone.generate` with one seed on the whole prompt
set; the backbone's metrics of a run are already means over its clips. The 95% interval is
mean ± t_{0.975, K−1} · sd / sqrt(K) over the K runs (Student t; undefined, and reported as None, for K = 1).

Distribution metrics (a backbone with a ``distribution_metrics(latents, prompts)`` method, such as the toy
world's energy distance and spread ratio) need many clips of one prompt, so they are computed once per program
on the clips of all runs pooled, one value per prompt; their interval is over the P prompts (t with P − 1
degrees of freedom). :func:`attribution` applies one program on windows of steps and reports the gain of each.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from .program import AllSteps, Clause, Program, Window, parse
from .stats import mean_ci95, t_quantile_975

__all__ = [
    "PAPER_FORMS",
    "TRUE_ROW",
    "sweep",
    "summarise",
    "t_quantile_975",
    "format_table",
    "plot",
    "attribution",
    "attribution_windows",
    "format_attribution",
    "plot_attribution",
]

#: the label of the row of exact samples of the true world (``sweep(..., true_samples=True)``)
TRUE_ROW = "true world"
#: metrics whose interval is over prompts (clips of all runs pooled), not over runs
DISTRIBUTION_METRICS = ("energy_distance", "spread_ratio")

#: the forms compared in the paper (Fig. 2 and the form list of the task), in that order
PAPER_FORMS = ("origin", "R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV")

def summarise(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """(mean, half-width of the 95% interval) of per-run values; None entries (undefined metrics) are skipped."""
    return mean_ci95([float(v) for v in values if v is not None and not math.isnan(float(v))])


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
    true_samples: bool = False,
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
        true_samples: put first a row labelled ``"true world"`` made of exact samples of the backbone's true
            world (same prompts, sizes and number of clips; needs the backbone's ``true_samples`` and
            ``clip_metrics``): the floor of every metric.
        **generate_options: passed to :meth:`Backbone.generate` (``steps``, ``frames``, ``guidance``,
            ``zigzag``, ``negative_prompt``, ``num_videos_per_prompt`` …).

    Each row holds ``program``, ``runs``, ``clips``, the cost per video (``idm_image_evals``,
    ``vdm_clip_evals``), ``seconds_per_run`` and, for every metric M of the backbone, ``M`` (the mean over
    runs) and ``M_ci95`` (the half-width of its 95% interval). With a backbone that has distribution metrics,
    each also holds those (mean and interval over prompts, see the module docstring).
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
    distribution = getattr(backbone, "distribution_metrics", None)
    per_video = generate_options.get("num_videos_per_prompt", 1)
    rows = []
    if true_samples:
        rows.append(_true_row(backbone, prompts, seed_list, per_video, generate_options, distribution, on_run))
    bar = tqdm(total=len(parsed) * len(seed_list), desc="sweep", unit="run", disable=not progress)
    try:
        for program in parsed:
            bar.set_postfix_str(str(program))
            per_run: list[dict[str, Any]] = []
            cost: dict[str, int] = {}
            seconds = []
            latents, clip_prompts = [], []
            for seed in seed_list:
                started = time.perf_counter()
                video = backbone.generate(prompts, program=program, seed=seed, progress=False, decode=False, **generate_options)
                seconds.append(time.perf_counter() - started)
                cost = video.cost
                if distribution is not None:
                    latents.append(video.latents)
                    clip_prompts += list(video.prompts)
                record = {"program": str(program), "seed": seed, "metrics": video.metrics or {}, "seconds": seconds[-1]}
                per_run.append(record)
                if on_run is not None:
                    on_run(record)
                bar.update(1)
            row: dict[str, Any] = {
                "program": str(program),
                "runs": len(per_run),
                "clips": len(per_run) * len(prompts) * per_video,
                **cost,
            }
            _summarise_into(row, per_run, distribution, latents, clip_prompts)
            row["seconds_per_run"] = round(sum(seconds) / len(seconds), 4)
            rows.append(row)
    finally:
        bar.close()
    return rows


def _summarise_into(row, per_run, distribution, latents, clip_prompts) -> None:
    """Mean ± interval of every per-run metric, then the distribution metrics of the pooled clips."""
    import torch

    names = list(dict.fromkeys(k for r in per_run for k in r["metrics"]))
    for name in names:
        mean, ci = summarise([r["metrics"].get(name) for r in per_run])
        row[name] = None if mean is None else round(mean, 6)
        row[f"{name}_ci95"] = None if ci is None else round(ci, 6)
    if distribution is not None and latents:
        for name, values in distribution(torch.cat(latents), clip_prompts).items():
            mean, ci = summarise(values)
            row[name] = None if mean is None else round(mean, 6)
            row[f"{name}_ci95"] = None if ci is None else round(ci, 6)


def _true_row(backbone, prompts, seed_list, per_video, generate_options, distribution, on_run) -> dict[str, Any]:
    """The row of exact samples of the true world: the same prompts, sizes and seeds as every program."""
    import torch

    if not (hasattr(backbone, "true_samples") and hasattr(backbone, "clip_metrics")):
        raise ValueError(f"backbone '{getattr(backbone, 'name', '?')}' has no true world to sample (true_samples=True)")
    d = backbone.defaults
    size = {k: generate_options.get(k) or getattr(d, k) for k in ("frames", "height", "width")}
    clip_prompts = [p for p in prompts for _ in range(per_video)]
    per_run, latents, seconds = [], [], []
    for seed in seed_list:
        started = time.perf_counter()
        clips = backbone.true_samples(clip_prompts, seed=seed, **size)
        metrics = backbone.clip_metrics(clips, clip_prompts)
        seconds.append(time.perf_counter() - started)
        latents.append(clips)
        values = {k: None if bool(torch.isnan(v).any()) else round(float(v.mean()), 6) for k, v in metrics.items()}
        record = {"program": TRUE_ROW, "seed": seed, "metrics": values, "seconds": seconds[-1]}
        per_run.append(record)
        if on_run is not None:
            on_run(record)
    row: dict[str, Any] = {
        "program": TRUE_ROW,
        "runs": len(per_run),
        "clips": len(per_run) * len(clip_prompts),
        "idm_image_evals": 0,
        "vdm_clip_evals": 0,
    }
    _summarise_into(row, per_run, distribution, latents, clip_prompts * len(seed_list))
    row["seconds_per_run"] = round(sum(seconds) / len(seconds), 4)
    return row


def _metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Metric columns in order of appearance, with the distribution metrics right after ``frame_error``."""
    fixed = {"program", "runs", "clips", "idm_image_evals", "vdm_clip_evals", "seconds_per_run"}
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed and not k.endswith("_ci95")]
    extra = [k for k in DISTRIBUTION_METRICS if k in names]
    rest = [k for k in names if k not in extra]
    at = rest.index("frame_error") + 1 if "frame_error" in rest else len(rest)
    return rest[:at] + extra + rest[at:]


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
    pooled = [m for m in metrics if m in DISTRIBUTION_METRICS]
    if pooled:
        note += f"; {', '.join(pooled)}: over prompts, the clips of all seeds pooled"
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), note])


def _place_labels(ax, points: Sequence[tuple[float, float, str]], fontsize: int = 8) -> None:
    """Label every point without overlapping another label or point: the first free spot among offsets around
    it (measured with the figure's renderer); when none is free, the least crowded one, with a leader line."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_display = ax.transData.transform
    marks = []  # display boxes of the markers
    for px, py, _ in points:
        cx, cy = to_display((px, py))
        marks.append((cx - 5, cy - 5, cx + 5, cy + 5))
    frame = ax.get_window_extent(renderer)
    offsets = [(6, 4), (6, -12), (-6, 4), (-6, -12), (0, 10), (0, -18), (14, 14), (14, -24), (-14, 14), (-14, -24),
               (24, 0), (-24, 0), (0, 26), (0, -34), (28, 22), (28, -32), (-28, 22), (-28, -32)]
    placed: list[tuple[float, float, float, float]] = []

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for (px, py, text), own in zip(points, marks):
        best = None
        for dx, dy in offsets:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            label = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize, ha=ha)
            e = label.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            crowd = sum(overlap(box, b) for b in placed) + sum(overlap(box, m) for m in marks)
            outside = (max(0, frame.x0 - e.x0) + max(0, e.x1 - frame.x1) + max(0, frame.y0 - e.y0) + max(0, e.y1 - frame.y1)) * e.height
            score = crowd + outside
            if best is None or score < best[0]:
                if best is not None:
                    best[2].remove()
                best = (score, box, label, (dx, dy))
            else:
                label.remove()
            if score == 0:
                break
        score, box, label, (dx, dy) = best
        if score > 0 or abs(dx) > 10 or abs(dy) > 20:
            label.set_visible(False)
            label.remove()
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            label = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize, ha=ha,
                                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"})
        placed.append(box)


def _scatter(ax, rows, x: str, y: str, title: str | None) -> None:
    points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not points:
        raise ValueError(f"no row has both {x!r} and {y!r}; does this backbone report metrics?")
    for r in points:
        marker = "s" if r["program"] == "origin" else "*" if r["program"] == TRUE_ROW else "o"
        ax.errorbar(r[x], r[y], xerr=r.get(f"{x}_ci95") or 0, yerr=r.get(f"{y}_ci95") or 0, fmt=marker, capsize=3)
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel(f"{x.replace('_', ' ')} (lower is better)")
    ax.set_ylabel(f"{y.replace('_', ' ')} (higher is better)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _place_labels(ax, [(r[x], r[y], r["program"]) for r in points])


def plot(rows: Sequence[dict[str, Any]], path=None, *, x: str = "frame_error", y: str = "coherence", ax=None, title: str | None = None):
    """Per-frame error (x, lower is better) against coherence (y, higher is better), one labelled point per program.

    Error bars are the 95% intervals; labels are placed so that none overlaps another label or a point. Without
    ``ax``, when the rows hold ``energy_distance`` a second panel shows it (x) against the same y, so that the
    distribution metric stands next to the per-frame error. Writes ``path`` when given; returns the Axes (a list
    of two with the second panel).
    """
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = None
    both = ax is None and x == "frame_error" and any(r.get("energy_distance") is not None for r in rows)
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8)) if both else plt.subplots(figsize=(6.4, 4.8))
        axes = list(axes) if both else [axes]
    else:
        axes = [ax]
    if both:
        _scatter(axes[0], rows, x, y, None)
        _scatter(axes[1], rows, "energy_distance", y, None)
        if title:
            fig.suptitle(title, fontsize=11)
    else:
        _scatter(axes[0], rows, x, y, title)
    if path is not None:
        figure = fig or axes[0].figure
        figure.tight_layout()
        if both:  # the layout moved the axes: place the labels again for the final positions
            for a in axes:
                for child in list(a.texts):
                    child.remove()
            _place_labels(axes[0], [(r[x], r[y], r["program"]) for r in rows if r.get(x) is not None and r.get(y) is not None])
            _place_labels(axes[1], [(r["energy_distance"], r[y], r["program"]) for r in rows
                                    if r.get("energy_distance") is not None and r.get(y) is not None])
        figure.savefig(path, dpi=120)
        if fig is not None:
            plt.close(fig)
    return axes if both else axes[0]


# ------------------------------------------------------------------------------------------------
# Attribution: where a program's gain comes from
# ------------------------------------------------------------------------------------------------

#: metrics where a lower value is better; for the others (coherence, prompt accuracy) higher is better
LOWER_IS_BETTER = ("frame_error", "video_error", "energy_distance")


def attribution_windows(num_steps: int) -> list[tuple[str, Window]]:
    """The windows of :func:`attribution` for an N-step run: first, middle and last fifth, and the last step alone.

    Fifths are [0, N/5), [2N/5, 3N/5) and [4N/5, N), rounded to whole steps (at least one step each).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    n = num_steps

    def window(a: float, b: float) -> Window:
        begin = min(n - 1, round(a))
        return Window(begin, max(begin, round(b) - 1))

    return [
        ("first fifth", window(0, n / 5)),
        ("middle fifth", window(2 * n / 5, 3 * n / 5)),
        ("last fifth", window(4 * n / 5, n)),
        ("last step", Window(n - 1, n - 1)),
    ]


def attribution(
    backbone: Any,
    program: str | Program,
    seeds: int | Iterable[int] = 4,
    *,
    prompts: Sequence[str] | None = None,
    progress: bool = True,
    **generate_options: Any,
) -> list[dict[str, Any]]:
    """Where a program's gain comes from: the program on all steps and on each window of
    :func:`attribution_windows`, every one against ``origin`` on the same seeds.

    ``program`` is one form with no selector (``IV-IV``, ``VV-VV:nf``). Returns one row per window (first
    ``all steps``) with the sweep row of the windowed program and, for every metric M, ``M_gain`` (the
    improvement over origin: origin − program for errors and distances, program − origin for coherence and
    prompt accuracy), ``M_gain_ci95`` (per-run metrics: the 95% interval of the paired per-seed differences)
    and ``M_share`` (the gain as a fraction of the all-steps gain; None when that gain is below 1e-9). The
    spread ratio is reported as is, not as a gain.
    """
    parsed = parse(program) if isinstance(program, str) else program
    if len(parsed.clauses) != 1 or not isinstance(parsed.clauses[0].selector, AllSteps) or parsed.is_origin:
        raise ValueError(f"attribution takes one zigzag form on every step, such as IV-IV or VV-VV:nf; got {str(parsed)!r}")
    clause = parsed.clauses[0]
    steps = generate_options.get("steps") or backbone.defaults.steps
    windows = [("all steps", None)] + attribution_windows(steps)
    programs = [parse("origin")] + [
        parsed if w is None else Program((Clause(clause.form, clause.order, w),)) for _, w in windows
    ]
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    record = lambda r: runs.setdefault(r["program"], {}).__setitem__(r["seed"], r["metrics"])  # noqa: E731
    rows = sweep(backbone, programs, seeds, prompts=prompts, progress=progress, on_run=record, **generate_options)
    origin, results = rows[0], rows[1:]
    out = []
    for (label, window), row in zip(windows, results):
        entry: dict[str, Any] = {"window": label, "steps": f"0..{steps - 1}" if window is None else str(window), **row}
        for name in _metric_names([row]):
            if name == "spread_ratio" or row.get(name) is None or origin.get(name) is None:
                continue
            sign = 1.0 if name in LOWER_IS_BETTER else -1.0
            entry[f"{name}_gain"] = round(sign * (origin[name] - row[name]), 6)
            if name in DISTRIBUTION_METRICS:
                entry[f"{name}_gain_ci95"] = None
            else:
                diffs = [sign * (runs["origin"][s][name] - runs[row["program"]][s][name]) for s in runs["origin"]
                         if runs["origin"][s].get(name) is not None and runs[row["program"]][s].get(name) is not None]
                entry[f"{name}_gain_ci95"] = None if summarise(diffs)[1] is None else round(summarise(diffs)[1], 6)
        out.append(entry)
    for entry in out:
        for key in [k for k in entry if k.endswith("_gain")]:
            total = out[0][key]
            entry[key.replace("_gain", "_share")] = None if abs(total) < 1e-9 else round(entry[key] / total, 4)
    for entry in out:
        entry["origin"] = {k: origin[k] for k in origin if k in _metric_names([origin]) or k.endswith("_ci95")}
    return out


def format_attribution(rows: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """The rows of :func:`attribution` as a table: per window its cost, and per metric the gain ± interval (share)."""
    gains = [k[: -len("_gain")] for k in dict.fromkeys(k for r in rows for k in r) if k.endswith("_gain")]
    head = ["window", "program", "IDM img evals", "VDM clip evals", *(f"{m} gain (share)" for m in gains)]
    if any(r.get("spread_ratio") is not None for r in rows):
        head.append("spread_ratio")

    def cell(r, m):
        g, ci, share = r.get(f"{m}_gain"), r.get(f"{m}_gain_ci95"), r.get(f"{m}_share")
        if g is None:
            return "-"
        g, share = (0.0 if abs(g) < 5e-5 else g), (0.0 if share is not None and abs(share) < 0.005 else share)
        text = f"{g:+.4f}" + (f" ± {ci:.4f}" if ci is not None else "")
        return text + (f" ({share:.0%})" if share is not None else "")

    body = []
    for r in rows:
        cells = [r["window"], r["program"], str(r.get("idm_image_evals", "-")), str(r.get("vdm_clip_evals", "-"))]
        cells += [cell(r, m) for m in gains]
        if "spread_ratio" in head:
            cells.append("-" if r.get("spread_ratio") is None else f"{r['spread_ratio']:.3f}")
        body.append(cells)
    origin = rows[0]["origin"] if rows else {}
    note = "gain over origin (" + ", ".join(f"{m} {origin[m]:.4f}" for m in gains if origin.get(m) is not None) + "); "
    note += "± 95% interval of the paired per-seed differences; share = gain / all-steps gain"
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body), note])


def plot_attribution(rows: Sequence[dict[str, Any]], path=None, *, metrics: Sequence[str] = ("frame_error", "energy_distance"),
                     ax=None, title: str | None = None):
    """Bars of the gain over origin per window (one group per window, one bar per metric), 95% intervals as error bars."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(r.get(f"{m}_gain") is not None for r in rows)]
    if not metrics:
        raise ValueError("no attribution row has a gain to plot")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.8 / len(metrics)
    for k, m in enumerate(metrics):
        xs = [i + (k - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
        ys = [r.get(f"{m}_gain") or 0.0 for r in rows]
        errs = [r.get(f"{m}_gain_ci95") or 0.0 for r in rows]
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=f"{m.replace('_', ' ')} gain")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(rows)), [f"{r['window']}\n{r['steps']}" for r in rows], fontsize=8)
    ax.set_ylabel("gain over origin (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=10)
    if path is not None:
        (fig or ax.figure).tight_layout()
        (fig or ax.figure).savefig(path, dpi=120)
        if fig is not None:
            plt.close(fig)
    return ax
