"""Plugin groups read the same way for every kind of plugin: lazily, in name order, one broken entry point never breaks the rest.

An entry point names a light object (a spec); what it describes is imported only when used, through a
``"package.module:attribute"`` reference that :func:`resolve` follows. :func:`load_group` reads a group and
hands each loaded object to an ``adapt`` function that turns it into the caller's spec type (or refuses it
with a ``TypeError``); anything that fails is reported as a :class:`BrokenEntryPoint` instead of raising.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

__all__ = ["BrokenEntryPoint", "load_group", "resolve"]

T = TypeVar("T")


@dataclass(frozen=True)
class BrokenEntryPoint:
    """An entry point that could not be loaded, or that names the wrong kind of object; listings show it with its error."""

    name: str
    distribution: str | None
    value: str
    error: str


def resolve(reference: str | Callable[..., Any]) -> Any:
    """The object a ``"package.module:attr.sub"`` reference names (imported now); a callable is returned as it is."""
    if callable(reference):
        return reference
    module_name, _, attr = reference.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def load_group(group: str, adapt: Callable[[str, Any], T]) -> tuple[dict[str, tuple[T, str | None]], list[BrokenEntryPoint]]:
    """Every entry point of ``group``, in name order: ``{name: (adapt(name, object), distribution)}`` and the broken ones.

    ``adapt`` receives the entry point's name and the loaded object and returns the caller's spec; it raises
    ``TypeError`` (with a message saying what was expected) for an object of the wrong kind. An entry point
    that fails to import with any exception (``SystemExit`` included, not ``KeyboardInterrupt``) is broken.
    When two distributions register one name, ivmixed's own entry point (else the first distribution by
    name) keeps the plain name and the other is reachable as ``DISTRIBUTION:NAME``; one distribution seen
    twice on ``sys.path`` counts once.
    """
    found: dict[str, tuple[T, str | None]] = {}
    broken: list[BrokenEntryPoint] = []
    holder: dict[str, str | None] = {}  # plain name -> the distribution that holds it
    for ep in sorted(entry_points(group=group), key=lambda ep: (ep.name, _rank(ep), ep.value)):
        dist = _dist(ep)
        name = ep.name
        if name in holder:
            if holder[name] == dist:
                continue
            name = f"{dist}:{ep.name}"
            if name in found or any(b.name == name for b in broken):
                continue
        else:
            holder[name] = dist
        try:
            obj = ep.load()
            found[name] = (adapt(name, obj), dist)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin (even one calling sys.exit at import) must not break discovery
            broken.append(BrokenEntryPoint(name, dist, ep.value, f"{type(exc).__name__}: {exc}"))
    return found, broken


def _dist(ep) -> str | None:
    return ep.dist.name if getattr(ep, "dist", None) is not None else None


def _rank(ep) -> tuple[int, str]:
    """ivmixed's own entry points first, then the others by distribution name."""
    dist = _dist(ep) or ""
    return (0 if dist == "ivmixed" else 1, dist)
