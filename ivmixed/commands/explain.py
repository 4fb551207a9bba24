"""``ivmixed explain PROGRAM``: the sub-step plan of the first steps and the exact cost, without any model."""

from __future__ import annotations

import argparse
import json

from ..checks import check_request
from ..program import explain, format_explain, parse
from ._common import add_substeps_argument, backbone_options


def parse_program_text(text: str):
    if not text.strip():
        raise ValueError("the program is empty; give a program such as IV-IV or origin")
    return parse(text)


def register(sub) -> None:
    p = sub.add_parser("explain", help="show the sub-step plan and cost of a program", description=__doc__)
    p.add_argument("program", help="program text, e.g. IV-IV, 'VV-VV@66.7%%', 'IV-IV+VV-VV@i%%3=2'")
    p.add_argument("--steps", type=int, default=None, help="number of sampling steps N (default: the backbone's, else 50)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: the backbone's, else 16)")
    p.add_argument(
        "--guidance", type=float, default=None,
        help="ω of the standard step, for the cost: at 1 it evaluates the conditional half alone (default: the backbone's ω)",
    )
    p.add_argument("--train-timesteps", type=int, default=1000, help="T of the noise schedule (default: 1000)")
    p.add_argument("--show-steps", type=int, default=3, help="how many steps of the plan to show (default: 3)")
    add_substeps_argument(p)
    p.add_argument(
        "--backbone",
        default=None,
        help="plan on this backbone's own schedule and grid where it has one (e.g. wan: the flow-matching sub-step plan)",
    )
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="a --backbone option that changes the plan (-o distilled_steps=8, -o flow_shift=5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = None
    if args.backbone is not None:
        from ..registry import get_spec

        spec = get_spec(args.backbone)  # unknown names: a clear error listing the known ones
    elif args.option:
        raise ValueError("-o/--option KEY=VALUE is a backbone's option: give --backbone NAME with it")
    options = spec.check_options(backbone_options(args)) if spec is not None else {}
    defaults = getattr(spec, "defaults", None)
    steps = args.steps if args.steps is not None else (spec.default_steps_for(options) if spec is not None else 50)
    frames = args.frames if args.frames is not None else (defaults.frames if defaults is not None else 16)
    guidance = args.guidance if args.guidance is not None else (defaults.guidance if defaults is not None else None)
    check_request(frames=frames, steps=steps, guidance=guidance)
    if isinstance(args.train_timesteps, int) and args.train_timesteps < 2:
        raise ValueError(f"--train-timesteps must be an integer >= 2, got {args.train_timesteps}")
    if steps > args.train_timesteps:  # before the plan is built: every step needs its own timestep
        raise ValueError(
            f"--steps {steps} is more than the {args.train_timesteps} timesteps of the noise schedule "
            f"(--train-timesteps); use at most --steps {args.train_timesteps}"
        )
    if args.show_steps < 0:
        raise ValueError(f"--show-steps must be an integer >= 0, got {args.show_steps}")
    program = parse_program_text(args.program)
    program.validate(steps)
    planner = _backbone_planner(spec)
    if planner is not None:
        info, text = planner(
            program, num_steps=steps, num_frames=frames, show_steps=args.show_steps, substeps=args.substeps, guidance=guidance, **options
        )
        print(json.dumps(info, indent=2) if args.json else text)
        return 0
    info = explain(
        program, steps, frames, num_train_timesteps=args.train_timesteps, show_steps=args.show_steps,
        substeps=args.substeps, guidance=guidance,
    )
    print(json.dumps(info, indent=2) if args.json else format_explain(info))
    return 0


def _backbone_planner(spec):
    """The backbone's own ``explain_plan`` (flow and few-step backbones), or None for the default DDIM-grid plan."""
    if spec is None or spec.missing_requirements():
        return None
    return getattr(spec.resolve_factory(), "explain_plan", None)
