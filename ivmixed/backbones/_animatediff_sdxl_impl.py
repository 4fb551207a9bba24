"""The ``animatediff-sdxl`` backbone: AnimateDiff SDXL (SDXL base + SDXL motion adapter) as the VDM, an SDXL UNet as the IDM.

Built on the kit's template (:class:`~ivmixed.backbones.diffusers.DiffusersBackbone`), like ``animatediff``: find
every model, check the pair from configs, choose the weight files, load. What SDXL adds, and where it lives here:

- **two text encoders** — :func:`encode_sdxl_prompt_pair`: the penultimate hidden states of CLIP-L and
  OpenCLIP-bigG side by side (768 + 1280 = 2048 wide in SDXL), and the second encoder's projected pooled
  embedding, for the doubled CFG batch ``[uncond; cond]``, as ``AnimateDiffSDXLPipeline.encode_prompt`` computes
  them. An empty negative prompt gives zero embeddings when the base says ``force_zeros_for_empty_prompt`` (SDXL's
  convention for "no negative prompt").
- **size conditioning** — the six ``time_ids`` (original size, crop top-left, target size) and the pooled embedding
  enter every UNet call as ``added_cond_kwargs`` of the kit's :class:`~ivmixed.backbones.diffusers.UNetCond`;
  :class:`SDXLUNetScore` builds the ids from the latent size (the video size, as the stock pipeline does by
  default) unless fixed sizes are given, and lays the rows out per image or per clip.
- **the pair check** — :func:`check_sdxl_models`: both UNets must be SDXL (``addition_embed_type="text_time"``),
  read the base's 2048-wide text embeddings and its pooled width, and the motion adapter must have the base's
  blocks; the template then checks latent channels, VAE scaling and the ᾱ table — all from configs, before any
  weight loads.
- **the motion UNet** — :func:`motion_unet_from` keeps the base's added embedding, which diffusers' conversion drops.
- **decoding** — SDXL's VAE overflows in fp16 (its config says ``force_upcast``): :func:`decode_sdxl_video`
  decodes in float32, as ``StableDiffusionXLPipeline`` does.

The IDM reads the video model's text embeddings and pooled embedding (both encoders of the base), and its latents
are decoded by the video model's VAE; only the IDM's UNet is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..guidance import ImageOnVideo, ScoreModel
from ..steps import fold_frames, unfold_frames
from .animatediff_sdxl import DEFAULT_IMAGE_MODEL, DEFAULT_MODEL, DEFAULT_MOTION_ADAPTER, DEFAULTS, SPEC
from .base import Conditioning, IncompatibleModels
from ._animatediff_impl import AnimateDiffBackbone
from .diffusers import PairConfigs, UNetCond, UNetScore, require_json, to_eps

__all__ = [
    "AnimateDiffSDXLBackbone",
    "DEFAULTS",
    "SDXLText",
    "SizeConditioning",
    "SDXLUNetScore",
    "encode_sdxl_prompt_pair",
    "check_sdxl_models",
    "decode_sdxl_video",
    "motion_unet_from",
    "size_pair",
]


# -- conditioning ---------------------------------------------------------------------------------------------


def size_pair(height: int | None, width: int | None, what: str) -> tuple[int, int] | None:
    """``(height, width)`` of one SDXL size conditioning, None when neither is given; both or neither."""
    if height is None and width is None:
        return None
    if height is None or width is None:
        given, missing = ("height", "width") if width is None else ("width", "height")
        raise ValueError(f"option {what}_{given} is given without {what}_{missing}: give both (or neither, for the video size)")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"option {what}_{name}={value!r}: expected a positive integer (pixels)")
    return int(height), int(width)


@dataclass(frozen=True)
class SizeConditioning:
    """SDXL's micro-conditioning: ``time_ids = (*original_size, *crop_top_left, *target_size)``.

    ``original_size`` / ``target_size`` None mean the size of the image being generated (``AnimateDiffSDXLPipeline``'s
    default: ``(height, width)``).
    """

    original_size: tuple[int, int] | None = None
    crop_top_left: tuple[int, int] = (0, 0)
    target_size: tuple[int, int] | None = None

    def time_ids(self, height: int, width: int) -> list[int]:
        return [*(self.original_size or (height, width)), *self.crop_top_left, *(self.target_size or (height, width))]


@dataclass(frozen=True)
class SDXLText:
    """Prompt conditioning of an SDXL UNet for the doubled batch ``[uncond; cond]`` (one row per clip).

    ``embeds``: ``(2B, L, D1 + D2)`` the two encoders' penultimate hidden states side by side; ``pooled``:
    ``(2B, P)`` the second encoder's projected pooled embedding (``added_cond_kwargs["text_embeds"]``).
    """

    embeds: torch.Tensor
    pooled: torch.Tensor

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def conditional_half(self) -> "SDXLText":
        """The conditional rows (ω = 1 skips the unconditional pass)."""
        rows = len(self) // 2
        return SDXLText(embeds=self.embeds[rows:], pooled=self.pooled[rows:])


def _encode_sdxl_texts(tokenizers, text_encoders, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Both encoders on ``texts``: (penultimate hidden states side by side, pooled embedding of the last projecting encoder)."""
    hidden, pooled = [], None
    with torch.no_grad():
        for tokenizer, encoder in zip(tokenizers, text_encoders):
            ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
            out = encoder(ids.to(device), output_hidden_states=True)
            if out[0].ndim == 2:  # CLIPTextModelWithProjection: its first output is the projected pooled embedding
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
    if pooled is None:
        raise ValueError("no text encoder gives a pooled embedding: SDXL's second text encoder must be a CLIPTextModelWithProjection")
    return torch.cat(hidden, dim=-1), pooled


def encode_sdxl_prompt_pair(
    tokenizers, text_encoders, prompts: list[str], negatives: list[str], device: torch.device, *, zero_empty_negatives: bool = True
) -> SDXLText:
    """SDXL conditioning of the doubled CFG batch ``[uncond; cond]``, negatives first.

    The numbers of ``AnimateDiffSDXLPipeline.encode_prompt`` (prompts, then negative prompts, each as one batch;
    both cast to the second encoder's dtype). With ``zero_empty_negatives`` (the base's ``force_zeros_for_empty_prompt``)
    a row whose negative prompt is empty gets zero embeddings and a zero pooled embedding, as the stock pipeline does
    when no negative prompt is given.
    """
    if len(prompts) != len(negatives):
        raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
    dtype = text_encoders[-1].dtype
    embeds, pooled = _encode_sdxl_texts(tokenizers, text_encoders, list(prompts), device)
    empty = [n == "" for n in negatives]
    if zero_empty_negatives and all(empty):
        neg_embeds, neg_pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
    else:
        neg_embeds, neg_pooled = _encode_sdxl_texts(tokenizers, text_encoders, list(negatives), device)
        if zero_empty_negatives and any(empty):
            keep = torch.tensor([not e for e in empty], device=neg_embeds.device)
            neg_embeds = neg_embeds * keep[:, None, None]
            neg_pooled = neg_pooled * keep[:, None]
    return SDXLText(
        embeds=torch.cat([neg_embeds, embeds]).to(dtype=dtype, device=device),
        pooled=torch.cat([neg_pooled, pooled]).to(dtype=dtype, device=device),
    )


class SDXLUNetScore(UNetScore):
    """An SDXL UNet (image or motion) as a score model ``eps(x, t, cond)`` with ``cond`` an :class:`SDXLText`.

    Each call passes the kit's :class:`~ivmixed.backbones.diffusers.UNetCond`: the text embeddings and
    ``added_cond_kwargs = {"text_embeds": pooled, "time_ids": ids}``, the ids built from the latent size times
    ``vae_scale_factor`` (see :class:`SizeConditioning`). Rows: an image UNet sees ``(N·F, C, H, W)`` and gets every
    tensor repeated per frame; a motion UNet sees ``(N, C, F, H, W)`` and gets the text embeddings repeated per
    frame but the pooled embedding and ids once per clip (``UNetMotionModel`` repeats its added embedding itself).
    """

    def __init__(self, unet, *, size: SizeConditioning, vae_scale_factor: int, **kwargs):
        super().__init__(unet, repeat_cond=True, **kwargs)
        self.size = size
        self.vae_scale_factor = int(vae_scale_factor)
        self._last: tuple[Any, tuple[int, ...], UNetCond] | None = None

    def unet_cond(self, cond: SDXLText, x: torch.Tensor) -> UNetCond:
        """The UNet's conditioning for latents ``x``, laid out for its rows (cached for the last ``cond`` and shape)."""
        key = (x.shape[0], x.ndim, *x.shape[2:])
        if self._last is not None and self._last[0] is cond and self._last[1] == key:
            return self._last[2]
        rows = len(cond)
        height, width = (int(n) * self.vae_scale_factor for n in x.shape[-2:])
        ids = torch.tensor([self.size.time_ids(height, width)], dtype=cond.embeds.dtype, device=cond.embeds.device)
        per_clip = UNetCond(cond.embeds, added_cond_kwargs={"text_embeds": cond.pooled, "time_ids": ids.repeat(rows, 1)})
        if x.ndim == 5:  # motion UNet: text per frame, added embedding per clip
            if x.shape[0] != rows:
                raise ValueError(f"cannot pair {rows} conditioning rows with {x.shape[0]} clips")
            built = UNetCond(cond.embeds.repeat_interleave(x.shape[2], dim=0), added_cond_kwargs=per_clip.added_cond_kwargs)
        else:  # image UNet: everything per image
            if x.shape[0] % rows:
                raise ValueError(f"cannot pair {rows} conditioning rows with {x.shape[0]} images")
            built = per_clip.repeated(x.shape[0] // rows)
        self._last = (cond, key, built)
        return built

    def __call__(self, x: torch.Tensor, t: int, cond: SDXLText) -> torch.Tensor:
        kwargs = self.unet_cond(cond, x).call_kwargs()
        with torch.no_grad():
            out = self.unet(x, t, return_dict=False, **kwargs, **self.call_kwargs)[0]
        return to_eps(out, x, t, self.prediction_type, self.schedule)


# -- decoding ------------------------------------------------------------------------------------------------


def decode_sdxl_video(vae, latents: torch.Tensor, *, chunk_size: int = 16) -> torch.Tensor:
    """Latents ``(B, C, F, h, w)`` -> frames ``(B, F, H, W, 3)`` float32 in [0, 1] on the CPU, ``chunk_size`` frames at a time.

    An fp16 VAE whose config says ``force_upcast`` (SDXL's, which overflows in fp16) decodes in float32 and returns
    to fp16 afterwards, as ``StableDiffusionXLPipeline`` does: the whole VAE is cast. (``AnimateDiffSDXLPipeline``'s
    own ``upcast_vae`` in diffusers 0.42 keeps the decoder's input layers and mid block in fp16 when PyTorch 2
    attention is available, and its decode then stops on an fp16 activation meeting fp32 weights.) Then
    ``decode_latents`` and the ``VideoProcessor`` post-processing, as the stock pipeline.
    """
    from diffusers.video_processor import VideoProcessor

    upcast = vae.dtype == torch.float16 and bool(vae.config.get("force_upcast", False))
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        images = fold_frames(1 / vae.config.scaling_factor * latents.to(vae.dtype))
        step = max(1, chunk_size)
        with torch.no_grad():
            decoded = torch.cat([vae.decode(images[i : i + step]).sample for i in range(0, images.shape[0], step)])
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    video = unfold_frames(decoded, latents.shape[2]).float()  # (B, 3, F, H, W)
    frames = VideoProcessor(do_resize=False).postprocess_video(video, output_type="pt")  # (B, F, 3, H, W)
    return frames.permute(0, 1, 3, 4, 2).contiguous().cpu().float()


# -- the motion UNet ----------------------------------------------------------------------------------------


def motion_unet_from(base_unet, motion_adapter):
    """The SDXL base's UNet with the motion adapter's modules: ``UNetMotionModel.from_unet2d`` plus the base's
    ``add_embedding``.

    ``from_unet2d`` (diffusers 0.42) copies every block of the 2-D UNet but not the ``add_embedding`` that reads the
    pooled text embedding and the size ids, so in ``AnimateDiffSDXLPipeline`` that layer keeps a fresh random
    initialisation, a different one at every load. The adapter adds temporal layers only; the added embedding is
    the base's, and is copied here.
    """
    from diffusers import UNetMotionModel

    unet = UNetMotionModel.from_unet2d(base_unet, motion_adapter)
    if getattr(unet, "add_embedding", None) is not None and getattr(base_unet, "add_embedding", None) is not None:
        unet.add_embedding.load_state_dict(base_unet.add_embedding.state_dict())
    return unet


# -- the pair check ------------------------------------------------------------------------------------------


def _added_width(unet: dict[str, Any], pooled_dim: int) -> tuple[int | None, int]:
    """(what the UNet's added embedding takes, what 6 time ids + the pooled embedding give)."""
    expected = unet.get("projection_class_embeddings_input_dim")
    return (None if expected is None else int(expected)), 6 * int(unet.get("addition_time_embed_dim") or 0) + int(pooled_dim)


def check_sdxl_models(
    *,
    vdm_unet: dict[str, Any],
    idm_unet: dict[str, Any],
    text_dim: int,
    pooled_dim: int,
    adapter: dict[str, Any] | None = None,
    vdm_name: str = "video model",
    idm_name: str = "image model",
    adapter_name: str = "motion adapter",
) -> None:
    """Refuse a base / adapter / image model combination that SDXL conditioning cannot serve, from configs alone.

    Both UNets must be SDXL's (``addition_embed_type="text_time"``), the adapter must have the base's blocks, and
    both UNets must read the base's ``text_dim``-wide embeddings (its two encoders side by side) and an added
    embedding of 6 size ids plus its ``pooled_dim``-wide pooled embedding. Raises
    :class:`~ivmixed.backbones.base.IncompatibleModels` naming the model and what differs. (The latent space and the
    ᾱ table are checked by the template's :func:`~ivmixed.backbones.diffusers.check_pair`.)
    """
    if vdm_unet.get("addition_embed_type") != "text_time":
        raise IncompatibleModels(
            f"the {vdm_name} is not an SDXL base (its UNet has addition_embed_type "
            f"{vdm_unet.get('addition_embed_type')!r}, SDXL's is 'text_time'); for SD1.5 bases use --backbone animatediff"
        )
    if adapter is not None:
        blocks, widths = len(vdm_unet.get("down_block_types", ())), tuple(vdm_unet.get("block_out_channels", ()))
        adapter_widths = tuple(adapter.get("block_out_channels", ()))
        layers = vdm_unet.get("layers_per_block")
        adapter_layers = adapter.get("motion_layers_per_block")
        if adapter_widths != widths or len(adapter_widths) != blocks or (
            isinstance(layers, int) and isinstance(adapter_layers, int) and layers != adapter_layers
        ):
            raise IncompatibleModels(
                f"the {adapter_name} is made for a UNet with blocks {list(adapter_widths)} ({adapter_layers} layers each), "
                f"but the {vdm_name}'s UNet has blocks {list(widths)} ({layers} layers each); SDXL bases need an SDXL "
                f"motion adapter such as {DEFAULT_MOTION_ADAPTER}"
            )
    if idm_unet.get("addition_embed_type") != "text_time":
        raise IncompatibleModels(
            f"the {idm_name} is not an SDXL UNet (addition_embed_type {idm_unet.get('addition_embed_type')!r}, SDXL's is "
            "'text_time'; SD1.5 and SD2 UNets have none), so it cannot read the SDXL text embeddings, pooled embedding "
            "and size conditioning; choose an SDXL image model (the base or an SDXL fine-tune)"
        )
    for name, unet in ((vdm_name, vdm_unet), (idm_name, idm_unet)):
        width = unet.get("cross_attention_dim")
        if width is not None and int(width) != int(text_dim):
            raise IncompatibleModels(
                f"the {name} expects {width}-wide text embeddings but the {vdm_name}'s two text encoders give "
                f"{text_dim}-wide ones; choose models of one SDXL family"
            )
        expected, given = _added_width(unet, pooled_dim)
        if expected is not None and expected != given:
            raise IncompatibleModels(
                f"the {name}'s added embedding takes {expected} numbers but 6 size ids × {unet.get('addition_time_embed_dim')} "
                f"+ the {pooled_dim}-wide pooled embedding of the {vdm_name}'s second text encoder give {given}; "
                "choose models of one SDXL family"
            )


# -- the backbone --------------------------------------------------------------------------------------------


class AnimateDiffSDXLBackbone(AnimateDiffBackbone):
    """AnimateDiff SDXL + an SDXL image UNet, loaded once; call :meth:`generate` as often as you like.

    Args:
        model: the video model: an SDXL base (diffusers folder or hub id) to which the motion adapter is added,
            or a saved ``AnimateDiffSDXLPipeline`` folder (then no adapter is needed).
        motion_adapter: SDXL motion adapter folder or hub id (default: ``guoyww/animatediff-motion-adapter-sdxl-beta``;
            not used with a saved ``AnimateDiffSDXLPipeline`` unless given explicitly).
        image_model: the IDM's UNet: an SDXL pipeline folder or hub id (its ``unet/``), a UNet folder, or one
            ``.safetensors`` UNet file (loaded with ``UNet2DConditionModel.from_single_file``). Default: the video
            model's SDXL base (``stabilityai/stable-diffusion-xl-base-1.0`` when the video model is a saved
            ``AnimateDiffSDXLPipeline``, whose UNet has the motion modules).
        image_model_config: where a single-file image model's UNet config comes from (folder or hub id; default:
            the video base's ``unet/``).
        vae: another SDXL VAE for decoding, e.g. ``madebyollin/sdxl-vae-fp16-fix``.
        original_height, original_width, crop_top, crop_left, target_height, target_width: SDXL's size
            conditioning (``original_size``, ``crops_coords_top_left``, ``target_size`` of the stock pipeline), in
            pixels; the sizes default to the video size, the crop to (0, 0), as in the stock pipeline.
        image_loras: LoRA files for the IDM, ``"FILE[:SCALE]"`` each.
        device, dtype, allow_pickle, revision, motion_adapter_revision, image_model_revision, vae_revision, variant,
            motion_adapter_variant, image_variant, decode_chunk_size: as for ``animatediff``.
    """

    name = SPEC.name
    defaults = SPEC.defaults
    family = "AnimateDiff SDXL"
    unet_kind = "SDXL"
    adapter_label = "SDXL motion adapter"
    pipeline_class_name = "AnimateDiffSDXLPipeline"
    base_folders = ("unet", "text_encoder", "text_encoder_2")
    default_motion_adapter = DEFAULT_MOTION_ADAPTER
    default_image_model = DEFAULT_IMAGE_MODEL
    released_decode = False  # the released code has no SDXL pipeline: the SDXL decode (fp32 where the VAE says so)
    example_prompt = "A panda playing a guitar on a sunny beach, detailed, high quality."
    text_encoder_2: Any = None
    tokenizer_2: Any = None

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        image_model: str | None = None,
        original_height: int | None = None,
        original_width: int | None = None,
        crop_top: int = 0,
        crop_left: int = 0,
        target_height: int | None = None,
        target_width: int | None = None,
        **options: Any,
    ):
        for name, value in (("crop_top", crop_top), ("crop_left", crop_left)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"option {name}={value!r}: expected a non-negative integer (pixels)")
        self.size_conditioning = SizeConditioning(
            original_size=size_pair(original_height, original_width, "original"),
            crop_top_left=(int(crop_top), int(crop_left)),
            target_size=size_pair(target_height, target_width, "target"),
        )
        super().__init__(model=model, image_model=image_model, **options)

    # -- the template's hooks ---------------------------------------------------------------------------

    def read_configs(self) -> PairConfigs:
        loc = self.locations
        video = loc["model"]
        vdm_unet = require_json(video, "unet/config.json")
        text = require_json(video, "text_encoder/config.json")
        text_2 = video.read_json("text_encoder_2/config.json")
        if text_2 is None and vdm_unet.get("addition_embed_type") == "text_time":
            text_2 = require_json(video, "text_encoder_2/config.json")
        text_2 = text_2 or {}  # not an SDXL base: the SDXL check below says so first
        adapter = self.read_motion_config(vdm_unet)
        self.zero_empty_negatives = bool((video.read_json("model_index.json") or {}).get("force_zeros_for_empty_prompt", True))
        idm_unet, idm_scheduler, idm_vae = self.image_configs()
        # SDXL conditioning first (the clearest message for an SD1.5 model); the template then checks the latent space
        text_dim = int(text.get("hidden_size", 0)) + int(text_2.get("hidden_size", 0))
        check_sdxl_models(
            vdm_unet=vdm_unet,
            idm_unet=idm_unet,
            text_dim=text_dim,
            pooled_dim=int(text_2.get("projection_dim") or text_2.get("hidden_size", 0)),
            adapter=adapter,
            vdm_name=f"video model {video.source}",
            idm_name=f"image model {loc['image_model'].source}",
            adapter_name=f"motion adapter {loc['motion_adapter'].source}" if "motion_adapter" in loc else "motion adapter",
        )
        # the image model reads the video model's embeddings (both encoders side by side)
        configs = (self.video_scheduler_config(), self.vae_config())
        return PairConfigs(vdm_unet, *configs, idm_unet, idm_scheduler, idm_vae=idm_vae, idm_text_dim=text_dim)

    def motion_parts(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from diffusers import UNet2DConditionModel

        parts = super().motion_parts(kwargs)
        if "motion_adapter" in parts:  # the motion UNet built here: diffusers' conversion drops the base's added embedding
            base_unet = UNet2DConditionModel.from_pretrained(self.locations["model"].path, subfolder="unet", **kwargs)
            parts["unet"] = motion_unet_from(base_unet, parts["motion_adapter"])
        return parts

    def pipeline_loaded(self, pipe) -> None:
        super().pipeline_loaded(pipe)
        self.text_encoder_2, self.tokenizer_2 = pipe.text_encoder_2, pipe.tokenizer_2

    def modules(self) -> list[Any]:
        return [*super().modules(), self.text_encoder_2]

    def make_scores(self) -> tuple[ScoreModel, ScoreModel]:
        common = dict(size=self.size_conditioning, vae_scale_factor=self.vae_scale_factor, schedule=self.zigzag_schedule())
        vdm = SDXLUNetScore(self.unet, prediction_type=self.prediction_type, **common)
        idm = SDXLUNetScore(self.image_unet, prediction_type=self.image_prediction_type, **common)
        return vdm, ImageOnVideo(idm)

    # -- the Backbone interface -------------------------------------------------------------------------

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        text = encode_sdxl_prompt_pair(
            (self.tokenizer, self.tokenizer_2),
            (self.text_encoder, self.text_encoder_2),
            prompts,
            negative_prompts,
            self.device,
            zero_empty_negatives=self.zero_empty_negatives,
        )
        # the IDM reads the video model's embeddings and pooled embedding (both of the base's encoders)
        return Conditioning(idm=text, vdm=text, prompts=list(prompts), negative_prompts=list(negative_prompts))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_sdxl_video(self.vae, latents, chunk_size=self.decode_chunk_size)

    def describe(self) -> dict[str, Any]:
        size = self.size_conditioning
        return {
            **super().describe(),
            "size_conditioning": {
                "original_size": list(size.original_size) if size.original_size else "video size",
                "crops_coords_top_left": list(size.crop_top_left),
                "target_size": list(size.target_size) if size.target_size else "video size",
            },
        }
