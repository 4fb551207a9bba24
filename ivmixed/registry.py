"""The backbone registry: entry-point group ``ivmixed.backbones``, discovered lazily, one broken plugin never breaks the rest.

An entry point names a :class:`BackboneSpec` (a light object: importing it must not import torch or
diffusers). The spec's ``factory`` — ``"module:callable"`` or a callable — is imported only when the
backbone is loaded. ivmixed's own backbones are declared through the same group in its pyproject.toml.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackboneSpec",
    "BrokenBackbone",
    "UnknownBackbone",
    "register_backbone",
    "unregister_backbone",
    "discover",
    "get_spec",
    "load_backbone",
]

ENTRY_POINT_GROUP = "ivmixed.backbones"


class UnknownBackbone(KeyError):
    """No backbone of that name is registered."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows of a backbone before it is loaded.

    Args:
        name: the registered name (``--backbone NAME``).
        factory: ``"package.module:callable"`` or a callable; called with the user's options, returns a
            :class:`~ivmixed.backbones.base.Backbone`.
        summary: one line for ``ivmixed list``.
        roles: what plays each role, e.g. ``{"vdm": "AnimateDiff ...", "idm": "SD 1.5 ..."}``.
        default_models: option name -> default model id (``{"model": "...", "image_model": "..."}``).
        requires: importable modules the backbone needs (checked by ``ivmixed list`` without importing them).
        install_hint: how to get missing requirements.
        prefers_cuda: the backbone is meant for a GPU (it still runs on a CPU, slowly).
        weight_files: for each default model, a file whose presence in the Hugging Face cache shows the
            weights are local (``{"model": "model_index.json"}``); models without an entry count as local.
        size_multiple: height and width must be multiples of this (checked before loading anything).
        default_steps: the backbone's default number of steps, so program windows are checked before loading.
    """

    name: str
    factory: str | Callable[..., Any]
    summary: str = ""
    roles: dict[str, str] = field(default_factory=dict)
    default_models: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ("torch",)
    install_hint: str = ""
    prefers_cuda: bool = False
    weight_files: dict[str, str] = field(default_factory=dict)
    size_multiple: int = 8  # height and width must be multiples of this (the VAE factor; 1 in pixel space)
    default_steps: int = 50  # the backbone's default number of steps (program windows are checked against it)
    distribution: str | None = None  # filled in by discovery

    def resolve_factory(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        module = importlib.import_module(module_name)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def load(self, **options) -> Any:
        """Import the backbone's code and build it with ``options`` (e.g. ``model=``, ``device=``, ``dtype=``)."""
        missing = self.missing_requirements()
        if missing:
            hint = f" {self.install_hint}" if self.install_hint else ""
            raise ImportError(f"backbone '{self.name}' needs {', '.join(missing)}, which cannot be imported here.{hint}")
        factory = self.resolve_factory()
        _check_options(self.name, factory, options)
        return factory(**options)

    def missing_requirements(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def availability(self) -> dict[str, Any]:
        """Whether this backbone can run here: requirements importable and default weights local.

        ``cuda`` says whether a GPU is present; a backbone that prefers one still runs on the CPU, slowly,
        which ``note`` says.
        """
        missing = self.missing_requirements()
        cuda = None
        if importlib.util.find_spec("torch") is not None:
            import torch

            cuda = bool(torch.cuda.is_available())
        weights = {option: weights_are_local(model_id, self.weight_files.get(option)) for option, model_id in self.default_models.items()}
        ready = not missing and all(weights.values())
        note = "runs on the CPU, slowly (no CUDA here)" if ready and self.prefers_cuda and not cuda else ""
        return {"requirements_missing": missing, "cuda": cuda, "weights_local": weights, "can_run": ready, "note": note}


@dataclass(frozen=True)
class BrokenBackbone:
    """An entry point that could not be loaded; ``ivmixed list`` shows it with its error."""

    name: str
    distribution: str | None
    value: str
    error: str


_REGISTERED: dict[str, BackboneSpec] = {}


def register_backbone(name: str, factory: Callable[..., Any] | str | BackboneSpec, **spec_fields) -> BackboneSpec:
    """Register a backbone at run time (for notebooks); it takes precedence over an entry point of the same name.

    ``factory`` is a callable ``(**options) -> Backbone``, a ``"module:callable"`` string, or a ready
    :class:`BackboneSpec`. Extra keyword arguments fill the spec (``summary=``, ``roles=`` …).
    """
    if isinstance(factory, BackboneSpec):
        spec = factory if factory.name == name else BackboneSpec(**{**factory.__dict__, "name": name})
    else:
        spec = BackboneSpec(name=name, factory=factory, **spec_fields)
    _REGISTERED[name] = spec
    return spec


def unregister_backbone(name: str) -> None:
    _REGISTERED.pop(name, None)


def discover() -> tuple[dict[str, BackboneSpec], list[BrokenBackbone]]:
    """All backbones, in name order: entry points of the ``ivmixed.backbones`` group, then run-time registrations.

    An entry point that fails to import, or does not name a :class:`BackboneSpec` or a callable, is
    returned in the second list instead of raising.
    """
    found: dict[str, BackboneSpec] = {}
    broken: list[BrokenBackbone] = []
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))
    for ep in eps:
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else None
        if ep.name in found:  # the same distribution seen twice on sys.path: keep the first
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not break discovery
            broken.append(BrokenBackbone(ep.name, dist, ep.value, f"{type(exc).__name__}: {exc}"))
            continue
        if isinstance(obj, BackboneSpec):
            spec = obj if obj.name == ep.name else BackboneSpec(**{**obj.__dict__, "name": ep.name})
        elif callable(obj):
            spec = BackboneSpec(name=ep.name, factory=obj, summary=(obj.__doc__ or "").strip().split("\n")[0])
        else:
            broken.append(BrokenBackbone(ep.name, dist, ep.value, f"entry point gives {type(obj).__name__}, not a BackboneSpec or a callable"))
            continue
        found[ep.name] = BackboneSpec(**{**spec.__dict__, "distribution": dist})
    for name, spec in _REGISTERED.items():
        found[name] = spec if spec.distribution else BackboneSpec(**{**spec.__dict__, "distribution": "(registered at run time)"})
    return dict(sorted(found.items())), broken


def get_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; an unknown name raises :class:`UnknownBackbone` listing the known ones."""
    found, broken = discover()
    if name in found:
        return found[name]
    for b in broken:
        if b.name == name:
            raise ImportError(f"backbone '{name}' (from {b.distribution or 'an unknown distribution'}) is broken: {b.error}")
    known = ", ".join(found) or "none"
    raise UnknownBackbone(f"unknown backbone '{name}'; known backbones: {known}. See `ivmixed list`.")


def load_backbone(name: str, **options) -> Any:
    """Load backbone ``name`` with ``options`` (``ivmixed.load`` is the same function)."""
    return get_spec(name).load(**options)


def _check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options the factory does not take, naming the ones it does (before anything loads)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(
            f"backbone '{name}' does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}"
        )


def weights_are_local(model_id: str, probe_file: str | None) -> bool:
    """True when ``model_id`` is a local path, or its ``probe_file`` is in the Hugging Face cache."""
    if probe_file is None:
        return True
    if os.path.exists(model_id):
        return True
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(model_id, probe_file)
    except Exception:
        return False
    return isinstance(hit, str)
