"""Guidance-scale schedules: ramps indexed by sampling step, and the table the zigzag reads them from.

Step index i = 0 is the noisiest step. Every ramp is built for the actual number of steps ``n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
__all__ = [
    "karras_ramp",
    "karras_ramp_float32",
    "constant",
    "linear",
    "Ramp",
    "GuidanceTable",
    "from_released_knobs",
    "released_guidance",
]


def karras_ramp(n: int, begin: float, end: float, rho: float = 7.0) -> list[float]:
    """The ρ-curve of Karras et al. (2022), eq. (5), used as a guidance ramp from ``begin`` (i = 0) to ``end``.

    g_i = (begin^(1/ρ) + i/(n−1) · (end^(1/ρ) − begin^(1/ρ)))^ρ,  i = 0..n−1.
    """
    _check_n(n)
    if begin < 0 or end < 0:
        raise ValueError(f"karras_ramp needs non-negative ends (a power 1/rho is taken): got begin={begin}, end={end}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    lo, hi = begin ** (1 / rho), end ** (1 / rho)
    if n == 1:
        return [float(begin)]
    return [(lo + i / (n - 1) * (hi - lo)) ** rho for i in range(n)]


def karras_ramp_float32(n: int, begin: float, end: float, rho: float = 7.0) -> list[float]:
    """:func:`karras_ramp` computed in float32 as the released code computes its guidance arrays.

    ``ramp = torch.linspace(0, 1, n)`` (float32), then ``(begin^(1/ρ) + ramp · (end^(1/ρ) − begin^(1/ρ)))^ρ``
    in float32. The ends are then not exact: ``begin = end = 4`` gives 4.000000953674316 at every step
    (2 gives 1.999999761581421, 6 gives 6.000000476837158). Returned as Python floats holding those values.
    """
    _check_n(n)
    if begin < 0 or end < 0:
        raise ValueError(f"karras_ramp needs non-negative ends (a power 1/rho is taken): got begin={begin}, end={end}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    import torch  # only this ramp needs it

    lo, hi = begin ** (1 / rho), end ** (1 / rho)
    ramp = torch.linspace(0, 1, n, dtype=torch.float32)
    return ((lo + ramp * (hi - lo)) ** rho).tolist()


def constant(n: int, value: float) -> list[float]:
    """The same scale at every step."""
    _check_n(n)
    return [float(value)] * n


def linear(n: int, begin: float, end: float) -> list[float]:
    """A straight ramp from ``begin`` (i = 0) to ``end`` (i = n−1)."""
    _check_n(n)
    if n == 1:
        return [float(begin)]
    return [begin + i / (n - 1) * (end - begin) for i in range(n)]


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"a ramp needs a positive integer number of steps, got {n!r}")


@dataclass(frozen=True)
class Ramp:
    """A guidance ramp described by its kind and parameters, built for any number of steps with :meth:`build`.

    ``Ramp("karras", (6, 2, 7))`` is ``karras_ramp(n, 6, 2, 7)``; ``Ramp("constant", (4,))`` is ``constant(n, 4)``.
    """

    kind: str
    params: tuple[float, ...]

    _KINDS = {"karras": karras_ramp, "karras-float32": karras_ramp_float32, "constant": constant, "linear": linear}

    def __post_init__(self):
        if self.kind not in self._KINDS:
            raise ValueError(f"unknown ramp kind {self.kind!r}; expected one of {sorted(self._KINDS)}")
        if not all(math.isfinite(p) for p in self.params):
            raise ValueError(f"guidance ramp {self.kind}{tuple(self.params)} has a value that is not a finite number")
        self.build(2)  # a bad parameter (e.g. rho <= 0) is refused now, not in the middle of sampling

    def build(self, n: int) -> list[float]:
        return self._KINDS[self.kind](n, *self.params)

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(f'{p:g}' for p in self.params)})"

    @classmethod
    def parse(cls, text: str) -> "Ramp":
        """Read ``4``, ``constant(4)``, ``linear(6,2)``, ``karras(6,2,7)`` or ``karras-float32(4,4,7)``."""
        text = text.strip()
        try:
            return cls("constant", (float(text),))
        except ValueError:
            pass
        kind, _, rest = text.partition("(")
        if not rest.endswith(")"):
            raise ValueError(
                f"cannot read guidance ramp {text!r}: expected a number, constant(G), linear(BEGIN,END) "
                "or karras(BEGIN,END[,RHO]) or karras-float32(BEGIN,END[,RHO])"
            )
        try:
            params = tuple(float(p) for p in rest[:-1].split(",") if p.strip())
        except ValueError:
            raise ValueError(f"cannot read the numbers of guidance ramp {text!r}") from None
        kind = kind.strip()
        arity = {"constant": (1,), "linear": (2,), "karras": (2, 3), "karras-float32": (2, 3)}.get(kind)
        if arity is None:
            raise ValueError(
                f"unknown ramp kind {kind!r} in {text!r}; expected constant, linear, karras or karras-float32"
            )
        if len(params) not in arity:
            raise ValueError(f"{kind} takes {' or '.join(map(str, arity))} numbers, got {len(params)} in {text!r}")
        return cls(kind, params)


DEFAULT_ZIGZAG_SCALE = 4.0


def _default_ramp() -> Ramp:
    return Ramp("constant", (DEFAULT_ZIGZAG_SCALE,))


@dataclass(frozen=True)
class GuidanceTable:
    """Guidance ramps of the zigzag sub-steps per (model I/V) × (direction go/back).

    "go" sub-steps (denoising) use +γ_go(model, i); "back" sub-steps (inversion) use ε_u − γ_back(model, i)·(ε_c − ε_u),
    i.e. the negated scale. The default is exactly 4 for all four; the released code's default is the float32
    value 4.000000953674316 (:func:`released_guidance`).
    """

    i_go: Ramp = field(default_factory=_default_ramp)
    i_back: Ramp = field(default_factory=_default_ramp)
    v_go: Ramp = field(default_factory=_default_ramp)
    v_back: Ramp = field(default_factory=_default_ramp)

    @classmethod
    def uniform(cls, ramp: Ramp | float) -> "GuidanceTable":
        """All four entries the same ramp (a number means a constant ramp)."""
        if not isinstance(ramp, Ramp):
            ramp = Ramp("constant", (float(ramp),))
        return cls(ramp, ramp, ramp, ramp)

    def build(self, num_steps: int) -> "BuiltGuidance":
        return BuiltGuidance(
            {
                ("idm", "go"): self.i_go.build(num_steps),
                ("idm", "back"): self.i_back.build(num_steps),
                ("vdm", "go"): self.v_go.build(num_steps),
                ("vdm", "back"): self.v_back.build(num_steps),
            }
        )

    def as_dict(self) -> dict[str, str]:
        return {"i_go": str(self.i_go), "i_back": str(self.i_back), "v_go": str(self.v_go), "v_back": str(self.v_back)}


@dataclass(frozen=True)
class BuiltGuidance:
    """A :class:`GuidanceTable` evaluated for N steps; :meth:`scale` gives the *signed* scale a sub-step uses."""

    scales: dict[tuple[str, str], list[float]]

    def scale(self, model: str, direction: str, step: int) -> float:
        g = self.scales[(model, direction)][step]
        return g if direction == "go" else -g


def from_released_knobs(
    i_sigma_begin: float = 4.0,
    i_sigma_end: float = 4.0,
    v_sigma_begin: float = 4.0,
    v_sigma_end: float = 4.0,
    rho: float = 7.0,
) -> GuidanceTable:
    """The released code's ``--i_sigma_begin/end``, ``--v_sigma_begin/end`` and ``--rho`` as a :class:`GuidanceTable`.

    The released code builds one Karras ramp for the IDM and one for the VDM and uses each for both the
    denoise and the (negated) inversion sub-steps of that model. Here the ramps are built for the real
    number of steps (the released code hard-codes 50).
    """
    i_ramp = Ramp("karras", (i_sigma_begin, i_sigma_end, rho))
    v_ramp = Ramp("karras", (v_sigma_begin, v_sigma_end, rho))
    return GuidanceTable(i_go=i_ramp, i_back=i_ramp, v_go=v_ramp, v_back=v_ramp)


def released_guidance() -> GuidanceTable:
    """The zigzag guidance the released code runs with its default knobs: 4 for every sub-step, as float32 Karras ramps.

    ``karras-float32(4, 4, 7)`` is 4.000000953674316 at every step, not 4.0; the ``reference`` presets use it so
    that they reproduce the released latents exactly (the default :class:`GuidanceTable` keeps exact 4.0).
    """
    return GuidanceTable.uniform(Ramp("karras-float32", (4.0, 4.0, 7.0)))
