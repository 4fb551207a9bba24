"""``ivmixed compare``: one prompt and one seed through several programs, side by side with each program's text under its tile."""

from __future__ import annotations

import argparse
import json
import sys

from ..compare import compare
from ..io import check_output_path, manifest_path
from ._common import add_backbone_arguments, add_sampling_arguments, backbone_options, parse_programs, precheck, resolve_spec, zigzag_table


def register(sub) -> None:
    p = sub.add_parser("compare", help="the same prompt and noise through several programs, side by side", description=__doc__)
    p.add_argument("--programs", metavar="P1,P2,…", help="programs, comma-separated (default: origin and the backbone's recommended program)")
    p.add_argument("--prompt", help="text prompt (default: the backbone's example)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared initial noise (default: 0)")
    p.add_argument("--out", default="compare.gif", help="output file: .gif, .mp4, or .npy float frames (default: compare.gif)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_sampling_arguments(p, program=False)
    p.add_argument("--preset", help="a named preset of the backbone (explicit options win)")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.out)
    if args.num_videos != 1:
        raise ValueError("compare makes one video per program: --num-videos must be 1")
    spec = resolve_spec(args.backbone)
    programs = parse_programs(args.programs) if args.programs else None
    precheck(spec, args, programs or [])
    zigzag = zigzag_table(args)
    backbone = spec.load(**backbone_options(args))
    if programs is None:
        programs = parse_programs(f"origin,{backbone.defaults.program}") if backbone.defaults.program != "origin" else parse_programs("origin")
    prompt = args.prompt or getattr(backbone, "example_prompt", None) or "a video"
    result = compare(
        backbone,
        prompt,
        programs,
        seed=args.seed,
        progress=not args.quiet and not args.json,
        steps=args.steps,
        frames=args.frames,
        height=args.height,
        width=args.width,
        guidance=args.guidance,
        zigzag=zigzag,
        negative_prompt=args.negative_prompt,
        preset=args.preset,
    )
    record = result.save(out)
    if args.json:
        print(json.dumps(record, indent=2, default=str))
        return 0
    print(f"wrote {out} and {manifest_path(out)}", file=sys.stderr)
    print(f"{prompt!r}, seed {args.seed}")
    for program, video in zip(result.programs, result.videos):
        cost = video.cost
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in (video.metrics or {}).items() if isinstance(v, (int, float)))
        print(
            f"  {str(program):<24} cost {cost['idm_image_evals']} IDM image evals, {cost['vdm_clip_evals']} VDM clip evals"
            f" | {video.timings['total_s']:.2f}s" + (f" | {metrics}" if metrics else "")
        )
    return 0
