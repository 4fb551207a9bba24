"""The latent space of a diffusers backbone: the IDM/VDM pair check (configs only) and decoding to frames."""

from __future__ import annotations

from typing import Any

import torch

from ...steps import fold_frames, unfold_frames
from ..base import IncompatibleModels, check_same_latent_space
from .schedulers import schedule_from_config

__all__ = ["check_pair", "decode_video"]


def check_pair(
    *,
    idm_unet: dict[str, Any],
    vdm_unet: dict[str, Any],
    vdm_scheduler: dict[str, Any],
    idm_scheduler: dict[str, Any] | None,
    vdm_vae: dict[str, Any] | None = None,
    idm_vae: dict[str, Any] | None = None,
    idm_text_dim: int | None = None,
    idm_name: str = "image model",
    vdm_name: str = "video model",
) -> None:
    """Refuse an IDM/VDM pair that cannot be mixed, from their configs alone (before any weight loads).

    Checks latent channels, VAE scaling factor and ᾱ table (:func:`~ivmixed.backbones.base.check_same_latent_space`),
    and, when the IDM is conditioned on embeddings of another model's text encoder, the embedding width.
    """
    check_same_latent_space(
        idm_channels=int(idm_unet["in_channels"]),
        vdm_channels=int(vdm_unet["in_channels"]),
        idm_scaling=None if idm_vae is None else float(idm_vae.get("scaling_factor", 0.18215)),
        vdm_scaling=None if vdm_vae is None else float(vdm_vae.get("scaling_factor", 0.18215)),
        idm_schedule=schedule_from_config(idm_scheduler if idm_scheduler is not None else vdm_scheduler),
        vdm_schedule=schedule_from_config(vdm_scheduler),
        idm_name=idm_name,
        vdm_name=vdm_name,
    )
    width = idm_unet.get("cross_attention_dim")
    if idm_text_dim is not None and width is not None and int(width) != int(idm_text_dim):
        raise IncompatibleModels(
            f"the {idm_name} expects {width}-wide text embeddings but gets {idm_text_dim}-wide ones from the "
            f"{vdm_name}'s text encoder; choose an image model of the same family (SD1.5 with SD1.5)"
        )


def decode_video(vae, latents: torch.Tensor, *, chunk_size: int = 16) -> torch.Tensor:
    """Latents ``(B, C, F, h, w)`` -> frames ``(B, F, H, W, 3)`` float32 in [0, 1] on the CPU, decoding ``chunk_size`` frames at a time.

    The same arithmetic as ``AnimateDiffPipeline.decode_latents`` followed by diffusers' ``VideoProcessor``
    post-processing with ``output_type="np"``.
    """
    from diffusers.video_processor import VideoProcessor

    batch, _, frames = latents.shape[:3]
    images = fold_frames(1 / vae.config.scaling_factor * latents).to(vae.dtype)
    with torch.no_grad():
        decoded = torch.cat([vae.decode(images[i : i + chunk_size]).sample for i in range(0, images.shape[0], max(1, chunk_size))])
    video = unfold_frames(decoded, frames).float()  # (B, 3, F, H, W)
    frames_pt = VideoProcessor(do_resize=False).postprocess_video(video, output_type="pt")  # (B, F, 3, H, W)
    return frames_pt.permute(0, 1, 3, 4, 2).contiguous().cpu().float()
