"""Tiny random CLIP and ViT (DINO-layout) models for the frame metrics, saved in the folder layouts of the hub repositories.

Built in code, no download: ``tiny_clip(folder)`` writes ``config.json``, ``model.safetensors``,
``preprocessor_config.json`` and a CLIP tokenizer (vocab.json + merges.txt) like ``openai/clip-vit-*``;
``tiny_vit(folder)`` writes a ViT model and its image processor like ``facebook/dino-vit*``. The metrics load
them through their real ``from_pretrained(..., local_files_only=True)`` path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny import MAX_TOKENS, write_tiny_tokenizer

__all__ = ["tiny_clip", "tiny_vit", "IMAGE_SIZE"]

IMAGE_SIZE = 32  # input side of the tiny image towers (224 in the real models)


def tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """A random CLIP model (2-layer towers of width 32, projection 16) with its tokenizer and image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = Path(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder, safe_serialization=True)
    write_tiny_tokenizer(folder)
    CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def tiny_vit(folder: str | Path, *, seed: int = 0) -> Path:
    """A random ViT image model (2 layers of width 32) and its image processor, the layout of a DINO checkpoint."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=8)
    ViTModel(config).eval().save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder
