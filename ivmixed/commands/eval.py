"""``ivmixed eval``: measure a batch folder — quality and cost per program, paired differences against a baseline, the quality–cost plot.

Reads the folder written by ``ivmixed batch``; writes eval.json, eval.md and quality_cost.png into DIR/eval
(or --out). The backbone's own metrics (the toy world's) come from the manifests; --metrics adds metrics
measured on the frames (see ``ivmixed list --metrics``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

EPILOG = """examples:
  ivmixed eval runs/demo
  ivmixed eval runs/chronomagic --metrics clip_score,frame_consistency,motion --baseline origin
  ivmixed eval runs/chronomagic --metrics clip_score --metric-option clip_score.model=/models/clip-vit-large-patch14
  ivmixed eval runs/chronomagic --metrics frame_consistency -m frame_consistency.model=facebook/dino-vitb16 --plot-y frame_consistency
"""


def register(sub) -> None:
    from ..eval import COST_AXES

    p = sub.add_parser(
        "eval",
        help="evaluate a batch folder: per-program metrics and cost, paired differences, quality-cost plot",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by `ivmixed batch`")
    p.add_argument("--metrics", default="motion", metavar="M1,M2,…", help="frame metrics to measure, comma-separated (default: motion; 'none' for the manifests' metrics only)")
    p.add_argument("-m", "--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE", help="an option of a metric, e.g. clip_score.model=PATH or clip_score.device=cuda (repeatable)")
    p.add_argument("--baseline", metavar="PROGRAM", help="the program the others are compared with (default: origin if present, else the first)")
    p.add_argument("--out", metavar="OUT", help="folder for eval.json, eval.md and the plot (default: DIR/eval)")
    p.add_argument("--plot-x", default="model_evals", metavar="X", help=f"x axis: a cost ({', '.join(COST_AXES)}) or a metric (default: model_evals)")
    p.add_argument("--plot-y", metavar="Y", help="y axis: a metric (default: clip_score if measured, else the first metric with a direction)")
    p.add_argument("--no-plot", action="store_true", help="write only the tables (no matplotlib needed)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples of the paired intervals (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tables")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def parse_metric_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["clip_score.model=PATH", …]`` -> ``{"clip_score": {"model": "PATH"}}`` (values read as Python literals when they are)."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        metric, dot, key = target.strip().partition(".")
        if not sep or not dot or not metric or not key:
            raise ValueError(f"--metric-option {item!r}: expected METRIC.KEY=VALUE, e.g. clip_score.model=/models/clip")
        options.setdefault(metric, {})[key.strip().replace("-", "_")] = _literal(value.strip())
    return options


def parse_metric_names(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"--metrics {text!r}: empty item in the comma-separated list")
    return names


def run(args: argparse.Namespace) -> int:
    from ..eval import check_out_dir, evaluate

    names = parse_metric_names(args.metrics)
    options = parse_metric_options(args.metric_option)
    out = check_out_dir(args.out or Path(args.dir) / "eval")
    report = evaluate(
        args.dir,
        names,
        metric_options=options,
        baseline=args.baseline,
        bootstrap=args.bootstrap,
        seed=args.seed,
        progress=not args.quiet and not args.json,
        plot_axes=None if args.no_plot else (args.plot_x, args.plot_y),
    )
    y = None if args.no_plot else report.check_axes(args.plot_x, args.plot_y)
    written = report.save(out, plot=not args.no_plot, x=args.plot_x, y=y)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(report.format_table())
    print("wrote " + ", ".join(str(p) for p in written.values()), file=sys.stderr)
    return 0
