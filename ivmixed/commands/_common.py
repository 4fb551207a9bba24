"""Arguments and checks shared by the sub-commands that load a backbone (generate, sweep, batch, compare)."""

from __future__ import annotations

import argparse
import ast
import math
import os
from typing import Any

from ..checks import check_request
from ..errors import quoted
from ..program import SUBSTEP_SIZES, InvalidProgram, Program, parse
from ..registry import BackboneSpec, UnknownBackbone, get_spec
from ..schedules import Ramp

#: errors that mean "the request was wrong" (exit status 2), not "something broke while running"
UsageError = (ValueError, UnknownBackbone, ImportError, FileNotFoundError, InvalidProgram)

DEFAULT_BACKBONE = "toy"
#: file paths are quoted whole up to this length (other inputs are shortened sooner, see ivmixed.errors.quoted)
PATH_LIMIT = 1000


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
    g.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="any other backbone option (repeatable); `ivmixed list --options BACKBONE` lists them with their ranges",
    )


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
    add_substeps_argument(g)
    g.add_argument("--negative-prompt", help="negative prompt for every video")
    g.add_argument("--num-videos", type=int, default=1, help="videos per prompt (default: 1)")
    z = p.add_argument_group(
        "zigzag guidance",
        "Scales γ of the zigzag sub-steps, each a RAMP over the steps: 4, constant(4), linear(6,2), karras(6,2[,7]) "
        "(step 0 is the noisiest). Go sub-steps (denoising) use +γ_go; back sub-steps (inversion) use −γ_back, "
        "ε_u − γ_back·(ε_c − ε_u), as the released code does. A more specific option overrides a broader one: "
        "--i-go-guidance > --i-guidance > --zigzag-guidance. Default: 4 for all four.",
    )
    z.add_argument("--zigzag-guidance", metavar="RAMP", help="all four ramps (image/video × go/back)")
    z.add_argument("--i-guidance", metavar="RAMP", help="both ramps of the image-model sub-steps")
    z.add_argument("--v-guidance", metavar="RAMP", help="both ramps of the video-model sub-steps")
    for model, who in (("i", "image"), ("v", "video")):
        for direction, what in (("go", "denoise"), ("back", "inversion")):
            z.add_argument(f"--{model}-{direction}-guidance", metavar="RAMP", help=f"the {who}-model {what} ({direction}) ramp")
    z.add_argument(
        "--back-sign", choices=["-", "+"], default="-",
        help="sign of the back (inversion) sub-steps' guidance: - (default, ε_u − γ_back·(ε_c − ε_u)) "
        "or + (ε_u + γ_back·(ε_c − ε_u), the flipped-sign experiment)",
    )


def add_substeps_argument(g) -> None:
    """``--substeps {delta,grid}``: the sub-step size of the zigzags (argparse refuses any other value)."""
    g.add_argument(
        "--substeps", choices=SUBSTEP_SIZES, default="delta",
        help="how far each zigzag sub-step moves: delta (default), T // N whatever the grid; grid, to the "
        "neighbouring timestep of the standard scheduler's grid (for few-step grids such as 999, 749, 499, 249)",
    )


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace an existing output file and its manifest (default: refuse them); a symbolic link there is replaced, its target untouched",
    )


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options to pass to the backbone factory: only what the user gave."""
    options: dict[str, Any] = {}
    for key in ("model", "image_model", "image_latent_size", "device", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    if getattr(args, "image_lora", None):
        options["image_loras"] = [check_lora(item) for item in args.image_lora]
    if getattr(args, "allow_pickle", False):
        options["allow_pickle"] = True
    for item in getattr(args, "option", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {quoted(item)}: expected KEY=VALUE, e.g. -o spread=0.08")
        options[key.strip().replace("-", "_")] = _literal(value.strip())
    return options


def check_lora(item: str) -> str:
    """Refuse ``--image-lora FILE:SCALE`` whose scale is not a finite number (before anything loads); return ``item``."""
    head, sep, tail = item.rpartition(":")
    if not sep or not head or os.path.exists(item) or "/" in tail or "\\" in tail:
        return item  # no scale given (or the colon is part of the path)
    try:
        scale = float(tail)
    except ValueError:
        raise ValueError(
            f"--image-lora {quoted(item, PATH_LIMIT)}: bad scale {quoted(tail)}; "
            "expected FILE or FILE:SCALE with a number, e.g. style.safetensors:0.8"
        ) from None
    if not math.isfinite(scale):
        raise ValueError(f"--image-lora {quoted(item, PATH_LIMIT)}: the scale must be a finite number, got {tail}")
    return item


class FlippedRamp(Ramp):
    """A guidance ramp with every value negated: back sub-steps that invert with +γ instead of −γ (``--back-sign +``)."""

    def build(self, n: int) -> list[float]:
        return [-g for g in super().build(n)]

    def __str__(self) -> str:
        return f"-{super().__str__()}"


def zigzag_table(args: argparse.Namespace, preset_table=None):
    """A GuidanceTable from the zigzag guidance options, or None for the default (4 everywhere, back with −γ).

    ``preset_table``: the ramps of the chosen ``--preset``, which ``--back-sign +`` without ramp options flips
    (instead of replacing them with the default 4).
    """
    from ..schedules import GuidanceTable

    names = ("zigzag_guidance", "i_guidance", "v_guidance", "i_go_guidance", "i_back_guidance", "v_go_guidance", "v_back_guidance")
    given = {name: getattr(args, name, None) for name in names}
    sign = getattr(args, "back_sign", "-") or "-"
    if not any(given.values()) and sign == "-":
        return None
    if not any(given.values()) and preset_table is not None:  # the preset's own ramps, inversions with +γ
        from dataclasses import replace

        return replace(
            preset_table,
            i_back=FlippedRamp(preset_table.i_back.kind, preset_table.i_back.params),
            v_back=FlippedRamp(preset_table.v_back.kind, preset_table.v_back.params),
        )

    def ramp(*names_in_order: str) -> Ramp:
        for name in names_in_order:
            if given[name] is not None:
                try:
                    return Ramp.parse(given[name])
                except ValueError as exc:
                    raise ValueError(f"--{name.replace('_', '-')}: {exc}") from None
        return Ramp("constant", (4.0,))

    table = {
        f"{m}_{d}": ramp(f"{m}_{d}_guidance", f"{m}_guidance", "zigzag_guidance") for m in ("i", "v") for d in ("go", "back")
    }
    if sign == "+":
        for key in ("i_back", "v_back"):
            table[key] = FlippedRamp(table[key].kind, table[key].params)
    return GuidanceTable(**table)


def precheck(spec: BackboneSpec, args: argparse.Namespace, programs: list[Program], *, prompts: list[str] | None = None) -> None:
    """Checks that need no model: options, sizes, frames, steps, preset, guidance, prompts, and the programs against the steps."""
    options = spec.check_options(backbone_options(args))
    check_request(
        frames=getattr(args, "frames", None),
        height=getattr(args, "height", None),
        width=getattr(args, "width", None),
        steps=getattr(args, "steps", None),
        guidance=getattr(args, "guidance", None),
        size_multiple=spec.size_multiple,
        backbone=spec.name,
    )
    spec.check_steps(getattr(args, "steps", None))
    for name in ("frames", "height", "width"):  # a backbone that declares the size options bounds the flags too
        value, declared = getattr(args, name, None), spec.option(name)
        if value is not None and declared is not None:
            try:
                declared.check(value)
            except ValueError:
                raise ValueError(f"--{name} {value}: backbone '{spec.name}' takes {declared.describe()}") from None
    spec.check_preset(getattr(args, "preset", None))
    zigzag_table(args)  # a malformed ramp is refused before the models load
    steps = getattr(args, "steps", None) or spec.default_steps_for(options)  # a distilled model's own step count
    for program in programs:
        program.validate(steps)
    if getattr(args, "num_videos", 1) < 1:
        raise ValueError(f"--num-videos must be >= 1, got {args.num_videos}")
    for prompt in prompts or ():
        spec.check_prompt(prompt)
    negative = getattr(args, "negative_prompt", None)
    if negative:
        spec.check_prompt(negative)


def resolve_spec(name: str) -> BackboneSpec:
    return get_spec(name)


def sampling_kwargs(args: argparse.Namespace, spec: BackboneSpec | None = None) -> dict[str, Any]:
    """The keyword arguments of ``Backbone.generate`` that the sampling options give (None: the backbone's default).

    ``spec``: the backbone's, whose ``--preset`` ramps ``--back-sign +`` flips.
    """
    preset = getattr(args, "preset", None)
    defaults = getattr(spec, "defaults", None)
    preset_table = defaults.presets[preset].zigzag_table() if preset and defaults is not None and preset in defaults.presets else None
    return {
        "steps": args.steps,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "guidance": args.guidance,
        "zigzag": zigzag_table(args, preset_table),
        "substeps": getattr(args, "substeps", "delta"),
        "negative_prompt": args.negative_prompt,
    }


def load_checked(args: argparse.Namespace, programs: list[Program], *, prompts: list[str] | None = None):
    """Check everything that needs no model (backbone name, options, sizes, steps, programs, prompts), then load the backbone once."""
    spec = resolve_spec(args.backbone)
    precheck(spec, args, programs, prompts=prompts)
    options = spec.check_options(backbone_options(args))
    return spec, options, spec.load(**options)


def summary(video) -> str:
    """One line about a generated video: cost, time and the backbone's metrics."""
    cost = video.cost
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (video.metrics or {}).items() if isinstance(v, (int, float)))
    return (
        f"cost {cost['idm_image_evals']} IDM image evals, {cost['vdm_clip_evals']} VDM clip evals"
        f" | {video.timings['total_s']:.2f}s" + (f" | {metrics}" if metrics else "")
    )


def parse_programs(text: str, *, unique: bool = False) -> list[Program]:
    """A comma-separated list of programs (program text itself never contains a comma).

    With ``unique``, a program listed twice (the same canonical text, e.g. ``IV-IV`` and ``IV-IV:df``) is refused.
    """
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"--programs {quoted(text)}: empty item in the comma-separated list")
    programs = [parse(item) for item in items]
    if unique:
        seen: dict[Program, str] = {}
        for item, program in zip(items, programs):
            if program in seen:
                twice = f"{quoted(item)} is listed twice" if seen[program] == item else (
                    f"{quoted(seen[program])} and {quoted(item)} are the same program ({program})"
                )
                raise ValueError(f"--programs: {twice}; give each program once")
            seen[program] = item
    return programs


def parse_program(text: str | None) -> Program | None:
    """``--program TEXT``: None when not given; an empty or blank text is an error, not the default."""
    if text is None:
        return None
    if not text.strip():
        raise ValueError("--program is empty; give a program such as IV-IV or origin, or leave --program out for the backbone's default")
    return parse(text)
