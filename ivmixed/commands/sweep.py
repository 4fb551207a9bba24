"""``ivmixed sweep``: many programs × the same seeds on one backbone; a table (or JSON) of cost and mean ± 95% interval.

The toy world (the default backbone) gives exact metrics in seconds; ``--plot`` draws per-frame error
against temporal coherence, one labelled point per program (the shape of the paper's Fig. 2), with the
distribution metric (energy distance) in a second panel when the backbone has one. ``--true-samples`` adds
a row of exact samples of the true world (the floor of every metric); ``--attribution PROGRAM`` runs one
program on windows of steps (first, middle and last fifth, the last step alone) and reports the gain of each
over origin, as a table and, with ``--plot``, as bars.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from ..io import check_output_path
from ..program import AllSteps, parse
from ..sweep import PAPER_FORMS, attribution, format_attribution, format_table, plot, plot_attribution, sweep
from ._common import add_backbone_arguments, add_output_arguments, add_sampling_arguments, load_checked, parse_programs, sampling_kwargs

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
PLOT_HINT = "--plot needs matplotlib, which is not installed here: pip install matplotlib (or pip install 'ivmixed[notebooks]')"


def register(sub) -> None:
    p = sub.add_parser("sweep", help="compare programs over the same seeds: cost and metrics with 95%% intervals", description=__doc__)
    p.add_argument(
        "--programs",
        default=",".join(PAPER_FORMS),
        help="comma-separated programs (default: the paper's forms " + ",".join(PAPER_FORMS) + ")",
    )
    p.add_argument(
        "--attribution",
        metavar="PROGRAM",
        help="where PROGRAM's gain comes from: run it on every step and on windows (first/middle/last fifth, last step), each against origin",
    )
    p.add_argument("--seeds", type=int, default=4, help="number of seeds K; every program runs on seeds 0..K-1 (default: 4)")
    p.add_argument("--seed-start", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--prompt", action="append", help="prompt of every run (repeatable; default: the backbone's prompt set)")
    add_sampling_arguments(p, program=False)
    p.add_argument("--preset", help="a named preset of the backbone: its guidance and zigzag ramps (explicit options win; the programs are the sweep's)")
    p.add_argument("--true-samples", action="store_true", help="add a first row of exact samples of the true world (toy backbone)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per program")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="draw per-frame error against coherence, one point per program (bars of the gains with --attribution)")
    add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be checked without a model is checked first
    if args.attribution and args.programs != ",".join(PAPER_FORMS):
        raise ValueError("--attribution runs its own list of programs (PROGRAM on windows of steps, and origin); leave out --programs")
    if args.attribution and args.true_samples:
        raise ValueError("--true-samples adds a row to a program table; it does not combine with --attribution")
    if args.attribution:
        target = parse(args.attribution)
        if len(target.clauses) != 1 or not isinstance(target.clauses[0].selector, AllSteps) or target.is_origin:
            raise ValueError(f"--attribution {args.attribution}: give one zigzag form on every step, such as IV-IV or VV-VV:nf")
        programs = [parse("origin"), target]
    else:
        programs = parse_programs(args.programs)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.plot:
        if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
            raise ValueError(f"--plot {args.plot}: use a file name ending in {', '.join(PLOT_SUFFIXES)}")
        if importlib.util.find_spec("matplotlib") is None:
            raise ImportError(PLOT_HINT)
    if args.plot:  # an existing plot is kept unless --overwrite; an unwritable folder is refused before sampling
        check_output_path(args.plot, suffixes=PLOT_SUFFIXES, overwrite=args.overwrite, manifest=False, what="--plot")
    spec = _spec(args)
    check_preset = getattr(spec, "check_preset", None)
    if check_preset is not None:
        check_preset(args.preset)
    spec, options, backbone = load_checked(args, programs)
    if args.true_samples and not hasattr(backbone, "true_samples"):
        raise ValueError(f"--true-samples: backbone '{spec.name}' has no true world to sample (the toy backbone has)")

    seeds = range(args.seed_start, args.seed_start + args.seeds)
    common = dict(prompts=args.prompt, progress=not args.quiet, num_videos_per_prompt=args.num_videos, preset=args.preset, **sampling_kwargs(args, spec))
    settings = "".join(f", {key}={value}" for key, value in options.items())
    if args.attribution:
        rows = attribution(backbone, programs[1], seeds, **common)
        if args.plot:
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            plot_attribution(rows, args.plot, title=f"{spec.name}{settings}: where {programs[1]}'s gain comes from, {args.seeds} seeds")
            print(f"wrote {args.plot}", file=sys.stderr)
        print(json.dumps(rows, indent=2) if args.json else format_attribution(rows, markdown=args.markdown))
        return 0

    rows = sweep(backbone, programs, seeds, true_samples=args.true_samples, **common)
    if args.plot:
        if not any(r.get("frame_error") is not None and r.get("coherence") is not None for r in rows):
            raise ValueError(f"--plot: backbone '{spec.name}' reports no frame_error/coherence metrics to plot")
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot(rows, args.plot, title=f"{spec.name}{settings}: {args.seeds} seeds, {len(rows[0:1]) and rows[-1]['clips'] // args.seeds} clips each")
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, markdown=args.markdown))
    return 0


def _spec(args: argparse.Namespace):
    from ._common import resolve_spec

    return resolve_spec(args.backbone)
