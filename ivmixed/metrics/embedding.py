"""Embedding metrics of decoded frames: CLIP text–video score and frame consistency, from locally available weights.

``clip_score`` (higher is better): the mean over frames f of cos(E_img(x_f), E_txt(prompt)), with CLIP's
projected image and text embeddings. This is the frame-averaged CLIPScore without its 100·max(·, 0) rescaling;
prompts longer than CLIP's 77 tokens are truncated, as CLIPScore does.

``frame_consistency`` (higher is better): the mean over f of cos(E(x_f), E(x_{f+1})) for consecutive frames.
E is CLIP's projected image embedding for a CLIP model, and the CLS token of the last layer for any other
image transformer (a DINO ViT such as ``facebook/dino-vitb16``, as VBench's subject consistency uses). A still
video scores 1: read it together with ``motion``.

Models load from a local folder or the Hugging Face cache only (``local_files_only``), never downloading, and
``.safetensors`` weights are required unless ``allow_pickle=True``. One loaded model serves every metric that
names it (the two metrics share the default CLIP model). Frames are resized (bicubic, antialiased) so the short
side is the model's input size, centre-cropped and normalised with the model's own mean and std, as CLIP's
image processor does, in one batched tensor operation.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from .builtin import DEFAULT_CLIP_MODEL

__all__ = ["ImageEncoder", "ClipScore", "FrameConsistency", "clip_score", "frame_consistency", "load_encoder"]

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class ImageEncoder:
    """A loaded image(-text) model with its preprocessing: unit-length embeddings of frames (and of prompts for CLIP)."""

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoImageProcessor

        self.model_id = model
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.dtype = getattr(torch, _DTYPES[dtype or "fp32"])
        use_safetensors = None if allow_pickle else True
        config = AutoConfig.from_pretrained(model, local_files_only=True)
        self.kind = "clip" if config.model_type == "clip" else "cls"
        verbosity = transformers.logging.get_verbosity()
        bars = transformers.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()  # backend notices and loading bars are not the user's business
        transformers.logging.disable_progress_bar()
        try:
            processor = AutoImageProcessor.from_pretrained(model, local_files_only=True)
            if self.kind == "clip":
                from transformers import AutoTokenizer, CLIPModel

                self.net = CLIPModel.from_pretrained(model, local_files_only=True, use_safetensors=use_safetensors)
                self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
                self.max_tokens = int(self.net.config.text_config.max_position_embeddings)
                vision_size = self.net.config.vision_config.image_size
            else:
                from transformers import AutoModel

                self.net = AutoModel.from_pretrained(model, local_files_only=True, use_safetensors=use_safetensors)
                self.tokenizer = None
                vision_size = getattr(self.net.config, "image_size", 224)
        except OSError as exc:
            if not allow_pickle and "safetensors" in str(exc).lower():
                raise ValueError(f"model '{model}' has no .safetensors weights; pass allow_pickle=True (--metric-option NAME.allow_pickle=True) to load pickled ones") from None
            raise
        finally:
            transformers.logging.set_verbosity(verbosity)
            if bars:
                transformers.logging.enable_progress_bar()
        self.net.to(device=self.device, dtype=self.dtype).eval()
        self.size = _crop_size(processor, vision_size)
        self.mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray):
        """(F, H, W, 3) floats in [0, 1] -> (F, 3, S, S) normalised pixel values on the model's device."""
        import torch
        import torch.nn.functional as F

        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (F, H, W, 3), got shape {frames.shape}")
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        new_h, new_w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size]
        x = (x - self.mean) / self.std
        return x.to(device=self.device, dtype=self.dtype)

    def images(self, frames: np.ndarray):
        """Unit-length image embeddings of the frames, (F, D), float32."""
        import torch

        pixels = self.preprocess(frames)
        with torch.inference_mode():
            if self.kind == "clip":
                pooled = self.net.vision_model(pixel_values=pixels).pooler_output
                emb = self.net.visual_projection(pooled)
            else:
                emb = self.net(pixel_values=pixels).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def texts(self, prompts: list[str]):
        """Unit-length text embeddings, (N, D), float32 (CLIP models only)."""
        import torch

        if self.tokenizer is None:
            raise ValueError(f"model '{self.model_id}' is an image model without a text tower; clip_score needs a CLIP model")
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode():
            pooled = self.net.text_model(**tokens).pooler_output
            emb = self.net.text_projection(pooled)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "embedding": "CLIP projected" if self.kind == "clip" else "CLS token", "device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}


def _crop_size(processor: Any, default: int) -> int:
    crop = getattr(processor, "crop_size", None)
    if isinstance(crop, dict) and crop.get("height"):
        return int(crop["height"])
    size = getattr(processor, "size", None)
    if isinstance(size, dict):
        for key in ("shortest_edge", "height"):
            if size.get(key):
                return int(size[key])
    return int(default)


@functools.lru_cache(maxsize=4)
def load_encoder(model: str, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False) -> ImageEncoder:
    """The :class:`ImageEncoder` of ``model``, loaded once per (model, device, dtype) in this process."""
    logging.getLogger("ivmixed.metrics").info("loading %s for frame metrics", model)
    return ImageEncoder(model, device=device, dtype=dtype, allow_pickle=allow_pickle)


class ClipScore:
    """The ``clip_score`` metric (see the module docstring)."""

    name = "clip_score"

    def __init__(self, encoder: ImageEncoder) -> None:
        if encoder.kind != "clip":
            raise ValueError(f"clip_score needs a CLIP model (text and image towers); '{encoder.model_id}' is a {encoder.net.config.model_type} image model")
        self.encoder = encoder

    def __call__(self, frames: np.ndarray, prompt: str) -> float:
        image = self.encoder.images(frames)
        text = self.encoder.texts([prompt])
        return float((image @ text.T).mean())

    def describe(self) -> dict[str, Any]:
        return self.encoder.describe()


class FrameConsistency:
    """The ``frame_consistency`` metric (see the module docstring)."""

    name = "frame_consistency"

    def __init__(self, encoder: ImageEncoder) -> None:
        self.encoder = encoder

    def __call__(self, frames: np.ndarray, prompt: str = "") -> float:
        if len(frames) < 2:
            return float("nan")
        emb = self.encoder.images(frames)
        return float((emb[1:] * emb[:-1]).sum(dim=-1).mean())

    def describe(self) -> dict[str, Any]:
        return self.encoder.describe()


def clip_score(model: str = DEFAULT_CLIP_MODEL, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False) -> ClipScore:
    """Factory of ``clip_score``: ``model`` is a local CLIP folder or a hub id already in the cache."""
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(str(model), local_files_only=True).model_type
    if model_type != "clip":  # refused before any weights load
        raise ValueError(f"clip_score needs a CLIP model (text and image towers); '{model}' is a {model_type} model")
    return ClipScore(load_encoder(str(model), device, dtype, bool(allow_pickle)))


def frame_consistency(model: str = DEFAULT_CLIP_MODEL, device: str | None = None, dtype: str | None = None, allow_pickle: bool = False) -> FrameConsistency:
    """Factory of ``frame_consistency``: ``model`` is a CLIP model, or a DINO/ViT image model (CLS embedding)."""
    return FrameConsistency(load_encoder(str(model), device, dtype, bool(allow_pickle)))
