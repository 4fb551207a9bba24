"""``ivmixed generate``: one prompt through one program, written as .mp4, .gif or .npy with a JSON manifest beside it.

An existing output file (or its manifest) is refused unless ``--overwrite`` is given; with ``--overwrite`` both are
replaced, and a symbolic link at ``--out`` is replaced by the new file (the link's target is left untouched).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..io import check_output_path, manifest_path
from ._common import add_backbone_arguments, add_output_arguments, add_sampling_arguments, load_checked, parse_program, sampling_kwargs, summary


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a video (default backbone: the offline toy world)", description=__doc__)
    p.add_argument("--prompt", action="append", help="text prompt (repeatable for a batch; default: the backbone's example)")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of torch.Generator('cpu') for the initial noise (default: 0)")
    p.add_argument("--out", default="ivmixed.gif", help="output file: .mp4, .gif or .npy (default: ivmixed.gif); its manifest is OUT.json")
    add_output_arguments(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backbone_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # everything that can be checked without a model is checked first
    out = check_output_path(args.out, overwrite=args.overwrite)
    program = parse_program(args.program)
    spec, _, backbone = load_checked(args, [program] if program else [], prompts=args.prompt)
    prompts = args.prompt or [getattr(backbone, "example_prompt", None) or "a video"]
    video = backbone.generate(
        prompts if len(prompts) > 1 else prompts[0],
        program=program,
        preset=args.preset,
        seed=args.seed,
        num_videos_per_prompt=args.num_videos,
        progress=not args.quiet and not args.json,
        **sampling_kwargs(args, spec),
    )
    record = video.save(out)
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(f"wrote {out} and {manifest_path(out)}", file=sys.stderr)
        print(f"{record['program']} | seed {record['seed']} | {summary(video)}")
    return 0
