"""``ivmixed generate``: one prompt through one program, written as .mp4, .gif or .npy with a JSON manifest beside it."""

from __future__ import annotations

import argparse
import json
import sys

from ..io import check_output_path, manifest_path
from ..program import parse
from ._common import add_backbone_arguments, add_sampling_arguments, backbone_options, precheck, resolve_spec, zigzag_table


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a video (default backbone: the offline toy world)", description=__doc__)
    p.add_argument("--prompt", action="append", help="text prompt (repeatable for a batch; default: the backbone's example)")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of torch.Generator('cpu') for the initial noise (default: 0)")
    p.add_argument("--out", default="ivmixed.gif", help="output file: .mp4, .gif or .npy (default: ivmixed.gif)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be checked without a model is checked first
    out = check_output_path(args.out)
    spec = resolve_spec(args.backbone)
    program = parse(args.program) if args.program else None
    precheck(spec, args, [program] if program else [])
    zigzag = zigzag_table(args)
    options = backbone_options(args)

    backbone = spec.load(**options)
    prompts = args.prompt or [getattr(backbone, "example_prompt", None) or "a video"]
    video = backbone.generate(
        prompts if len(prompts) > 1 else prompts[0],
        program=program,
        preset=args.preset,
        seed=args.seed,
        steps=args.steps,
        frames=args.frames,
        height=args.height,
        width=args.width,
        guidance=args.guidance,
        zigzag=zigzag,
        negative_prompt=args.negative_prompt,
        num_videos_per_prompt=args.num_videos,
        progress=not args.quiet and not args.json,
    )
    record = video.save(out)
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        metrics = record.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        print(f"wrote {out} and {manifest_path(out)}", file=sys.stderr)
        print(
            f"{record['program']} | seed {record['seed']} | cost {record['cost']['idm_image_evals']} IDM image evals, "
            f"{record['cost']['vdm_clip_evals']} VDM clip evals | {record['timings']['total_s']:.2f}s"
            + (f" | {shown}" if shown else "")
        )
    return 0
