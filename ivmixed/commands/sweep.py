"""``ivmixed sweep``: many programs × the same seeds on one backbone; a table (or JSON) of cost and mean ± 95% interval.

The toy world (the default backbone) gives exact metrics in seconds; ``--plot`` draws per-frame error
against temporal coherence, one labelled point per program (the shape of the paper's Fig. 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from ..sweep import PAPER_FORMS, format_table, plot, sweep
from ..io import check_output_path
from ._common import add_backbone_arguments, add_output_arguments, add_sampling_arguments, load_checked, parse_programs, sampling_kwargs

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="compare programs over the same seeds: cost and metrics with 95%% intervals", description=__doc__)
    p.add_argument(
        "--programs",
        default=",".join(PAPER_FORMS),
        help="comma-separated programs (default: the paper's forms " + ",".join(PAPER_FORMS) + ")",
    )
    p.add_argument("--seeds", type=int, default=4, help="number of seeds K; every program runs on seeds 0..K-1 (default: 4)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--prompt", action="append", help="prompt of every run (repeatable; default: the backbone's prompt set)")
    add_sampling_arguments(p, program=False)
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per program")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="draw per-frame error against coherence, one point per program")
    add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be checked without a model is checked first
    programs = parse_programs(args.programs)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.plot:
        if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
            raise ValueError(f"--plot {args.plot}: use a file name ending in {', '.join(PLOT_SUFFIXES)}")
        if importlib.util.find_spec("matplotlib") is None:
            raise ImportError("--plot needs matplotlib: pip install 'ivmixed[notebooks]'")
    if args.plot:  # an existing plot is kept unless --overwrite; an unwritable folder is refused before sampling
        check_output_path(args.plot, suffixes=PLOT_SUFFIXES, overwrite=args.overwrite, manifest=False, what="--plot")
    spec, options, backbone = load_checked(args, programs)

    rows = sweep(
        backbone,
        programs,
        range(args.seed_start, args.seed_start + args.seeds),
        prompts=args.prompt,
        progress=not args.quiet,
        num_videos_per_prompt=args.num_videos,
        **sampling_kwargs(args),
    )
    if args.plot:
        if not any(r.get("frame_error") is not None and r.get("coherence") is not None for r in rows):
            raise ValueError(f"--plot: backbone '{spec.name}' reports no frame_error/coherence metrics to plot")
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        settings = "".join(f", {key}={value}" for key, value in options.items())
        plot(rows, args.plot, title=f"{spec.name}{settings}: {args.seeds} seeds, {len(rows[0:1]) and rows[0]['clips'] // args.seeds} clips each")
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, markdown=args.markdown))
    return 0
