"""The template of a diffusers backbone: find the weights, check the pair, choose the files, load, build the score models.

A backbone on the kit subclasses :class:`DiffusersBackbone`. Its ``__init__`` takes the backbone's options as
keywords (the registry checks them against that signature), keeps the ones naming its models, and hands the
rest to ``DiffusersBackbone.__init__``, which runs the stages in this order — each one a small hook, so that a
bad request fails before anything heavy happens:

1. :meth:`~DiffusersBackbone.requests` — the models to find, one :class:`~.weights.ModelRequest` each; the
   template finds them all at once (:func:`~.weights.resolve_models`: one error names every missing one)
   into :attr:`~DiffusersBackbone.locations`.
2. :meth:`~DiffusersBackbone.read_configs` — their configs, no weights, as :class:`PairConfigs`; the template
   refuses a pair that cannot be mixed (:func:`~.latents.check_pair`) and reads the scheduler config, latent
   channels, VAE factor and prediction types off them.
3. :meth:`~DiffusersBackbone.weight_folders` — the component folders each model loads; the template chooses
   their files (:func:`~.weights.plan_weights`: fp16 where published, the pickle check) into
   :attr:`~DiffusersBackbone.variants`, still before any weight loads.
4. :meth:`~DiffusersBackbone.load` — the weights (``with self.loading(option) as kwargs:`` around each
   ``from_pretrained``); the template then puts the LoRAs on the image UNet and the modules on the device.
5. :meth:`~DiffusersBackbone.make_scores` — the two score models; by default a
   :class:`~.score.UNetScore` of each UNet, the image one behind :class:`~ivmixed.guidance.ImageOnVideo`.

Around sampling it provides prompt encoding (:meth:`~DiffusersBackbone.encode`: the image model reads its own
text encoder when it has one, else the video model's embeddings), the DDIM standard step with the released
settings, initial noise drawn as diffusers pipelines draw it, chunked VAE decoding and the manifest.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ...guidance import ImageOnVideo, ScoreModel
from ..base import Backbone, Conditioning
from .adapters import LoraSpec, apply_loras, parse_loras
from .devices import dtype_name, load_kwargs, resolve_device, resolve_dtype, to_device
from .latents import check_pair, decode_video
from .schedulers import DDIM_OVERRIDES, ddim_scheduler
from .score import NearestResized, UNetScore
from .text import encode_prompt_pair
from .weights import Location, ModelRequest, explain_load_error, plan_weights, require_json, resolve_models

__all__ = ["DiffusersBackbone", "PairConfigs", "read_pipeline_configs", "LOADER_KEYWORDS"]

logger = logging.getLogger(__name__)

#: the options every backbone on the template takes (a subclass passes them on with ``**loader``)
LOADER_KEYWORDS = ("device", "dtype", "allow_pickle", "image_loras", "decode_chunk_size")


@dataclass
class PairConfigs:
    """The configs of both models that decide whether they can be mixed, read before any weight loads.

    Args:
        vdm_unet: the video UNet's ``config.json`` (``in_channels``).
        vdm_scheduler: the video model's scheduler config (the ᾱ table, ``prediction_type``): the standard step's.
        vae: the config of the VAE that decodes (``block_out_channels``, ``scaling_factor``).
        idm_unet: the image UNet's ``config.json`` (``in_channels``, ``cross_attention_dim``, ``sample_size``).
        idm_scheduler: the image model's scheduler config; None: assumed equal to the video model's.
        idm_vae: the image model's own VAE config, where it has one (its scaling factor is compared).
        idm_text_dim: the width of the embeddings the image model gets from the *video* model's text encoder
            (None when it has its own text encoder).
    """

    vdm_unet: dict[str, Any]
    vdm_scheduler: dict[str, Any]
    vae: dict[str, Any]
    idm_unet: dict[str, Any]
    idm_scheduler: dict[str, Any] | None = None
    idm_vae: dict[str, Any] | None = None
    idm_text_dim: int | None = None


def read_pipeline_configs(unet_at: Location, unet_config: str, parts: Location, image: Location) -> PairConfigs:
    """The :class:`PairConfigs` of a video UNet with a pipeline folder's scheduler, VAE and text encoder, and an SD-layout image pipeline.

    ``unet_at``/``unet_config`` locate the video UNet's config, ``parts`` the folder with the video model's
    scheduler, VAE and text encoder, ``image`` the image pipeline (which has its own text encoder).
    """
    vdm_unet = require_json(unet_at, unet_config)
    vdm_scheduler = require_json(parts, "scheduler/scheduler_config.json")
    vae = require_json(parts, "vae/config.json")
    require_json(parts, "text_encoder/config.json")
    idm_unet = require_json(image, "unet/config.json")
    require_json(image, "text_encoder/config.json")
    return PairConfigs(vdm_unet, vdm_scheduler, vae, idm_unet, image.read_json("scheduler/scheduler_config.json"), idm_vae=image.read_json("vae/config.json"))


class DiffusersBackbone(Backbone):
    """A backbone made of diffusers components: the template above, with the parts every such backbone shares.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:1`` …; default CUDA when available.
        dtype: ``fp32``, ``fp16`` or ``bf16``; default fp16 on CUDA, fp32 on the CPU.
        allow_pickle: also load pickled (``.bin``/``.ckpt``) weights. Off by default: pickles can run code.
        image_loras: LoRA files for the image UNet, ``"FILE[:SCALE]"`` each (diffusers, peft or kohya/civitai).
        decode_chunk_size: frames decoded by the VAE at a time.
        variants: the weight variant asked for each model option (None or absent: chosen from what it publishes).

    After loading, :attr:`unet`, :attr:`vae`, :attr:`text_encoder`, :attr:`tokenizer` and :attr:`image_unet` are
    the diffusers modules, and :attr:`image_text_encoder` / :attr:`image_tokenizer` the image model's own text
    encoder where it has one.
    """

    example_prompt = "Two horses race across a grassy field at sunset."
    #: settings applied on top of the model's scheduler config for the standard step
    scheduler_overrides: dict[str, Any] = DDIM_OVERRIDES
    #: the video UNet takes one conditioning row per frame (``UNetMotionModel``), not one per clip (``UNet3DConditionModel``)
    video_cond_per_frame: bool = False
    #: the latent size the image model sees (its latents resized, nearest, by :class:`~.score.NearestResized`); None: as they are
    image_latent_size: tuple[int, int] | None = None

    latent_channels: int = 4
    decode_chunk_size: int = 16
    scheduler_config: dict[str, Any]
    prediction_type: str = "epsilon"
    image_prediction_type: str = "epsilon"
    device: torch.device
    dtype: torch.dtype
    allow_pickle: bool = False
    locations: dict[str, Location]
    variants: dict[str, str | None]
    loras: list[LoraSpec]
    unet: Any
    vae: Any
    text_encoder: Any = None
    tokenizer: Any = None
    image_unet: Any = None
    image_text_encoder: Any = None
    image_tokenizer: Any = None

    def __init_subclass__(cls, **kwargs: Any):
        """A subclass ``__init__`` that ends in ``**loader`` (passed on to its parent) shows the parent's keywords in its signature.

        The registry checks options against the factory's signature, and ``ivmixed list`` lists them, so
        ``def __init__(self, *, model=..., **loader)`` reads as ``(*, model=..., device=None, dtype=None, ...)``: the
        loader keywords of this template, and every keyword of a backbone in between (a subclass of ``animatediff``
        shows ``motion_adapter``, ``vae`` and the rest).
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)
        params = list(signature.parameters.values())
        if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            return
        own = {p.name for p in params}
        parent = next(base.__dict__["__init__"] for base in cls.__mro__[1:] if "__init__" in base.__dict__)
        inherited = [
            p
            for p in inspect.signature(parent).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in own
            and (parent is not DiffusersBackbone.__init__ or p.name in LOADER_KEYWORDS)
        ]
        init.__signature__ = signature.replace(parameters=params[:-1] + inherited)

    def __init__(
        self,
        *,
        device: str | None = None,
        dtype: str | None = None,
        allow_pickle: bool = False,
        image_loras: list[Any] | None = None,
        decode_chunk_size: int = 16,
        variants: dict[str, str | None] | None = None,
    ):
        # 0. arguments that need no file
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.loras = parse_loras(image_loras, allow_pickle=allow_pickle)
        self.decode_chunk_size = int(decode_chunk_size)
        self.allow_pickle = allow_pickle

        # 1. find every model, no network when cached
        self.locations = self.find()

        # 2. configs only: check the pair before any weight loads
        self.use_configs(self.read_configs())

        # 3. which weight files: variants and the pickle check, still before any weight loads
        self.variants = self.plan(dict(variants or {}))

        # 4. weights
        logger.info("loading %s on %s", ", ".join(f"{k}={v.describe()}" for k, v in self.locations.items()), self.device)
        self.load()
        if self.loras:
            apply_loras(self.image_unet, self.loras, allow_pickle=self.allow_pickle)
        to_device(*self.modules(), device=self.device)

        # 5. the score models
        self.vdm, self.idm = self.make_scores()

    # -- the hooks ---------------------------------------------------------------------------------------

    def requests(self) -> list[ModelRequest]:
        """The models this backbone needs, from the options given to ``__init__`` (or their defaults)."""
        raise NotImplementedError(f"{type(self).__name__} must say which models it needs (requests)")

    def find(self) -> dict[str, Location]:
        """Every model of :meth:`requests`, found at once: one :class:`~.weights.MissingWeights` names all missing ones."""
        return resolve_models(self.name, self.requests(), allow_pickle=self.allow_pickle)

    def read_configs(self) -> PairConfigs:
        """The configs of both models (no weights), from :attr:`locations`; refuse a layout this backbone cannot load."""
        raise NotImplementedError(f"{type(self).__name__} must read its models' configs (read_configs)")

    def weight_folders(self) -> dict[str, tuple[str, ...]]:
        """The component folders each model option loads (``""``: the model's root); a model not named here is not planned."""
        raise NotImplementedError(f"{type(self).__name__} must name the folders it loads (weight_folders)")

    def load(self) -> None:
        """Load the weights: set :attr:`unet`, :attr:`vae`, :attr:`text_encoder`, :attr:`tokenizer`, :attr:`image_unet`
        (and :attr:`image_text_encoder`, :attr:`image_tokenizer` when the image model has its own text encoder)."""
        raise NotImplementedError(f"{type(self).__name__} must load its weights (load)")

    def modules(self) -> list[Any]:
        """The loaded modules that go to the device (missing ones are None)."""
        return [self.unet, self.vae, self.text_encoder, self.image_unet, self.image_text_encoder]

    def make_scores(self) -> tuple[ScoreModel, ScoreModel]:
        """The score models ``(vdm, idm)``: each UNet as ``eps(x, t, cond)``, converted to ε on the zigzag's ᾱ table."""
        schedule = self.zigzag_schedule()
        vdm = UNetScore(self.unet, schedule=schedule, prediction_type=self.prediction_type, repeat_cond=self.video_cond_per_frame)
        image = UNetScore(self.image_unet, schedule=schedule, prediction_type=self.image_prediction_type, repeat_cond=True)
        if self.image_latent_size is not None:
            image = NearestResized(image, self.image_latent_size)
        return vdm, ImageOnVideo(image)

    # -- what the template does between the hooks ---------------------------------------------------------

    def use_configs(self, configs: PairConfigs) -> None:
        """Refuse a pair that cannot be mixed; keep the standard step's scheduler config, latent channels, VAE factor and prediction types."""
        check_pair(
            idm_unet=configs.idm_unet,
            vdm_unet=configs.vdm_unet,
            vdm_scheduler=configs.vdm_scheduler,
            idm_scheduler=configs.idm_scheduler,
            vdm_vae=configs.vae,
            idm_vae=configs.idm_vae,
            idm_text_dim=configs.idm_text_dim,
            idm_name=f"image model {self.locations['image_model'].source}",
            vdm_name=f"video model {self.locations['model'].source}",
        )
        self.scheduler_config = configs.vdm_scheduler
        self.latent_channels = int(configs.vdm_unet["in_channels"])
        self.vae_scale_factor = 2 ** (len(configs.vae["block_out_channels"]) - 1)
        self.prediction_type = configs.vdm_scheduler.get("prediction_type", "epsilon")
        self.image_prediction_type = (configs.idm_scheduler or {}).get("prediction_type", "epsilon")
        if self.prediction_type != "epsilon":  # the score adapter converts to ε, so the standard step must read ε too
            self.scheduler_overrides = {**self.scheduler_overrides, "prediction_type": "epsilon"}

    def plan(self, requested: dict[str, str | None]) -> dict[str, str | None]:
        """The weight variant of each model of :meth:`weight_folders` (see :func:`~.weights.plan_weights`), before anything loads."""
        return {
            option: plan_weights(self.locations[option], folders, requested.get(option), dtype=self.dtype, allow_pickle=self.allow_pickle)
            for option, folders in self.weight_folders().items()
        }

    def load_kwargs(self, option: str) -> dict[str, Any]:
        """The ``from_pretrained`` keywords of model ``option``: dtype, safetensors unless pickles are allowed, its variant and revision."""
        return load_kwargs(self.dtype, allow_pickle=self.allow_pickle, variant=self.variants.get(option), location=self.locations[option])

    @contextlib.contextmanager
    def loading(self, option: str) -> Iterator[dict[str, Any]]:
        """``with self.loading("model") as kwargs:`` around the loads of one model: its keywords, and a load that fails
        for want of ``.safetensors`` files explained in words (:func:`~.weights.explain_load_error`)."""
        try:
            yield self.load_kwargs(option)
        except (OSError, ValueError) as exc:
            raise explain_load_error(exc, self.locations[option], allow_pickle=self.allow_pickle) from exc

    def load_image_pipeline(self, option: str = "image_model") -> None:
        """The image model with its own text encoder and tokenizer, from an SD-layout pipeline (``unet/``, ``text_encoder/``, ``tokenizer/``)."""
        from diffusers import UNet2DConditionModel

        from .text import load_text_encoder

        location = self.locations[option]
        with self.loading(option) as kwargs:
            self.image_unet = UNet2DConditionModel.from_pretrained(location.path, subfolder="unet", **kwargs)
            self.image_text_encoder, self.image_tokenizer = load_text_encoder(location, **kwargs)

    # -- the Backbone interface -------------------------------------------------------------------------

    def encode(self, prompts: list[str], negative_prompts: list[str]) -> Conditioning:
        """Both models' conditioning: the image model reads its own text encoder when it has one, else the video model's embeddings."""
        vdm = encode_prompt_pair(self.tokenizer, self.text_encoder, prompts, negative_prompts, self.device)
        if self.image_text_encoder is None:
            idm = vdm
        else:
            idm = encode_prompt_pair(self.image_tokenizer, self.image_text_encoder, prompts, negative_prompts, self.device)
        return Conditioning(idm=idm, vdm=vdm, prompts=list(prompts), negative_prompts=list(negative_prompts))

    def make_scheduler(self):
        return ddim_scheduler(self.scheduler_config, **self.scheduler_overrides)

    def initial_latents(self, batch: int, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        shape = (batch, self.latent_channels, frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_video(self.vae, latents, chunk_size=self.decode_chunk_size)

    def describe(self) -> dict[str, Any]:
        return {
            "backbone": self.name,
            "models": {option: loc.source for option, loc in self.locations.items()},
            "model_paths": {option: loc.path for option, loc in self.locations.items()},
            "model_revisions": {option: loc.revision for option, loc in self.locations.items() if loc.revision},
            "weight_variants": dict(getattr(self, "variants", {})),
            "image_loras": [str(lora) for lora in getattr(self, "loras", [])],
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
        }

    def __repr__(self) -> str:
        models = ", ".join(f"{k}={v.source}" for k, v in self.locations.items())
        return f"<{type(self).__name__} {models} on {self.device} ({dtype_name(self.dtype)})>"
