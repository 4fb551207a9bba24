"""Text encoders: loading one from a pipeline folder, and prompt encoding into the doubled CFG batch ``[uncond; cond]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .weights import Location

__all__ = ["encode_texts", "encode_prompt_pair", "load_text_encoder"]


def load_text_encoder(location: Location, *, subfolder: str = "text_encoder", tokenizer_subfolder: str = "tokenizer", **kwargs: Any):
    """``(text_encoder, tokenizer)`` of a pipeline folder: the transformers class its config names (default ``CLIPTextModel``).

    ``kwargs`` go to the text encoder's ``from_pretrained`` (dtype, ``use_safetensors``, variant, revision).
    """
    import transformers

    config = location.read_json(f"{subfolder}/config.json") or {}
    class_name = (config.get("architectures") or ["CLIPTextModel"])[0]
    text_class = getattr(transformers, class_name, transformers.CLIPTextModel)
    text_encoder = text_class.from_pretrained(location.path, subfolder=subfolder, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(location.path, subfolder=tokenizer_subfolder)
    return text_encoder, tokenizer


def encode_texts(tokenizer, text_encoder, texts: list[str], device: torch.device) -> torch.Tensor:
    """CLIP text embeddings of ``texts`` (last hidden state), exactly as diffusers' SD pipelines compute them."""
    inputs = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    mask = inputs.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        embeds = text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
    return embeds.to(dtype=text_encoder.dtype, device=device)


def encode_prompt_pair(tokenizer, text_encoder, prompts: list[str], negatives: list[str], device: torch.device) -> torch.Tensor:
    """Embeddings of the doubled CFG batch ``[uncond; cond]``: shape ``(2B, L, D)``, negatives first.

    Prompts are encoded as one batch and negative prompts as another, in that order, like
    ``StableDiffusionPipeline.encode_prompt`` (so the numbers agree with the stock pipelines bit for bit).
    """
    if len(prompts) != len(negatives):
        raise ValueError(f"{len(prompts)} prompts but {len(negatives)} negative prompts")
    cond = encode_texts(tokenizer, text_encoder, list(prompts), device)
    uncond = encode_texts(tokenizer, text_encoder, list(negatives), device)
    return torch.cat([uncond, cond])
