"""Arguments and checks shared by the sub-commands that load a backbone (generate, sweep, batch, compare)."""

from __future__ import annotations

import argparse
import ast
from typing import Any

from ..checks import check_request
from ..program import InvalidProgram, Program, parse
from ..registry import BackboneSpec, UnknownBackbone, get_spec

#: errors that mean "the request was wrong" (exit status 2), not "something broke while running"
UsageError = (ValueError, UnknownBackbone, ImportError, FileNotFoundError, InvalidProgram)

DEFAULT_BACKBONE = "toy"


def add_backbone_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE, help="registered backbone name (default: toy; see `ivmixed list`)")
    g.add_argument("--model", help="video model: a local folder (diffusers layout) or a hub id")
    g.add_argument("--image-model", help="image model: a local folder, a hub id, or a single .safetensors file")
    g.add_argument("--image-lora", action="append", metavar="FILE[:SCALE]", help="LoRA for the image model (repeatable)")
    g.add_argument("--image-latent-size", type=int, metavar="N", help="latent size the image model sees (modelscope)")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="model precision (default: fp16 on CUDA, fp32 on CPU)")
    g.add_argument("--allow-pickle", action="store_true", help="allow loading weights that are not .safetensors")
    g.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="any other backbone option (repeatable)")


def add_sampling_arguments(p: argparse.ArgumentParser, *, program: bool = True) -> None:
    g = p.add_argument_group("sampling")
    if program:
        g.add_argument("--program", help="sampling program, e.g. IV-IV, origin, 'IV-IV+VV-VV@i%%3=2' (default: the backbone's)")
        g.add_argument("--preset", help="a named preset of the backbone, e.g. reference (explicit options win)")
    g.add_argument("--steps", type=int, help="number of sampling steps N (default: the backbone's)")
    g.add_argument("--frames", type=int, help="frames per video (default: the backbone's)")
    g.add_argument("--height", type=int, help="height in pixels (default: the backbone's)")
    g.add_argument("--width", type=int, help="width in pixels (default: the backbone's)")
    g.add_argument("--guidance", type=float, help="guidance scale ω of the standard step (default: the backbone's)")
    g.add_argument("--zigzag-guidance", metavar="RAMP", help="guidance of all zigzag sub-steps: 4, linear(6,2), karras(6,2,7)")
    g.add_argument("--i-guidance", metavar="RAMP", help="guidance ramp of the image-model sub-steps (overrides --zigzag-guidance)")
    g.add_argument("--v-guidance", metavar="RAMP", help="guidance ramp of the video-model sub-steps (overrides --zigzag-guidance)")
    g.add_argument("--negative-prompt", help="negative prompt for every video")
    g.add_argument("--num-videos", type=int, default=1, help="videos per prompt (default: 1)")


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options to pass to the backbone factory: only what the user gave."""
    options: dict[str, Any] = {}
    for key in ("model", "image_model", "image_latent_size", "device", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if getattr(args, "image_lora", None):
        options["image_loras"] = list(args.image_lora)
    if getattr(args, "allow_pickle", False):
        options["allow_pickle"] = True
    for item in getattr(args, "option", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip().replace("-", "_")] = _literal(value.strip())
    return options


def zigzag_table(args: argparse.Namespace):
    """A GuidanceTable from --zigzag-guidance / --i-guidance / --v-guidance, or None for the default (4 everywhere)."""
    from ..schedules import GuidanceTable, Ramp

    if not (args.zigzag_guidance or args.i_guidance or args.v_guidance):
        return None
    base = Ramp.parse(args.zigzag_guidance) if args.zigzag_guidance else Ramp("constant", (4.0,))
    i_ramp = Ramp.parse(args.i_guidance) if args.i_guidance else base
    v_ramp = Ramp.parse(args.v_guidance) if args.v_guidance else base
    return GuidanceTable(i_go=i_ramp, i_back=i_ramp, v_go=v_ramp, v_back=v_ramp)


def precheck(spec: BackboneSpec, args: argparse.Namespace, programs: list[Program]) -> None:
    """Checks that need no model: sizes, frames, steps, guidance, and the programs' selectors against the steps."""
    check_request(
        frames=getattr(args, "frames", None),
        height=getattr(args, "height", None),
        width=getattr(args, "width", None),
        steps=getattr(args, "steps", None),
        guidance=getattr(args, "guidance", None),
        size_multiple=spec.size_multiple,
        backbone=spec.name,
    )
    steps = getattr(args, "steps", None) or spec.default_steps
    for program in programs:
        program.validate(steps)
    if getattr(args, "num_videos", 1) < 1:
        raise ValueError(f"--num-videos must be >= 1, got {args.num_videos}")


def resolve_spec(name: str) -> BackboneSpec:
    return get_spec(name)


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``Backbone.generate`` that the sampling options give (None: the backbone's default)."""
    return {
        "steps": args.steps,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "guidance": args.guidance,
        "zigzag": zigzag_table(args),
        "negative_prompt": args.negative_prompt,
    }


def load_checked(args: argparse.Namespace, programs: list[Program]):
    """Check everything that needs no model (backbone name, sizes, steps, programs), then load the backbone once."""
    spec = resolve_spec(args.backbone)
    precheck(spec, args, programs)
    options = backbone_options(args)
    zigzag_table(args)  # a malformed ramp is refused before the models load
    return spec, options, spec.load(**options)


def summary(video) -> str:
    """One line about a generated video: cost, time and the backbone's metrics."""
    cost = video.cost
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (video.metrics or {}).items() if isinstance(v, (int, float)))
    return (
        f"cost {cost['idm_image_evals']} IDM image evals, {cost['vdm_clip_evals']} VDM clip evals"
        f" | {video.timings['total_s']:.2f}s" + (f" | {metrics}" if metrics else "")
    )


def parse_programs(text: str) -> list[Program]:
    """A comma-separated list of programs (program text itself never contains a comma)."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"--programs {text!r}: empty item in the comma-separated list")
    return [parse(item) for item in items]
