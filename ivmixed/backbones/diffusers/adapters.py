"""LoRA on an image UNet: ``--image-lora FILE[:SCALE]`` read and checked before anything loads, applied after."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["LoraSpec", "parse_loras", "apply_loras"]


@dataclass(frozen=True)
class LoraSpec:
    """One ``--image-lora FILE[:SCALE]``."""

    path: Path
    scale: float = 1.0

    def __str__(self) -> str:
        return f"{self.path}:{self.scale:g}"


def parse_loras(items: Iterable[Any] | None, *, allow_pickle: bool = False) -> list[LoraSpec]:
    """Read ``"FILE[:SCALE]"`` strings (or ``(path, scale)`` pairs); check every file exists before anything loads."""
    specs: list[LoraSpec] = []
    for item in items or ():
        if isinstance(item, LoraSpec):
            spec = item
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            spec = LoraSpec(Path(item[0]), float(item[1]))
        else:
            text = os.fspath(item)
            path, scale = text, 1.0
            head, sep, tail = text.rpartition(":")
            if sep and head:
                try:
                    path, scale = head, float(tail)
                except ValueError:
                    path = text  # a colon that is part of the path
            spec = LoraSpec(Path(os.path.expanduser(path)), scale)
        if not spec.path.is_file():
            raise FileNotFoundError(f"--image-lora {spec.path}: no such file")
        if spec.path.suffix.lower() != ".safetensors" and not allow_pickle:
            raise ValueError(
                f"--image-lora {spec.path}: not a .safetensors file; pickled weights can run code when loaded, "
                "so they need --allow-pickle (only for files you trust)"
            )
        specs.append(spec)
    return specs


def apply_loras(unet, loras: Sequence[LoraSpec], *, allow_pickle: bool = False, prefix: str = "image_lora") -> list[str]:
    """Load each LoRA into ``unet`` through diffusers' LoRA loader and activate them with their scales.

    ``StableDiffusionPipeline.lora_state_dict`` reads diffusers, peft and kohya / civitai (``lora_unet_…``)
    files directly; only the UNet part is used (the text-encoder part of a LoRA is ignored, as in the
    released code). Returns the adapter names.
    """
    if not loras:
        return []
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise ImportError("--image-lora needs the peft package: pip install 'ivmixed[lora]' (or pip install peft)")
    from diffusers import StableDiffusionPipeline

    names = []
    for index, lora in enumerate(loras):
        state_dict, alphas, metadata = StableDiffusionPipeline.lora_state_dict(
            str(lora.path.parent),
            weight_name=lora.path.name,
            use_safetensors=lora.path.suffix.lower() == ".safetensors" or not allow_pickle,
            return_lora_metadata=True,
        )
        if not any(k.startswith(("unet.", "text_encoder.")) for k in state_dict):
            state_dict = {f"unet.{k}": v for k, v in state_dict.items()}  # a bare UNet adapter (peft key names)
        if not any(k.startswith("unet.") for k in state_dict):
            raise ValueError(f"--image-lora {lora.path}: the file holds no UNet weights (only a text-encoder part?)")
        name = f"{prefix}_{index}"
        StableDiffusionPipeline.load_lora_into_unet(state_dict, alphas, unet, adapter_name=name, metadata=metadata)
        names.append(name)
    unet.set_adapters(names, weights=[lora.scale for lora in loras])
    return names
