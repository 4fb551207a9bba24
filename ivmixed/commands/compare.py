"""``ivmixed compare``: one prompt and one seed through several programs, side by side with each program's text under its tile.

An existing output file (or its manifest) is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..io import check_output_path, manifest_path
from ._common import add_backbone_arguments, add_output_arguments, add_sampling_arguments, load_checked, parse_programs, sampling_kwargs, summary


def register(sub) -> None:
    p = sub.add_parser("compare", help="the same prompt and noise through several programs, side by side", description=__doc__)
    p.add_argument("--programs", metavar="P1,P2,…", help="programs, comma-separated (default: origin and the backbone's recommended program)")
    p.add_argument("--prompt", help="text prompt (default: the backbone's example)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared initial noise (default: 0)")
    p.add_argument("--out", default="compare.gif", help="output file: .gif, .mp4, or .npy float frames (default: compare.gif)")
    add_output_arguments(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_sampling_arguments(p, program=False)
    p.add_argument("--preset", help="a named preset of the backbone (explicit options win)")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import compare

    out = check_output_path(args.out, overwrite=args.overwrite)
    if args.num_videos != 1:
        raise ValueError("compare makes one video per program: --num-videos must be 1")
    programs = parse_programs(args.programs, unique=True) if args.programs is not None else None
    spec, _, backbone = load_checked(args, programs or [], prompts=[args.prompt] if args.prompt is not None else None)
    if programs is None:
        programs = parse_programs(f"origin,{backbone.defaults.program}") if backbone.defaults.program != "origin" else parse_programs("origin")
    prompt = args.prompt or getattr(backbone, "example_prompt", None) or "a video"
    result = compare(
        backbone,
        prompt,
        programs,
        seed=args.seed,
        progress=not args.quiet and not args.json,
        preset=args.preset,
        **sampling_kwargs(args, spec),
    )
    record = result.save(out)
    if args.json:
        print(json.dumps(record, indent=2, default=str))
        return 0
    print(f"wrote {out} and {manifest_path(out)}", file=sys.stderr)
    print(f"{prompt!r}, seed {args.seed}")
    for program, video in zip(result.programs, result.videos):
        print(f"  {str(program):<24} {summary(video)}")
    return 0
