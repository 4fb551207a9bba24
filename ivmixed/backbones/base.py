"""What every backbone provides, and the one generation routine built on top of it.

A backbone bundles two score models (``idm`` and ``vdm``, see :mod:`ivmixed.guidance`), prompt encoding,
the standard-step scheduler of its VDM, latent initialisation, decoding and defaults. Sampling itself
is :func:`ivmixed.sampler.run_program`; :meth:`Backbone.generate` only prepares its inputs and packs the
result, so every backbone behaves the same way from the CLI, the Python API and the notebooks.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from ..checks import check_request
from ..guidance import ScoreModel, skips_unconditional
from ..program import Program, check_substeps, parse
from ..registry import Defaults, Preset
from ..schedules import GuidanceTable
from ..steps import NoiseSchedule

__all__ = ["Backbone", "Conditioning", "Defaults", "Preset", "Video", "IncompatibleModels", "check_same_latent_space"]


class IncompatibleModels(ValueError):
    """The IDM and the VDM cannot be mixed: different latent spaces or different noise tables."""


@dataclass
class Conditioning:
    """Prompt conditioning prepared for the doubled CFG batch ``[uncond; cond]`` of each model.

    ``idm`` and ``vdm`` are whatever the backbone's score models accept as ``cond``; ``prompts`` and
    ``negative_prompts`` list one entry per generated video.
    """

    idm: Any
    vdm: Any
    prompts: list[str]
    negative_prompts: list[str]


class Backbone(abc.ABC):
    """Base class of every backbone. Subclasses set :attr:`name`, :attr:`defaults`, :attr:`idm`, :attr:`vdm`."""

    name: str = "?"
    defaults: Defaults
    idm: ScoreModel
    vdm: ScoreModel
    #: spatial down-sampling factor of the latent space (8 for the SD VAE, 1 in pixel space)
    vae_scale_factor: int = 8
    #: run the standard step on latents folded to (B·F, C, H, W), as diffusers' TextToVideoSDPipeline does
    standard_step_on_frames: bool = False

    # -- what a backbone implements -------------------------------------------------------------------

    @abc.abstractmethod
    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        """Encode one prompt and one negative prompt per video into the conditioning of both models."""

    @abc.abstractmethod
    def make_scheduler(self):
        """A fresh diffusers scheduler for the VDM's standard step (its state is private to one run)."""

    @abc.abstractmethod
    def initial_latents(self, batch: int, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """Initial noise ``(batch, C, frames, h, w)``, drawn exactly as the matching diffusers pipeline draws it."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> frames ``(B, F, H, W, 3)``, float32 in [0, 1], on the CPU."""

    def zigzag_schedule(self) -> NoiseSchedule:
        """The ᾱ table the zigzag sub-steps walk on (by default the standard scheduler's)."""
        return NoiseSchedule.from_scheduler(self.make_scheduler())

    def check_request(self, *, frames: int, height: int, width: int, steps: int) -> None:
        """Raise ``ValueError`` for a request the models cannot serve, before any work starts."""
        check_request(frames=frames, height=height, width=width, steps=steps, size_multiple=self.vae_scale_factor, backbone=self.name)
        num_train_timesteps = self.zigzag_schedule().num_train_timesteps
        if steps > num_train_timesteps:
            raise ValueError(f"--steps {steps} is more than the {num_train_timesteps} timesteps backbone '{self.name}' was trained on")

    def metrics(self, latents: torch.Tensor, conditioning: Conditioning) -> dict[str, float] | None:
        """Quality measures of finished latents, for backbones that can measure them exactly (the toy world)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What goes into the manifest about this backbone: model ids or paths, dtype, device."""
        return {"backbone": self.name}

    # -- the one generation routine -------------------------------------------------------------------

    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        program: str | Program | None = None,
        preset: str | None = None,
        seed: int | None = 0,
        steps: int | None = None,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        guidance: float | None = None,
        zigzag: GuidanceTable | float | None = None,
        substeps: str = "delta",
        negative_prompt: str | Sequence[str] | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        callback: Callable[[Any], None] | None = None,
        progress: bool = True,
        decode: bool = True,
    ) -> "Video":
        """Generate videos for one prompt or a list of prompts with a sampling program.

        Args:
            prompt: one prompt or a list (one batch row each).
            program: program text or a :class:`~ivmixed.program.Program` (default: the backbone's recommendation).
            preset: a named preset of the backbone (e.g. ``"reference"``); explicit arguments win over it.
            seed: seeds ``torch.Generator("cpu")`` for the initial latents and any R sub-step, exactly as a
                diffusers pipeline called with ``generator=torch.Generator("cpu").manual_seed(seed)``.
            steps, frames, height, width: sampling steps and video size (default: the backbone's).
            guidance: ω of the standard step.
            zigzag: guidance of the zigzag sub-steps, a :class:`~ivmixed.schedules.GuidanceTable` or one number for all four.
            substeps: ``"delta"`` (sub-steps of Δ = T // N) or ``"grid"`` (to the neighbouring grid timesteps), see
                :func:`~ivmixed.sampler.run_program`.
            negative_prompt: one negative prompt for all, or one per prompt.
            num_videos_per_prompt: videos per prompt; all are drawn from the one generator.
            generator: use this generator instead of ``seed``.
            latents: start from these initial latents instead of drawing them.
            callback: receives every :class:`~ivmixed.sampler.SubStepEvent`.
            progress: show a tqdm bar over the sampling steps.
            decode: decode the latents to frames (``Video.frames`` is None otherwise).
        """
        from ..sampler import run_program

        d = self.defaults
        if preset is not None:
            if preset not in d.presets:
                known = ", ".join(sorted(d.presets)) or "none"
                raise ValueError(f"backbone '{self.name}' has no preset '{preset}'; its presets: {known}")
            chosen = d.presets[preset]
            program = chosen.program if program is None else program
            guidance = chosen.guidance if guidance is None else guidance
            zigzag = chosen.zigzag_table() if zigzag is None else zigzag
        prog = parse(program) if isinstance(program, str) else (program or parse(d.program))
        steps = d.steps if steps is None else steps
        frames = d.frames if frames is None else frames
        height = d.height if height is None else height
        width = d.width if width is None else width
        guidance = d.guidance if guidance is None else guidance
        if zigzag is None:
            zigzag = GuidanceTable()
        elif not isinstance(zigzag, GuidanceTable):
            zigzag = GuidanceTable.uniform(zigzag)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")
        if negative_prompt is None:
            negatives = [""] * len(prompts)
        elif isinstance(negative_prompt, str):
            negatives = [negative_prompt] * len(prompts)
        else:
            negatives = list(negative_prompt)
            if len(negatives) != len(prompts):
                raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts; give one or one per prompt")
        self.check_request(frames=frames, height=height, width=width, steps=steps)
        check_request(guidance=guidance)
        prog.validate(steps)
        check_substeps(substeps)

        # diffusers' order: each prompt repeated num_videos_per_prompt times, consecutively
        prompts = [p for p in prompts for _ in range(num_videos_per_prompt)]
        negatives = [n for n in negatives for _ in range(num_videos_per_prompt)]
        if generator is None:
            generator = torch.Generator("cpu")
            if seed is not None:
                generator.manual_seed(seed)
            else:
                seed = generator.seed()

        started = time.perf_counter()
        conditioning = self.encode(prompts, negatives)
        if latents is None:
            latents = self.initial_latents(len(prompts), frames, height, width, generator)
        encoded = time.perf_counter()
        out = run_program(
            prog,
            idm=self.idm,
            vdm=self.vdm,
            scheduler=self.make_scheduler(),
            latents=latents,
            idm_cond=conditioning.idm,
            vdm_cond=conditioning.vdm,
            num_steps=steps,
            guidance=guidance,
            zigzag=zigzag,
            generator=generator,
            zigzag_schedule=self.zigzag_schedule(),
            substeps=substeps,
            standard_step_on_frames=self.standard_step_on_frames,
            callback=callback,
            progress=progress,
        )
        sampled = time.perf_counter()
        video_frames = self.decode(out).numpy() if decode else None
        done = time.perf_counter()
        return Video(
            frames=video_frames,
            latents=out,
            program=prog,
            seed=seed,
            prompts=prompts,
            negative_prompts=negatives,
            settings={
                "steps": steps,
                "frames": frames,
                "height": height,
                "width": width,
                "guidance": guidance,
                "zigzag_guidance": zigzag.as_dict(),
                "substeps": substeps,
                "num_videos_per_prompt": num_videos_per_prompt,
                "preset": preset,
            },
            cost=prog.cost(num_steps=steps, num_frames=frames, guided_standard_step=not skips_unconditional(guidance, conditioning.vdm)).as_dict(),
            metrics=self.metrics(out, conditioning),
            timings={
                "encode_s": round(encoded - started, 4),
                "sample_s": round(sampled - encoded, 4),
                "decode_s": round(done - sampled, 4),
                "total_s": round(done - started, 4),
            },
            backbone=self.describe(),
            fps=d.fps,
        )


@dataclass
class Video:
    """What :meth:`Backbone.generate` returns: frames, latents and everything needed to reproduce them."""

    frames: Any  # numpy (B, F, H, W, 3) float32 in [0, 1], or None
    latents: torch.Tensor
    program: Program
    seed: int | None
    prompts: list[str]
    negative_prompts: list[str]
    settings: dict[str, Any]
    cost: dict[str, int]  # per generated video
    metrics: dict[str, float] | None
    timings: dict[str, float]
    backbone: dict[str, Any]
    fps: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """A JSON-ready record of the run (program, seed, settings, models, versions, cost, timings, metrics)."""
        from ..io import package_versions

        return {
            "program": str(self.program),
            "seed": self.seed,
            "prompts": self.prompts,
            "negative_prompts": self.negative_prompts,
            **self.backbone,
            "settings": self.settings,
            "cost": self.cost,
            "timings": self.timings,
            "metrics": self.metrics,
            "versions": package_versions(),
            **self.extra,
        }

    def save(self, path, *, manifest: bool = True) -> dict[str, Any]:
        """Write the frames to ``path`` (``.mp4``, ``.gif`` or ``.npy``) and the manifest to ``path + '.json'``.

        With several videos (prompts × videos per prompt) they are written side by side in one file, except
        ``.npy``, which keeps the batch axis only when there is more than one video.
        """
        from ..io import save_with_manifest

        if self.frames is None:
            raise ValueError("this Video was generated with decode=False; there are no frames to save")
        record = self.manifest()
        record["output"] = str(path)
        save_with_manifest(self.frames, path, record if manifest else None, fps=self.fps)
        return record

    def with_extra(self, **extra) -> "Video":
        return replace(self, extra={**self.extra, **extra})


def check_same_latent_space(
    *,
    idm_channels: int,
    vdm_channels: int,
    idm_scaling: float | None,
    vdm_scaling: float | None,
    idm_schedule: NoiseSchedule,
    vdm_schedule: NoiseSchedule,
    idm_name: str = "image model",
    vdm_name: str = "video model",
) -> None:
    """Refuse an IDM/VDM pair that does not share latent channels, VAE scaling and ᾱ table; say which differs."""
    if idm_channels != vdm_channels:
        raise IncompatibleModels(
            f"the {idm_name} works on {idm_channels}-channel latents but the {vdm_name} on {vdm_channels}; "
            "IV-mixed sampling needs one latent space (the same VAE family). Choose an image model of the video model's family."
        )
    if idm_scaling is not None and vdm_scaling is not None and abs(idm_scaling - vdm_scaling) > 1e-6:
        raise IncompatibleModels(
            f"the {idm_name}'s VAE scaling factor {idm_scaling} differs from the {vdm_name}'s {vdm_scaling}; "
            "IV-mixed sampling needs one latent space."
        )
    if not idm_schedule.same_as(vdm_schedule):
        a, b = idm_schedule.alphas_cumprod, vdm_schedule.alphas_cumprod
        where = "length" if a.shape != b.shape else f"largest gap {float((a - b).abs().max()):.3g}"
        raise IncompatibleModels(
            f"the {idm_name} and the {vdm_name} have different noise tables ᾱ_t ({where}; T = {a.shape[0]} vs {b.shape[0]}); "
            "the zigzag needs one schedule. Check the scheduler configs (beta_start, beta_end, beta_schedule)."
        )
