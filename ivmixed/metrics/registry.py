"""The metric registry: entry-point group ``ivmixed.metrics``, discovered lazily, one broken plugin never breaks the rest.

An entry point names a :class:`MetricSpec` (a light object: importing it must not import torch or
transformers). The spec's ``factory`` — ``"module:callable"`` or a callable — is imported only when the
metric is loaded, and returns a *metric*: a callable ``metric(frames, prompt) -> float`` on one decoded
video, ``frames`` float32 of shape (F, H, W, 3) in [0, 1]. ivmixed's own metrics are declared through the
same group in its pyproject.toml.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np

from ..entrypoints import BrokenEntryPoint, load_group, resolve
from ..registry import weights_are_local

__all__ = [
    "ENTRY_POINT_GROUP",
    "Metric",
    "MetricSpec",
    "UnknownMetric",
    "discover_metrics",
    "get_metric_spec",
    "load_metric",
    "register_metric",
    "unregister_metric",
]

ENTRY_POINT_GROUP = "ivmixed.metrics"


class UnknownMetric(ValueError):
    """No metric of that name is registered."""


class Metric(Protocol):
    """What a metric factory returns: one number per decoded video."""

    def __call__(self, frames: np.ndarray, prompt: str) -> float: ...


@dataclass(frozen=True)
class MetricSpec:
    """What the registry knows of a metric before it is loaded.

    Args:
        name: the registered name (``--metrics NAME``).
        factory: ``"package.module:callable"`` or a callable; called with the user's options (``model=``,
            ``device=`` …), returns a :class:`Metric`.
        summary: one line for the listing.
        higher_is_better: the direction of "better" (None: a diagnostic with no better direction, e.g. motion).
        default_model: the model id the metric uses unless ``model=`` is given (None: needs no weights).
        weight_file: a file whose presence in the Hugging Face cache shows the default model is local.
        requires: importable modules the metric needs (checked without importing them).
        install_hint: how to get missing requirements.
    """

    name: str
    factory: str | Callable[..., Any]
    summary: str = ""
    higher_is_better: bool | None = True
    default_model: str | None = None
    weight_file: str | None = "config.json"
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    distribution: str | None = None  # filled in by discovery

    def missing_requirements(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def model_is_local(self, model: str | None = None) -> bool:
        """Whether ``model`` (default: the spec's default model) is a local path or in the Hugging Face cache."""
        model = model or self.default_model
        return model is None or weights_are_local(model, self.weight_file)

    def availability(self) -> dict[str, Any]:
        """Whether this metric can run here with its defaults: requirements importable and default weights local."""
        missing = self.missing_requirements()
        local = self.model_is_local()
        return {"requirements_missing": missing, "weights_local": local, "can_run": not missing and local}

    def check(self, **options: Any) -> None:
        """Refuse, in words, what would make :meth:`load` fail: missing modules, unknown options, weights not local."""
        missing = self.missing_requirements()
        if missing:
            hint = f" {self.install_hint}" if self.install_hint else ""
            raise ImportError(f"metric '{self.name}' needs {', '.join(missing)}, which cannot be imported here.{hint}")
        factory = resolve(self.factory)
        _check_options(self.name, factory, options)
        model = options.get("model")
        if (model or self.default_model) and not self.model_is_local(model):
            shown = model or self.default_model
            raise FileNotFoundError(
                f"metric '{self.name}' needs the model '{shown}', which is neither a local folder nor in the Hugging Face "
                f"cache (metrics never download). Download it once with `huggingface-cli download {shown}`, or pass a "
                f"local folder with --metric-option {self.name}.model=PATH."
            )

    def load(self, **options: Any) -> Metric:
        """Check (see :meth:`check`), import the metric's code and build it with ``options``."""
        self.check(**options)
        return resolve(self.factory)(**options)


def _check_options(name: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(f"metric '{name}' does not take option(s) {', '.join(unknown)}; it takes: {', '.join(accepted) or 'none'}")


_REGISTERED: dict[str, MetricSpec] = {}


def register_metric(name: str, factory: Callable[..., Any] | str | MetricSpec, **spec_fields: Any) -> MetricSpec:
    """Register a metric at run time (notebooks); it takes precedence over an entry point of the same name.

    ``factory`` is a callable ``(**options) -> Metric``, a ``"module:callable"`` string, or a ready
    :class:`MetricSpec`. Extra keyword arguments fill the spec (``summary=``, ``higher_is_better=`` …).
    """
    if isinstance(factory, MetricSpec):
        spec = factory if factory.name == name else replace(factory, name=name)
    else:
        spec = MetricSpec(name=name, factory=factory, **spec_fields)
    _REGISTERED[name] = spec
    return spec


def unregister_metric(name: str) -> None:
    _REGISTERED.pop(name, None)


def _adapt(name: str, obj: Any) -> MetricSpec:
    if isinstance(obj, MetricSpec):
        return obj if obj.name == name else replace(obj, name=name)
    if callable(obj):
        return MetricSpec(name=name, factory=obj, summary=(obj.__doc__ or "").strip().split("\n")[0])
    raise TypeError(f"entry point gives {type(obj).__name__}, not a MetricSpec or a callable")


def discover_metrics() -> tuple[dict[str, MetricSpec], list[BrokenEntryPoint]]:
    """All metrics, in name order: entry points of the ``ivmixed.metrics`` group, then run-time registrations."""
    loaded, broken = load_group(ENTRY_POINT_GROUP, _adapt)
    found = {name: replace(spec, distribution=dist) for name, (spec, dist) in loaded.items()}
    for name, spec in _REGISTERED.items():
        found[name] = spec if spec.distribution else replace(spec, distribution="(registered at run time)")
    return dict(sorted(found.items())), broken


def get_metric_spec(name: str) -> MetricSpec:
    """The spec of metric ``name``; an unknown name raises :class:`UnknownMetric` listing the known ones."""
    found, broken = discover_metrics()
    if name in found:
        return found[name]
    for b in broken:
        if b.name == name:
            raise ImportError(f"metric '{name}' (from {b.distribution or 'an unknown distribution'}) is broken: {b.error}")
    raise UnknownMetric(f"unknown metric '{name}'; known metrics: {', '.join(found) or 'none'}. See `ivmixed list --metrics`.")


def load_metric(name: str, **options: Any) -> Metric:
    """Load metric ``name`` with ``options`` (``model=``, ``device=`` …)."""
    return get_metric_spec(name).load(**options)
