"""An image model for a flow-matching video model (experimental): Qwen-Image beside Wan 2.1.

An IDM must share the VDM's latent space. Qwen-Image's VAE is of the Wan 2.1 family: 16 channels, 8× in space
and the same per-channel latent normalisation (``latents_mean`` / ``latents_std``), and both models are rectified
flows on x = (1 − σ)·x0 + σ·ε with T = 1000. :meth:`QwenImageModel.check` verifies all of that from the configs,
before any weight loads, and names what differs.

What the image model sees: Wan's VAE packs 4 video frames into every latent frame after the first, so the IDM
is run on each *latent* frame as one image — the first latent frame is one video frame, every later one encodes
four. Whether an image prior helps on such compressed frames is an open question; the toy world can model the
compression to measure it before spending GPU time.

The transformer is called as ``QwenImagePipeline`` calls it (2×2-packed latents, timestep σ, text embeddings with
their mask); guidance is ivmixed's one CFG wrapper (Qwen-Image's pipeline additionally rescales the guided
prediction to the conditional one's norm, which the zigzag does not do).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..guidance import ImageOnVideo
from .diffusers import Location, explain_load_error, load_kwargs, require_json
from .base import IncompatibleModels

__all__ = ["QwenImageModel", "QwenImageScore", "check_latent_normalisation"]

logger = logging.getLogger(__name__)


def check_latent_normalisation(idm_vae: dict[str, Any], vdm_vae: dict[str, Any], *, idm_name: str, vdm_name: str, atol: float = 1e-4) -> None:
    """Refuse two VAEs whose latents are not normalised the same way: channels (``z_dim``), ``latents_mean`` and
    ``latents_std`` (the per-channel statistics both pipelines divide by before sampling)."""
    idm_channels, vdm_channels = idm_vae.get("z_dim"), vdm_vae.get("z_dim")
    if idm_channels != vdm_channels:
        raise IncompatibleModels(
            f"the {idm_name}'s VAE has {idm_channels} latent channels but the {vdm_name}'s {vdm_channels}; "
            "IV-mixed sampling needs one latent space (the Wan 2.1 VAE family)"
        )
    for key in ("latents_mean", "latents_std"):
        a, b = idm_vae.get(key), vdm_vae.get(key)
        if a is None or b is None:
            raise IncompatibleModels(f"the {idm_name if a is None else vdm_name}'s VAE config has no {key}; cannot check the latent normalisation")
        gaps = [abs(float(x) - float(y)) for x, y in zip(a, b)]
        if len(a) != len(b) or max(gaps) > atol:
            where = "length" if len(a) != len(b) else f"channel {gaps.index(max(gaps))} differs by {max(gaps):.3g}"
            raise IncompatibleModels(
                f"the {idm_name} and the {vdm_name} normalise latents differently ({key}: {where}); "
                "IV-mixed sampling needs one latent space. Choose an image model with a Wan 2.1-family VAE (Qwen-Image)."
            )


class QwenImageScore:
    """A Qwen-Image transformer as an image score model ``v(images, t, cond)`` on latents ``(N, 16, h, w)``.

    ``t`` is the network timestep σ·T of the zigzag (Wan's convention); Qwen-Image takes σ itself. ``cond`` is
    ``(embeddings (R, L, D), mask (R, L) or None)`` for the R rows of the doubled CFG batch; each row is repeated
    for the latent frames of its clip. Returns the flow velocity in the latent layout.
    """

    prediction_type = "flow_prediction"

    def __init__(self, transformer, num_train_timesteps: int = 1000):
        self.transformer = transformer
        self.num_train_timesteps = num_train_timesteps

    def __call__(self, images: torch.Tensor, t, cond) -> torch.Tensor:
        from diffusers import QwenImagePipeline

        embeds, mask = cond
        n, c, h, w = images.shape
        if n % embeds.shape[0]:
            raise ValueError(f"cannot pair {embeds.shape[0]} text embeddings with {n} latent frames")
        reps = n // embeds.shape[0]
        if reps > 1:
            embeds = embeds.repeat_interleave(reps, dim=0)
            mask = None if mask is None else mask.repeat_interleave(reps, dim=0)
        packed = QwenImagePipeline._pack_latents(images, n, c, h, w)
        sigma = torch.full((n,), float(t) / self.num_train_timesteps, device=images.device, dtype=torch.float32)
        with torch.no_grad():
            out = self.transformer(
                hidden_states=packed.to(self.transformer.dtype),
                timestep=sigma.to(self.transformer.dtype),
                encoder_hidden_states=embeds,
                encoder_hidden_states_mask=mask,
                img_shapes=[[(1, h // 2, w // 2)]] * n,
                return_dict=False,
            )[0]
        # _unpack_latents takes pixel sizes: with vae_scale_factor 1 they are the latent sizes
        return QwenImagePipeline._unpack_latents(out, h, w, 1)[:, :, 0]


class QwenImageModel:
    """The Qwen-Image components used as an IDM: transformer, text encoder and tokenizer (its VAE is not loaded)."""

    def __init__(self, location: Location, num_train_timesteps: int):
        self.location = location
        self.num_train_timesteps = num_train_timesteps
        self.pipe = None

    @classmethod
    def check(cls, location: Location, vdm_vae: dict[str, Any], latent_channels: int, *, vdm_name: str = "video model") -> "QwenImageModel":
        """Read the image model's configs (no weights) and refuse it unless it shares the video model's latent space."""
        name = f"image model {location.source}"
        index = require_json(location, "model_index.json")
        transformer = require_json(location, "transformer/config.json")
        scheduler = require_json(location, "scheduler/scheduler_config.json")
        vae = require_json(location, "vae/config.json")
        if index.get("_class_name") != "QwenImagePipeline":
            raise IncompatibleModels(
                f"the {name} is a {index.get('_class_name')}, not a QwenImagePipeline; the wan backbone's image model "
                "must share Wan's latent space (Qwen-Image's VAE is of the Wan 2.1 family)"
            )
        if not str(scheduler.get("_class_name", "")).startswith("FlowMatch"):
            raise IncompatibleModels(f"the {name}'s scheduler ({scheduler.get('_class_name')}) is not flow matching")
        if int(transformer.get("in_channels", 0)) != 4 * latent_channels or int(transformer.get("out_channels") or latent_channels) != latent_channels:
            raise IncompatibleModels(
                f"the {name}'s transformer takes {transformer.get('in_channels')} packed channels; a {latent_channels}-channel "
                f"latent packed 2×2 has {4 * latent_channels}"
            )
        check_latent_normalisation(vae, vdm_vae, idm_name=name, vdm_name=vdm_name)
        return cls(location, int(scheduler.get("num_train_timesteps", 1000)))

    def load(self, dtype: torch.dtype, *, allow_pickle: bool, variant: str | None, device: torch.device, offload: str = "none") -> None:
        from diffusers import QwenImagePipeline

        logger.info("loading image_model=%s on %s (offload: %s)", self.location.describe(), device, offload)
        try:
            pipe = QwenImagePipeline.from_pretrained(self.location.path, vae=None, **load_kwargs(dtype, allow_pickle=allow_pickle, variant=variant))
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, self.location, allow_pickle=allow_pickle) from exc
        pipe.set_progress_bar_config(disable=True)
        for module in (pipe.transformer, pipe.text_encoder):
            module.eval()
        if offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "group":
            pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
        else:
            pipe.to(device)
        self.pipe, self.device = pipe, device

    def encode(self, prompts: list[str], negative_prompts: list[str]):
        """``(embeddings, mask)`` of the doubled batch ``[uncond; cond]``, padded to one length (mask None when all valid)."""
        cond, cond_mask = self.pipe.encode_prompt(list(prompts), device=self.device)
        uncond, uncond_mask = self.pipe.encode_prompt(list(negative_prompts), device=self.device)

        def padded(embeds, mask, length):
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device) if mask is None else mask
            extra = length - embeds.shape[1]
            return torch.nn.functional.pad(embeds, (0, 0, 0, extra)), torch.nn.functional.pad(mask, (0, extra))

        length = max(cond.shape[1], uncond.shape[1])
        (u, um), (c, cm) = padded(uncond, uncond_mask, length), padded(cond, cond_mask, length)
        mask = torch.cat([um, cm])
        return torch.cat([u, c]), (None if bool(mask.all()) else mask)

    def score_model(self) -> ImageOnVideo:
        return ImageOnVideo(QwenImageScore(self.pipe.transformer, self.num_train_timesteps))
