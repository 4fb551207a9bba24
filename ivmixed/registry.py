"""The backbone registry: entry-point group ``ivmixed.backbones``, discovered lazily, one broken plugin never breaks the rest.

An entry point names a :class:`BackboneSpec` (a light object: importing it must not import torch or
diffusers). The spec's ``factory`` — ``"module:callable"`` or a callable — is imported only when the
backbone is loaded. ivmixed's own backbones are declared through the same group in its pyproject.toml.

A plugin that fails to import — with any exception, ``SystemExit`` included — is listed as broken and
breaks nothing else. When two distributions register the same name, ivmixed's own backbone (else the
first distribution by name) keeps the plain name and the other is reachable as ``DISTRIBUTION:NAME``
(``--backbone other-plugin:toy``); ``ivmixed list`` shows both and a warning names the choice on use.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .schedules import GuidanceTable

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackboneSpec",
    "Defaults",
    "Preset",
    "Option",
    "BrokenBackbone",
    "PluginError",
    "UnknownBackbone",
    "register_backbone",
    "unregister_backbone",
    "discover",
    "get_spec",
    "load_backbone",
]

ENTRY_POINT_GROUP = "ivmixed.backbones"
#: the distribution whose backbones keep their plain names when a plugin registers the same name
BUILTIN_DISTRIBUTION = "ivmixed"

log = logging.getLogger("ivmixed.registry")


class PluginError(TypeError):
    """A backbone's code does not keep the plugin contract (its factory returned something that is not a Backbone)."""


class UnknownBackbone(KeyError):
    """No backbone of that name is registered."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class Preset:
    """A named bundle of sampling settings (``--preset NAME``); fields left None keep the backbone's defaults.

    ``zigzag`` is a :class:`~ivmixed.schedules.GuidanceTable` or a function that builds one when the preset is
    used (``zigzag=released_guidance``): the float32 ramps need torch, which a spec module must not import.
    """

    program: str | None = None
    guidance: float | None = None
    zigzag: GuidanceTable | Callable[[], GuidanceTable] | None = None
    description: str = ""

    def zigzag_table(self) -> GuidanceTable | None:
        """The zigzag guidance table of this preset (None: the backbone's default)."""
        return self.zigzag() if callable(self.zigzag) else self.zigzag


@dataclass(frozen=True)
class Defaults:
    """A backbone's defaults; every field can be overridden per call.

    Declared once, in the backbone's spec module (:attr:`BackboneSpec.defaults`), which the backbone class reads:
    the registry knows the default steps and the presets without importing the backbone.
    """

    height: int
    width: int
    frames: int
    steps: int = 50
    guidance: float = 7.5
    program: str = "IV-IV"
    fps: int = 8  # frame rate of written videos
    presets: dict[str, Preset] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One backbone option (``-o NAME=VALUE`` on the command line, ``NAME=value`` in ``ivmixed.load``).

    A backbone declares its options in :attr:`BackboneSpec.options`, so that a value of the wrong type or out of
    range is refused before anything is imported or loaded, and ``ivmixed list --options NAME`` can list them.

    Args:
        name: the keyword the factory takes.
        type: ``"float"``, ``"int"``, ``"str"`` or ``"bool"``. Text is read as that type (``"nan"``, ``"inf"``
            are read as numbers and refused as not finite). A ``"str"`` option also passes on objects that are not
            numbers or containers (a ``Path``, a ``torch.dtype``) for the factory to judge.
        default: the factory's default, for the listing (``None``: derived from other options).
        help: what the option means, one line.
        min, max: the allowed range of a number (inclusive, unless ``min_open`` / ``max_open``).
        choices: the allowed values of a text option.
        none_ok: ``none`` is a meaningful value (e.g. "derive it from another option"); ``None`` always means "not
            given" (the factory's default).
    """

    name: str
    type: str = "float"
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    choices: tuple[str, ...] | None = None
    none_ok: bool = False

    def __post_init__(self):
        if self.type not in _OPTION_TYPES:
            raise ValueError(f"option {self.name!r}: type must be one of {', '.join(_OPTION_TYPES)}, got {self.type!r}")

    def describe(self) -> str:
        """The allowed values in words: ``a number, 0 <= mismatch <= 10``."""
        if self.choices is not None:
            what = "one of " + ", ".join(self.choices)
        elif self.type == "bool":
            what = "true or false"
        elif self.type == "str":
            what = "text"
        else:
            what = "an integer" if self.type == "int" else "a number"
            low = None if self.min is None else f"{self.min:g} {'<' if self.min_open else '<='} "
            high = None if self.max is None else f" {'<' if self.max_open else '<='} {self.max:g}"
            if low or high:
                what += f", {low or ''}{self.name}{high or ''}"
        return what + (", or none" if self.none_ok else "")

    def check(self, value: Any) -> Any:
        """``value`` read as this option's type; ``ValueError`` in words when it is not allowed."""
        import math

        if value is None or (self.none_ok and isinstance(value, str) and value.lower() == "none"):
            return None  # not given: the factory's default
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.lower()]
            return self._refuse(value)
        if self.type == "str":
            if isinstance(value, str):
                return value if self.choices is None or value in self.choices else self._refuse(value)
            if isinstance(value, (bool, int, float, complex, list, tuple, dict, set)):
                return self._refuse(value)
            return value  # an object the factory may take in Python (a Path, a torch.dtype or torch.device)
        if isinstance(value, str):  # text that ast.literal_eval could not read: "nan", "inf", "abc"
            try:
                value = float(value.strip())
            except ValueError:
                return self._refuse(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._refuse(value)
        if not math.isfinite(value):
            return self._refuse(value, " (not a finite number)")
        if self.type == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    return self._refuse(value)
                value = int(value)
        low_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
        high_ok = self.max is None or (value < self.max if self.max_open else value <= self.max)
        if not (low_ok and high_ok):
            return self._refuse(value)
        return value

    def _refuse(self, value: Any, note: str = ""):
        from .errors import quoted

        shown = quoted(value) if isinstance(value, str) else repr(value)
        raise ValueError(f"option {self.name}={shown}: expected {self.describe()}, got {shown}{note}")


_OPTION_TYPES = ("float", "int", "str", "bool")
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


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
        defaults: the backbone's :class:`Defaults` (size, steps, guidance, program, presets), declared here once
            for the registry and the backbone class alike; ``default_steps`` and ``presets`` are read off it.
        default_steps: the backbone's default number of steps, so program windows are checked before loading
            (set from ``defaults`` when it is given).
        steps_for: ``options -> steps``, the default number of steps where a backbone option changes it (a
            distilled checkpoint's step count), read before loading; without it, ``default_steps``.
        presets: the names of the backbone's presets, so ``--preset NAME`` is checked before loading (set from
            ``defaults`` when it is given); None: read them from the factory's class attribute ``defaults``
            (importing its module, loading no weights).
        prompt_check: ``"module:callable"`` or a callable that raises ``ValueError`` for a prompt the backbone
            cannot read (the toy world's vocabulary); every prompt is checked with it before loading.
        options: the :class:`Option` table of the factory's keyword options (type, range, default, meaning);
            a declared option is checked before anything loads, and ``ivmixed list --options NAME`` lists them.
            Options the table does not declare are passed on unchecked (the factory's signature still decides).
        num_train_timesteps: T of the backbone's noise schedule, so ``--steps`` is checked before loading.
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
    #: the hub revision each default model loads from where it is not ``main`` (a pull request that publishes
    #: safetensors), so that ``ivmixed list`` looks for the files where the backbone will
    default_revisions: dict[str, str] = field(default_factory=dict)
    size_multiple: int = 8  # height and width must be multiples of this (the VAE factor; 1 in pixel space)
    default_steps: int = 50  # the backbone's default number of steps (program windows are checked against it)
    #: the default number of steps under the given backbone options, where an option changes it (a distilled model's
    #: step count); None: always ``default_steps``. Must need no model (it runs before loading).
    steps_for: Callable[[dict[str, Any]], int] | None = None
    presets: tuple[str, ...] | None = None
    prompt_check: str | Callable[[str], Any] | None = None
    options: tuple[Option, ...] = ()
    num_train_timesteps: int = 1000
    defaults: Defaults | None = None
    distribution: str | None = None  # filled in by discovery
    conflict: str = ""  # filled in by discovery: another distribution registers the same name

    def __post_init__(self):
        if self.defaults is not None:  # one source: the steps and preset names are the defaults' own
            object.__setattr__(self, "default_steps", int(self.defaults.steps))
            object.__setattr__(self, "presets", tuple(self.defaults.presets))

    @staticmethod
    def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
        if callable(target):
            return target
        module_name, _, attr = target.partition(":")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def resolve_factory(self) -> Callable[..., Any]:
        return self._resolve(self.factory)

    def _require(self) -> None:
        missing = self.missing_requirements()
        if missing:
            hint = f" {self.install_hint}" if self.install_hint else ""
            raise ImportError(f"backbone '{self.name}' needs {', '.join(missing)}, which cannot be imported here.{hint}")

    def load(self, **options) -> Any:
        """Import the backbone's code and build it with ``options`` (e.g. ``model=``, ``device=``, ``dtype=``).

        Raises :class:`PluginError` when the factory returns something that is not a
        :class:`~ivmixed.backbones.base.Backbone`.
        """
        options = self.check_options(options)
        self._require()
        factory = self.resolve_factory()
        _check_options(self.name, factory, options)
        backbone = factory(**options)
        from .backbones.base import Backbone

        if not isinstance(backbone, Backbone):
            origin = f" (from {self.distribution})" if self.distribution else ""
            where = self.factory if isinstance(self.factory, str) else getattr(self.factory, "__qualname__", repr(self.factory))
            raise PluginError(
                f"backbone '{self.name}'{origin}: its factory {where} returned {type(backbone).__name__}, not a Backbone "
                "(a subclass of ivmixed.backbones.base.Backbone); the plugin is broken, tell its authors"
            )
        return backbone

    def option(self, name: str) -> Option | None:
        """The declared option ``name``, or None."""
        return next((o for o in self.options if o.name == name), None)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with every declared option read as its type and range-checked (``ValueError`` in words)."""
        checked = dict(options)
        for key, value in options.items():
            declared = self.option(key)
            if declared is not None:
                try:
                    checked[key] = declared.check(value)
                except ValueError as exc:
                    raise ValueError(f"backbone '{self.name}': {exc} (see `ivmixed list --options {self.name}`)") from None
        return checked

    def default_steps_for(self, options: dict[str, Any] | None = None) -> int:
        """The number of steps a run takes without ``--steps`` under these backbone options (before loading)."""
        if self.steps_for is None:
            return self.default_steps
        return int(self.steps_for(dict(options or {})))

    def check_steps(self, steps: int | None) -> None:
        """Refuse more sampling steps than the noise schedule has timesteps (before loading)."""
        if steps is not None and steps > self.num_train_timesteps:
            raise ValueError(
                f"--steps {steps} is more than the {self.num_train_timesteps} timesteps backbone '{self.name}' was trained on; "
                f"use at most --steps {self.num_train_timesteps}"
            )

    def preset_names(self) -> tuple[str, ...] | None:
        """The names ``--preset`` accepts, without loading weights; None when the backbone does not say."""
        if self.presets is not None:
            return tuple(self.presets)
        self._require()
        defaults = getattr(self.resolve_factory(), "defaults", None)
        presets = getattr(defaults, "presets", None)
        return tuple(presets) if isinstance(presets, dict) else None

    def check_preset(self, preset: str | None) -> None:
        """Refuse a preset name the backbone does not have (before loading), listing the ones it has."""
        if preset is None:
            return
        names = self.preset_names()
        if names is not None and preset not in names:
            from .errors import quoted

            raise ValueError(f"--preset {quoted(preset)}: backbone '{self.name}' has no such preset; its presets: {', '.join(sorted(names)) or 'none'}")

    def check_prompt(self, prompt: str) -> None:
        """Raise ``ValueError`` for a prompt this backbone cannot read (a no-op for backbones without a check)."""
        if self.prompt_check is None:
            return
        self._resolve(self.prompt_check)(prompt)

    def missing_requirements(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def availability(self) -> dict[str, Any]:
        """Whether this backbone can run here: requirements importable and default weights local.

        ``cuda`` says whether a GPU is present (None when not asked: only for a ready backbone that prefers one);
        a backbone that prefers a GPU still runs on the CPU, slowly, which ``note`` says.
        """
        missing = self.missing_requirements()
        weights = {
            option: weights_are_local(model_id, self.weight_files.get(option), self.default_revisions.get(option))
            for option, model_id in self.default_models.items()
        }
        ready = not missing and all(weights.values())
        cuda = None  # importing torch takes seconds: only asked when the answer changes the verdict
        if ready and self.prefers_cuda:
            import torch

            cuda = bool(torch.cuda.is_available())
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

    An entry point that fails to import (any exception, ``SystemExit`` included; not ``KeyboardInterrupt``), or
    does not name a :class:`BackboneSpec` or a callable, is returned in the second list instead of raising.
    A name registered by two distributions keeps ivmixed's own backbone (else the first distribution by name);
    the other is listed as ``DISTRIBUTION:NAME``, and both carry a ``conflict`` note.
    """
    found: dict[str, BackboneSpec] = {}
    broken: list[BrokenBackbone] = []
    seen: dict[str, str | None] = {}  # name -> distribution that holds the plain name
    shadowed: dict[str, list[str]] = {}  # plain name -> qualified names of the others
    eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, _dist_rank(ep), ep.value))
    for ep in eps:
        dist = _dist_name(ep)
        name = ep.name
        if name in seen:
            if seen[name] == dist:  # the same distribution seen twice on sys.path: keep the first
                continue
            name = f"{dist}:{ep.name}"
            if name in found or any(b.name == name for b in broken):
                continue
        else:
            seen[name] = dist
        try:
            obj = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin (even one calling sys.exit at import) must not break discovery
            broken.append(BrokenBackbone(name, dist, ep.value, f"{type(exc).__name__}: {exc}"))
            continue
        if isinstance(obj, BackboneSpec):
            spec = obj if obj.name == name else BackboneSpec(**{**obj.__dict__, "name": name})
        elif callable(obj):
            spec = BackboneSpec(name=name, factory=obj, summary=(obj.__doc__ or "").strip().split("\n")[0])
        else:
            broken.append(BrokenBackbone(name, dist, ep.value, f"entry point gives {type(obj).__name__}, not a BackboneSpec or a callable"))
            continue
        found[name] = BackboneSpec(**{**spec.__dict__, "distribution": dist})
        if name != ep.name:
            shadowed.setdefault(ep.name, []).append(name)
    for plain, others in shadowed.items():
        for qualified in others:
            other = found[qualified]
            found[qualified] = BackboneSpec(**{**other.__dict__, "conflict": (
                f"also named '{plain}', but --backbone {plain} is the one from {seen[plain]}; this one is --backbone {qualified}"
            )})
        if plain in found:
            found[plain] = BackboneSpec(**{**found[plain].__dict__, "conflict": (
                f"the name '{plain}' is also registered by {', '.join(found[q].distribution or '?' for q in others)}; "
                f"this one (from {seen[plain]}) is used; choose the other with --backbone {' or '.join(others)}"
            )})
    for name, spec in _REGISTERED.items():
        found[name] = spec if spec.distribution else BackboneSpec(**{**spec.__dict__, "distribution": "(registered at run time)"})
    return dict(sorted(found.items())), broken


def _dist_name(ep) -> str | None:
    return ep.dist.name if getattr(ep, "dist", None) is not None else None


def _dist_rank(ep) -> tuple[int, str]:
    """ivmixed's own entry points first, then the others by distribution name."""
    dist = _dist_name(ep) or ""
    return (0 if dist == BUILTIN_DISTRIBUTION else 1, dist)


_WARNED: set[str] = set()


def get_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name``; an unknown name raises :class:`UnknownBackbone` listing the known ones."""
    found, broken = discover()
    if name in found:
        spec = found[name]
        if spec.conflict and name not in _WARNED:
            _WARNED.add(name)
            log.warning("backbone '%s': %s", name, spec.conflict)
        return spec
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


def weights_are_local(model_id: str, probe_file: str | None, revision: str | None = None) -> bool:
    """True when ``model_id`` is a local path, or its ``probe_file`` is in the Hugging Face cache at ``revision`` (default main)."""
    if probe_file is None:
        return True
    if os.path.exists(model_id):
        return True
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(model_id, probe_file, revision=revision)
    except Exception:
        return False
    return isinstance(hit, str)
