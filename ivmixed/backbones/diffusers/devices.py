"""Device and precision of a diffusers backbone, and the keyword arguments of every ``from_pretrained``.

CUDA when present, fp16 on CUDA and fp32 on the CPU; fp16 on the CPU is refused (see :func:`resolve_dtype`).
Weights load as ``.safetensors`` only unless the user allowed pickled weights (:func:`load_kwargs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .weights import Location

__all__ = ["resolve_device", "resolve_dtype", "dtype_name", "dtype_keyword", "load_kwargs", "to_device"]

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on: as given, else ``cuda`` when available, else ``cpu``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device {device!r} is not a device torch knows (try cpu, cuda or cuda:1): {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {device} asks for CUDA, but torch {torch.__version__} sees no CUDA device here; use --device cpu"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The model precision: as given, else fp16 on CUDA and fp32 elsewhere.

    fp16 on the CPU is refused rather than silently changed: many CPU kernels lack fp16 and the rest are
    slow, so the user chooses fp32 (the CPU default) or bf16 explicitly.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        key = str(dtype).lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ValueError(f"--dtype {dtype!r}: expected fp32, fp16 or bf16")
        resolved = _DTYPES[key]
    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"--dtype {dtype!r}: expected fp32, fp16 or bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise ValueError("--dtype fp16 needs a CUDA device; on the CPU use fp32 (the default there) or bf16")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


#: the first diffusers release whose ``from_pretrained`` takes ``dtype`` (``torch_dtype`` is deprecated from then on)
DTYPE_KEYWORD_SINCE = "0.40.0"


def dtype_keyword() -> str:
    """The name diffusers' ``from_pretrained`` uses for the dtype: ``dtype`` from 0.40.0, ``torch_dtype`` before."""
    from importlib.metadata import version

    from packaging.version import Version

    return "dtype" if Version(version("diffusers")) >= Version(DTYPE_KEYWORD_SINCE) else "torch_dtype"


def load_kwargs(
    dtype: torch.dtype, *, allow_pickle: bool, variant: str | None = None, location: Location | None = None
) -> dict[str, Any]:
    """Keyword arguments for every ``from_pretrained``: dtype, safetensors only unless pickles are allowed, variant,
    and the revision of a model that is downloaded from the hub (a cached one is already that revision's folder)."""
    kwargs: dict[str, Any] = {dtype_keyword(): dtype, "use_safetensors": None if allow_pickle else True}
    if variant:
        kwargs["variant"] = variant
    if location is not None and location.kind == "hub" and location.revision:
        kwargs["revision"] = location.revision
    return kwargs


def to_device(*modules, device: torch.device) -> None:
    """Move modules to ``device``, in eval mode.

    Parameters keep ``requires_grad`` as loaded: every call runs under ``torch.no_grad()`` anyway, and turning
    it off switches some CPU kernels (3-D convolutions) to other algorithms, which would cost the bit-exact
    agreement with the stock pipelines.
    """
    for module in modules:
        if module is not None:
            module.to(device)
            module.eval()
