"""Sampling programs: the string language (``IV-IV+VV-VV@i%3=2``), its frozen values and the sub-step planner.

A program says, for every sampling step, which zigzag runs before the VDM's standard step. This module
is pure Python (no torch) so that ``ivmixed explain`` answers at once; the sampler asks a
:class:`Program` for its :meth:`~Program.substeps` and runs them.

Grammar (``WS?`` may stand between any two tokens; printing never emits it)::

    program   = clause ("+" clause)* END        # later clauses override earlier ones on the steps they select
    clause    = form (":" order)? ("@" selector)?
    form      = "origin" | NOISE "-" DENOISE    # NOISE = [RIV]+, DENOISE = [IV]+, same length
    order     = "df" | "nf" | "ad" | "denoise-first" | "noise-first" | "animatediff-swap"
    selector  = INT ".." INT                    # inclusive step-index window
              | NUMBER "%"                      # z% of the steps, evenly spread
              | "i" "%" INT ("=" | "==") INT    # periodic: steps with i % K == J
              | "all"

Form letters are upper case (R, I, V); keywords (``origin``, ``df``, ``nf``, ``ad``, ``i``, ``all``) are lower
case. See the README's "Sampling programs" section for the examples table and the exact meaning of every selector.

Limits, so that parsing, :meth:`Program.cost` and :func:`explain` stay fast on any input: a program has at
most :data:`MAX_PROGRAM_CHARS` characters and :data:`MAX_CLAUSES` clauses, a phase at most
:data:`MAX_LETTERS` letters, a step index, period or remainder is at most :data:`MAX_INDEX`, and a number
is at most :data:`MAX_NUMBER_CHARS` characters long (enough for the shortest decimal of every percentage
a float can hold). Beyond them the text is an :class:`InvalidProgram` pointing at the place.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, NoReturn, Sequence

__all__ = [
    "AllSteps",
    "clear_parse_cache",
    "guides_standard_step",
    "ANIMATEDIFF_SWAP",
    "Clause",
    "Cost",
    "Direction",
    "Every",
    "Form",
    "InvalidProgram",
    "LETTERS",
    "Letter",
    "MAX_CLAUSES",
    "MAX_INDEX",
    "MAX_LETTERS",
    "MAX_NUMBER_CHARS",
    "MAX_PROGRAM_CHARS",
    "ORIGIN",
    "Percent",
    "Primitive",
    "Program",
    "Role",
    "Selector",
    "SUBSTEP_SIZES",
    "SubStep",
    "Window",
    "check_substeps",
    "explain",
    "format_explain",
    "linspace_timesteps",
    "parse",
]

DENOISE_FIRST = "denoise-first"
NOISE_FIRST = "noise-first"
#: the released AnimateDiff pipeline's order: denoise-first with the levels of the two denoise sub-steps swapped
ANIMATEDIFF_SWAP = "animatediff-swap"
_ORDERS = (DENOISE_FIRST, NOISE_FIRST, ANIMATEDIFF_SWAP)
_ORDER_WORDS = {
    "df": DENOISE_FIRST,
    "nf": NOISE_FIRST,
    "ad": ANIMATEDIFF_SWAP,
    DENOISE_FIRST: DENOISE_FIRST,
    NOISE_FIRST: NOISE_FIRST,
    ANIMATEDIFF_SWAP: ANIMATEDIFF_SWAP,
}
_ORDER_SHORT = {DENOISE_FIRST: "df", NOISE_FIRST: "nf", ANIMATEDIFF_SWAP: "ad"}

#: the most characters a program may have
MAX_PROGRAM_CHARS = 20_000
#: the most clauses a program may have
MAX_CLAUSES = 1_000
#: the most letters in one phase of a form (``IV-IV`` has 2)
MAX_LETTERS = 64
#: the largest step index, period or remainder (no run has this many steps)
MAX_INDEX = 1_000_000
#: the longest number: the shortest decimal of the smallest positive float percentage has 326 characters
MAX_NUMBER_CHARS = 400


# --------------------------------------------------------------------------------------------------
# Letters: what every form letter means, in one table that the parser, the cost, the messages, the
# planner, explain and the interpreter all read
# --------------------------------------------------------------------------------------------------


class Role(StrEnum):
    """The model a sub-step calls. The values are the words of manifests, JSON and the guidance table."""

    IDM = "idm"  #: the image model, on every frame as one image
    VDM = "vdm"  #: the video model, on the whole clip

    @property
    def letters(self) -> str:
        """The letters that call this model (``"I"`` for the IDM), from :data:`LETTERS`."""
        return "".join(symbol for symbol, letter in LETTERS.items() if letter.role is self)


class Direction(StrEnum):
    """Which way a sub-step moves. ``go`` denoises (t_to ≤ t_from), ``back`` adds noise (t_to ≥ t_from)."""

    GO = "go"
    BACK = "back"

    @property
    def phase(self) -> str:
        """The phase of a form whose letters move this way: ``denoise`` or ``add-noise``."""
        return "denoise" if self is Direction.GO else "add-noise"

    @property
    def verb(self) -> str:
        """What a letter moving this way does, for messages (``R only adds noise``)."""
        return "denoises" if self is Direction.GO else "adds noise"


class Primitive(StrEnum):
    """The step primitive of :mod:`ivmixed.steps` that a sub-step runs."""

    ADD_NOISE = "add-noise"  #: ``add_noise``: fresh Gaussian noise from the run's generator, no model
    DDIM_INVERSION = "ddim-inversion"  #: ``deterministic_step`` up, with the model's guided estimate at t_from
    DDIM_DENOISE = "ddim-denoise"  #: ``deterministic_step`` down, with the model's guided estimate at t_from


@dataclass(frozen=True)
class Letter:
    """The meaning of one form letter.

    ``role`` is the model it calls (None: no model); ``back`` and ``go`` are the primitives it runs in the
    add-noise and the denoise phase (None: the phase does not allow it); ``evaluations`` is how many guided
    evaluations of its model one sub-step costs (each one batched call on ``[uncond; cond]``).
    """

    symbol: str
    role: Role | None
    back: Primitive | None
    go: Primitive | None
    evaluations: int

    def allows(self, direction: Direction) -> bool:
        """Whether the phase that moves ``direction`` may hold this letter."""
        return self.primitive(direction) is not None

    def primitive(self, direction: Direction) -> Primitive | None:
        """The primitive this letter runs when it moves ``direction`` (None: not allowed there)."""
        return self.go if direction == Direction.GO else self.back


#: every form letter, in the order messages list them
LETTERS: dict[str, Letter] = {
    letter.symbol: letter
    for letter in (
        Letter("R", None, back=Primitive.ADD_NOISE, go=None, evaluations=0),
        Letter("I", Role.IDM, back=Primitive.DDIM_INVERSION, go=Primitive.DDIM_DENOISE, evaluations=1),
        Letter("V", Role.VDM, back=Primitive.DDIM_INVERSION, go=Primitive.DDIM_DENOISE, evaluations=1),
    )
}
#: guided VDM evaluations of the standard step that ends every step
STANDARD_STEP_EVALUATIONS = 1
#: the batch of one guided evaluation: unconditional and conditional (classifier-free guidance)
CFG_BATCH = 2


#: how far a zigzag sub-step moves: "delta" (Δ = T // N, the default) or "grid" (to the neighbouring grid timestep)
SUBSTEP_SIZES = ("delta", "grid")


def check_substeps(value: object) -> str:
    """``value`` when it names a sub-step size of :data:`SUBSTEP_SIZES`; else a ValueError saying what to give."""
    if not isinstance(value, str) or value not in SUBSTEP_SIZES:
        raise ValueError(
            f"substeps must be 'delta' (each sub-step moves Δ = T // N, the default) or 'grid' (each sub-step moves "
            f"to the neighbouring timestep of the standard scheduler's grid), got {_short(repr(value))}"
        )
    return value


def _phase_letters(direction: Direction) -> str:
    """The letters a phase allows, in table order ("RIV" adding noise, "IV" denoising)."""
    return "".join(symbol for symbol, letter in LETTERS.items() if letter.allows(direction))


def _either(letters: str) -> str:
    """``"RIV"`` -> ``"R, I or V"``, for messages."""
    return " or ".join([", ".join(letters[:-1]), letters[-1]]) if len(letters) > 1 else letters


def _only(letter: Letter) -> str:
    """What ``letter`` does, for messages: ``adds noise`` for R."""
    return " and ".join(direction.verb for direction in (Direction.BACK, Direction.GO) if letter.allows(direction))


_PHASE_LETTERS = {direction: _phase_letters(direction) for direction in Direction}


class InvalidProgram(ValueError):
    """Program text (or a program value) that does not make a valid sampling program.

    ``str(error)`` is three lines: what was wrong and what was expected, the program text indented by
    four spaces (a text over 120 characters as the 120 around the column, cut ends marked ``…``), and a
    caret under the offending column::

        invalid program: unknown letter 'X' in the add-noise phase; expected R, I or V
            IX-IV
             ^

    The parts are kept as ``reason``, ``text`` and ``column``.
    """

    def __init__(self, reason: str, text: str, column: int) -> None:
        self.reason = reason
        self.text = text
        self.column = column
        super().__init__(_render_error(reason, text, column))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.text, self.column))


#: program text longer than this is shown as an excerpt of this many characters around the error
_SHOWN_CHARS = 120


def _render_error(reason: str, text: str, column: int) -> str:
    # One display cell per character so the caret lines up: whitespace shows as a space, other
    # unprintable characters as '?'. A long text is cut to the part around the column, marked with '…'.
    start, end, head, tail = 0, len(text), "", ""
    if len(text) > _SHOWN_CHARS:
        start = max(0, min(column - _SHOWN_CHARS // 2, len(text) - _SHOWN_CHARS))
        end = start + _SHOWN_CHARS
        head, tail = ("…" if start > 0 else ""), ("…" if end < len(text) else "")
    shown = "".join(" " if c.isspace() else (c if c.isprintable() else "?") for c in text[start:end])
    return f"invalid program: {reason}\n    {head}{shown}{tail}\n    {' ' * (len(head) + column - start)}^"


def _short(text: str, keep: int = 12) -> str:
    """``text`` for quoting in a message: a long token is cut and its length said."""
    if len(text) <= 2 * keep:
        return text
    return f"{text[:keep]}… ({len(text)} characters)"


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One zigzag: the add-noise letters and the denoise letters, each run left to right.

    ``noise`` is made of R (Gaussian re-noising), I (IDM DDIM inversion) and V (VDM DDIM inversion);
    ``denoise`` of I and V (DDIM denoising with that model): the letters :data:`LETTERS` allows in each
    phase. Both have the same length k ≥ 1, so the latent returns to its level. ``Form("", "")`` is
    ``origin``: no zigzag, the standard step only.
    """

    noise: str
    denoise: str

    def __post_init__(self) -> None:
        if not isinstance(self.noise, str) or not isinstance(self.denoise, str):
            raise TypeError(f"Form letters must be strings, got {self.noise!r} and {self.denoise!r}")
        for direction, letters in ((Direction.BACK, self.noise), (Direction.GO, self.denoise)):
            allowed = _PHASE_LETTERS[direction]
            if any(c not in allowed for c in letters):
                raise ValueError(f"{direction.phase} letters must be {_either(allowed)}, got {letters!r}")
        if len(self.noise) != len(self.denoise):
            raise ValueError(
                f"both phases need the same number of letters, got {self.noise!r} and {self.denoise!r}"
            )
        if len(self.noise) > MAX_LETTERS:
            raise ValueError(f"a phase has at most {MAX_LETTERS} letters, got {len(self.noise)}")

    @property
    def is_origin(self) -> bool:
        """True for ``origin`` (no zigzag)."""
        return not self.noise

    @property
    def length(self) -> int:
        """k, the number of letters in each phase (0 for origin)."""
        return len(self.noise)

    def __str__(self) -> str:
        return f"{self.noise}-{self.denoise}" if self.noise else "origin"


ORIGIN = Form("", "")


class Selector:
    """Base of the step selectors. A selector picks step indices 0..N−1 of an N-step run."""

    def selects(self, step: int, num_steps: int) -> bool:
        """Whether step ``step`` (0 = the noisiest step) of an ``num_steps``-step run is selected."""
        raise NotImplementedError

    def indices(self, num_steps: int) -> tuple[int, ...]:
        """All selected steps of an ``num_steps``-step run, in increasing order."""
        return tuple(i for i in range(num_steps) if self.selects(i, num_steps))


def _as_int(value: object) -> int | None:
    """``value`` as a Python int when it is an integer (int, numpy integer, 0-d integer tensor), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def _int_field(instance: object, name: str) -> None:
    value = _as_int(getattr(instance, name))
    if value is None:
        raise TypeError(f"{type(instance).__name__}.{name} must be an int, got {getattr(instance, name)!r}")
    object.__setattr__(instance, name, value)


def _int_arg(name: str, value: object, low: int, high: int | None = None) -> int:
    number = _as_int(value)
    if number is None or number < low or (high is not None and number > high):
        expected = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an int {expected}, got {value!r}")
    return number


@dataclass(frozen=True)
class AllSteps(Selector):
    """Every step (the default selector; printed as nothing, written ``@all`` if wanted)."""

    def selects(self, step: int, num_steps: int) -> bool:
        return 0 <= step < num_steps

    def indices(self, num_steps: int) -> tuple[int, ...]:
        return tuple(range(num_steps))

    def __str__(self) -> str:
        return "all"


@dataclass(frozen=True)
class Window(Selector):
    """Steps ``begin..end``, both inclusive (the released ``--interval_begin/--interval_end``)."""

    begin: int
    end: int

    def __post_init__(self) -> None:
        _int_field(self, "begin")
        _int_field(self, "end")
        if self.begin < 0:
            raise ValueError(f"a window starts at step 0 or later, got {self.begin}")
        if self.end < self.begin:
            raise ValueError(f"empty window {self.begin}..{self.end}: it ends before it begins")
        if self.end > MAX_INDEX:
            raise ValueError(f"a window ends at step {MAX_INDEX} or earlier, got {self.end}")

    def selects(self, step: int, num_steps: int) -> bool:
        return 0 <= step < num_steps and self.begin <= step <= self.end

    def indices(self, num_steps: int) -> tuple[int, ...]:
        return tuple(range(self.begin, min(self.end + 1, num_steps)))

    def __str__(self) -> str:
        return f"{self.begin}..{self.end}"


@dataclass(frozen=True)
class Percent(Selector):
    """z% of the steps, spread evenly (Bresenham).

    Of N steps, m = ⌊z·N/100 + ½⌋ (rounded half up, computed exactly on the decimal that ``str``
    prints), clamped to 1..N, are selected: step i is selected when ⌊(i+1)·m/N⌋ > ⌊i·m/N⌋. So the
    first n steps contain exactly ⌊n·m/N⌋ selected ones, the last step is always selected, and a
    fraction 1/k of N = k·q steps selects exactly the steps with i % k == k−1.
    """

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise TypeError(f"Percent.value must be a number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        if not (0.0 < self.value <= 100.0):  # also rejects NaN
            raise ValueError(f"a percentage must be above 0 and at most 100, got {self.value!r}")

    def count(self, num_steps: int) -> int:
        """m, the number of selected steps of an ``num_steps``-step run."""
        exact = Fraction(_format_number(self.value)) * num_steps / 100
        return max(1, min(num_steps, math.floor(exact + Fraction(1, 2))))

    def selects(self, step: int, num_steps: int) -> bool:
        if not 0 <= step < num_steps:
            return False
        m = self.count(num_steps)
        return (step + 1) * m // num_steps > step * m // num_steps

    def indices(self, num_steps: int) -> tuple[int, ...]:
        m = self.count(num_steps)  # once, not once per step
        return tuple(i for i in range(num_steps) if (i + 1) * m // num_steps > i * m // num_steps)

    def __str__(self) -> str:
        return f"{_format_number(self.value)}%"


@dataclass(frozen=True)
class Every(Selector):
    """Steps i with ``i % k == j`` (the released VideoCrafter2 rule is ``Every(3, 2)``)."""

    k: int
    j: int

    def __post_init__(self) -> None:
        _int_field(self, "k")
        _int_field(self, "j")
        if self.k < 1:
            raise ValueError(f"a period is at least 1, got {self.k}")
        if not 0 <= self.j < self.k:
            raise ValueError(f"the remainder of period {self.k} is in 0..{self.k - 1}, got {self.j}")
        if self.k > MAX_INDEX:
            raise ValueError(f"a period is at most {MAX_INDEX}, got {self.k}")

    def selects(self, step: int, num_steps: int) -> bool:
        return 0 <= step < num_steps and step % self.k == self.j

    def indices(self, num_steps: int) -> tuple[int, ...]:
        return tuple(range(self.j, num_steps, self.k))

    def __str__(self) -> str:
        return f"i%{self.k}={self.j}"


@dataclass(frozen=True)
class Clause:
    """A form, its phase order, and the steps it applies to."""

    form: Form
    order: str = DENOISE_FIRST
    selector: Selector = field(default_factory=AllSteps)

    def __post_init__(self) -> None:
        if not isinstance(self.form, Form):
            raise TypeError(f"Clause.form must be a Form, got {self.form!r}")
        if self.order not in _ORDERS:
            raise ValueError(
                f"Clause.order must be 'denoise-first', 'noise-first' or 'animatediff-swap', got {self.order!r}"
            )
        if self.form.is_origin and self.order != DENOISE_FIRST:
            raise ValueError("origin has no zigzag, so it takes no phase order")
        if self.order == ANIMATEDIFF_SWAP and self.form.length != 2:
            raise ValueError(f"the animatediff-swap order needs two letters per phase (such as IV-IV), got {self.form}")
        if not isinstance(self.selector, Selector):
            raise TypeError(f"Clause.selector must be a Selector, got {self.selector!r}")

    def __str__(self) -> str:
        text = _clause_label(self.form, self.order)
        if not isinstance(self.selector, AllSteps):
            text += f"@{self.selector}"
        return text


@dataclass(frozen=True)
class SubStep:
    """One sub-step of a zigzag, in execution order.

    ``letter`` R/I/V; ``model`` the :class:`Role` of its letter (``"idm"`` for I, ``"vdm"`` for V, None
    for R); ``direction`` a :class:`Direction`, ``"go"`` (DDIM denoise, t_to ≤ t_from) or ``"back"`` (R
    re-noising or DDIM inversion, t_to ≥ t_from). Plain strings are accepted and stored as those enums,
    which compare equal to them. Levels are clamped to 0..T−1, so near the ends a sub-step may not move at
    all (t_from == t_to); it still runs and still costs a network evaluation.
    """

    index: int
    letter: str
    model: Role | None
    direction: Direction
    t_from: int
    t_to: int

    def __post_init__(self) -> None:
        if self.model is not None and type(self.model) is not Role:
            object.__setattr__(self, "model", Role(self.model))
        if type(self.direction) is not Direction:
            object.__setattr__(self, "direction", Direction(self.direction))

    @property
    def primitive(self) -> Primitive:
        """The step primitive this sub-step runs (from :data:`LETTERS`)."""
        primitive = LETTERS[self.letter].primitive(self.direction)
        if primitive is None:
            raise ValueError(f"letter {self.letter!r} cannot move {self.direction}: it only {_only(LETTERS[self.letter])}")
        return primitive

    def as_dict(self) -> dict[str, Any]:
        return {
            "letter": self.letter,
            "model": None if self.model is None else str(self.model),
            "direction": str(self.direction),
            "t_from": self.t_from,
            "t_to": self.t_to,
        }

    def __str__(self) -> str:
        return f"{self.letter} {self.direction} {self.t_from}->{self.t_to}"


@dataclass(frozen=True)
class Cost:
    """Network evaluations per generated video, CFG doubling included."""

    idm_image_evals: int
    vdm_clip_evals: int

    def as_dict(self) -> dict[str, int]:
        return {"idm_image_evals": self.idm_image_evals, "vdm_clip_evals": self.vdm_clip_evals}

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.idm_image_evals + other.idm_image_evals, self.vdm_clip_evals + other.vdm_clip_evals)

    def __radd__(self, other: object) -> Cost:
        if other == 0:  # so that sum(costs) works
            return self
        return NotImplemented


@dataclass(frozen=True)
class Program:
    """A sampling program: clauses applied left to right, a later one overriding earlier ones.

    Steps no clause selects run ``origin`` (the standard step only). ``str(program)`` is the canonical
    text, and ``parse(str(program)) == program``.
    """

    clauses: tuple[Clause, ...]

    def __post_init__(self) -> None:
        clauses = tuple(self.clauses)
        if not clauses:
            raise ValueError("a program has at least one clause (write origin for none)")
        for c in clauses:
            if not isinstance(c, Clause):
                raise TypeError(f"Program.clauses must hold Clause values, got {c!r}")
        if len(clauses) > MAX_CLAUSES:
            raise ValueError(f"a program has at most {MAX_CLAUSES} clauses, got {len(clauses)}")
        object.__setattr__(self, "clauses", clauses)
        length = sum(len(str(c)) for c in clauses) + len(clauses) - 1
        if length > MAX_PROGRAM_CHARS:
            raise ValueError(f"a program has at most {MAX_PROGRAM_CHARS} characters, this one prints as {length}")

    def __str__(self) -> str:
        return "+".join(str(c) for c in self.clauses)

    @property
    def is_origin(self) -> bool:
        """True when no step, for any number of steps, runs a zigzag.

        That is: every clause with a zigzag is followed by an ``origin`` clause over all steps.
        """
        live = self.clauses
        for index, c in enumerate(self.clauses):
            if isinstance(c.selector, AllSteps):
                live = self.clauses[index:]
        return all(c.form.is_origin for c in live)

    def validate(self, num_steps: int) -> None:
        """Check the program against an ``num_steps``-step run.

        Raises InvalidProgram when a window reaches past the last step, pointing at it in the canonical
        text. A periodic clause that selects no step at this N (``i%100=99`` with 50 steps) is allowed:
        it is a rule over step indices, like the released ``zz``, and must keep working when N changes.
        A percentage always selects at least one step.
        """
        num_steps = _int_arg("num_steps", num_steps, 1, MAX_INDEX)
        late = [c for c in self.clauses if isinstance(c.selector, Window) and c.selector.end >= num_steps]
        if not late:
            return
        column = 0
        for c in self.clauses:
            if c is late[0]:
                sel = c.selector
                raise InvalidProgram(
                    f"window {sel} reaches step {sel.end} but there are only {num_steps} steps "
                    f"(0..{num_steps - 1})",
                    str(self),
                    column + len(str(c)) - len(str(sel.end)),
                )
            column += len(str(c)) + 1

    def _clauses_by_step(self, num_steps: int) -> tuple[Clause | None, ...]:
        """For every step of an ``num_steps``-step run, the clause it runs (None: origin); validated.

        Worked out once per N (the last clause first, each step taken by the first clause that selects
        it), so that planning, ``cost`` and ``explain`` do not go over every clause for every step.
        """
        cache: dict[int, tuple[Clause | None, ...]] = self.__dict__.setdefault("_by_step", {})
        found = cache.get(num_steps)
        if found is not None:
            return found
        self.validate(num_steps)
        owner: list[Clause | None] = [None] * num_steps
        free = num_steps
        seen: set[Selector] = set()
        for c in reversed(self.clauses):
            if isinstance(c.selector, AllSteps):
                owner = [c if o is None else o for o in owner]
                break
            if c.selector in seen:  # a later clause with the same selector already took its steps
                continue
            seen.add(c.selector)
            for i in c.selector.indices(num_steps):
                if owner[i] is None:
                    owner[i] = c
                    free -= 1
            if not free:
                break
        if len(cache) >= 8:
            cache.clear()
        cache[num_steps] = found = tuple(owner)
        return found

    def clause_at(self, step: int, num_steps: int) -> Clause | None:
        """The last clause that selects ``step``, or None when none does (the step runs origin)."""
        num_steps = _int_arg("num_steps", num_steps, 1, MAX_INDEX)
        step = _int_arg("step", step, 0, num_steps - 1)
        for c in reversed(self.clauses):
            if c.selector.selects(step, num_steps):
                return c
        return None

    def form_at(self, step: int, num_steps: int) -> Form:
        """The form that step ``step`` runs (``ORIGIN`` when no clause selects it)."""
        c = self.clause_at(step, num_steps)
        return ORIGIN if c is None else c.form

    def substeps(
        self,
        step: int,
        t: int,
        num_steps: int,
        num_train_timesteps: int = 1000,
        *,
        grid: Sequence[int] | None = None,
    ) -> tuple[SubStep, ...]:
        """The zigzag sub-steps of step ``step`` at grid timestep ``t``, in execution order.

        With Δ = T // N and k letters per phase:

        - denoise-first (default): levels L_j = max(0, t − jΔ). Denoise letter j goes L_j → L_{j+1};
          then add-noise letter j goes L_{k−j} → L_{k−j−1}, ending at L_0 = t.
        - noise-first: levels U_j = min(T−1, t + jΔ). Add-noise letter j goes U_j → U_{j+1}; then
          denoise letter j goes U_{k−j} → U_{k−j−1}, ending at U_0 = t.
        - animatediff-swap (k = 2 only): denoise-first with the levels of the two denoise sub-steps
          swapped, as the released AnimateDiff pipeline runs them: denoise letter 0 goes L_1 → L_2, then
          denoise letter 1 goes L_0 → L_1; the add-noise letters are those of denoise-first. The chain
          of levels is broken (the latent at t is treated as if at t − Δ by the first sub-step).

        With ``grid``, the N timesteps t_0 > t_1 > … of the standard scheduler (``grid[step] == t``), the
        sub-steps are aligned to the grid instead (``substeps="grid"``): L_j = t_{step+j}, 0 past the last
        grid timestep, and U_j = t_{step−j}, T−1 above the first, the clamps of the Δ form. So a zigzag
        visits the levels the standard steps visit, whatever the grid's spacing and offset.

        Empty for an origin step. The standard step that follows is not listed.
        """
        num_steps = _int_arg("num_steps", num_steps, 1, MAX_INDEX)
        clauses = self._clauses_by_step(num_steps)  # validates
        num_train_timesteps = _train_timesteps(num_train_timesteps, num_steps)
        delta = num_train_timesteps // num_steps  # Δ = T // N, the released code's sub-step size
        t = _int_arg("t", t, 0, num_train_timesteps - 1)
        step = _int_arg("step", step, 0, num_steps - 1)
        c = clauses[step]
        if c is None or c.form.is_origin:
            return ()
        form, k = c.form, c.form.length
        top = num_train_timesteps - 1
        if grid is not None:
            grid = _check_grid(grid, step, t, num_steps, top, k)
        go, back = Direction.GO, Direction.BACK
        moves: list[tuple[str, Direction, int, int]] = []  # (letter, direction, t_from, t_to)
        if c.order in (DENOISE_FIRST, ANIMATEDIFF_SWAP):
            if grid is None:
                level = [max(0, t - j * delta) for j in range(k + 1)]
            else:
                level = [grid[step + j] if step + j < num_steps else 0 for j in range(k + 1)]
            moves += [(form.denoise[j], go, level[j], level[j + 1]) for j in range(k)]
            moves += [(form.noise[j], back, level[k - j], level[k - j - 1]) for j in range(k)]
            if c.order == ANIMATEDIFF_SWAP:  # letters stay in order, their levels trade places
                (first, _, *levels_0), (second, _, *levels_1) = moves[0], moves[1]
                moves[0], moves[1] = (first, go, *levels_1), (second, go, *levels_0)
        else:
            if grid is None:
                level = [min(top, t + j * delta) for j in range(k + 1)]
            else:
                level = [grid[step - j] if step >= j else top for j in range(k + 1)]
            moves += [(form.noise[j], back, level[j], level[j + 1]) for j in range(k)]
            moves += [(form.denoise[j], go, level[k - j], level[k - j - 1]) for j in range(k)]
        return tuple(
            SubStep(i, letter, LETTERS[letter].role, direction, t_from, t_to)
            for i, (letter, direction, t_from, t_to) in enumerate(moves)
        )

    def cost(self, num_steps: int, num_frames: int, *, guided_standard_step: bool = True) -> Cost:
        """Network evaluations per generated video for N steps and F frames, CFG doubling included.

        Each letter costs the evaluations :data:`LETTERS` gives it, of its model:
        idm_image_evals = Σ_steps (#I letters) · F · 2 (the IDM sees each frame as one image);
        vdm_clip_evals = Σ_steps (#V letters + 1 standard step) · 2. Sub-steps that clamping makes
        stand still are counted: they still run. ``guided_standard_step=False``: the standard step runs the
        conditional half alone (ω = 1), 1 evaluation instead of 2.
        """
        num_steps = _int_arg("num_steps", num_steps, 1, MAX_INDEX)
        num_frames = _int_arg("num_frames", num_frames, 1)
        per_clause: dict[int, tuple[int, int]] = {}  # per clause (by id): its guided IDM and VDM evaluations
        idm = vdm = 0
        for c in self._clauses_by_step(num_steps):  # validates
            if c is None:
                continue
            counts = per_clause.get(id(c))
            if counts is None:
                evaluations = _form_evaluations(c.form)
                counts = per_clause[id(c)] = (evaluations[Role.IDM], evaluations[Role.VDM])
            idm += counts[0]
            vdm += counts[1]
        standard = num_steps * STANDARD_STEP_EVALUATIONS * (CFG_BATCH if guided_standard_step else 1)
        return Cost(idm * num_frames * CFG_BATCH, vdm * CFG_BATCH + standard)


@functools.lru_cache(maxsize=1024)
def _form_evaluations(form: Form) -> dict[Role, int]:
    """The guided evaluations of each model that one zigzag of ``form`` costs (:data:`LETTERS`)."""
    both = form.noise + form.denoise
    evaluations = dict.fromkeys(Role, 0)
    for symbol, letter in LETTERS.items():
        if letter.role is not None:
            evaluations[letter.role] += both.count(symbol) * letter.evaluations
    return evaluations


def _check_grid(grid: Sequence[int], step: int, t: int, num_steps: int, top: int, k: int) -> dict[int, int]:
    """The standard scheduler's timesteps for a grid-aligned plan: N of them, ``grid[step] == t``, and the
    ones a k-letter zigzag at ``step`` reaches integers in 0..T−1 that do not increase; those, by step."""
    if isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) != num_steps:
        got = f"{len(grid)} values" if hasattr(grid, "__len__") else repr(grid)
        raise ValueError(f"grid must hold the {num_steps} timesteps of the standard scheduler, one per step; got {_short(got)}")
    near = {}
    for m in range(max(0, step - k), min(num_steps, step + k + 1)):
        value = _as_int(grid[m])
        if value is None or not 0 <= value <= top:
            raise ValueError(f"grid timestep {m} must be an int in 0..{top}, got {_short(repr(grid[m]))}")
        if m - 1 in near and value > near[m - 1]:
            raise ValueError(f"grid timesteps must not increase, got {near[m - 1]} at step {m - 1} and {value} at step {m}")
        near[m] = value
    if near[step] != t:
        raise ValueError(f"t = {t} is not the grid timestep of step {step} ({near[step]}); give t = grid[step]")
    return near


def _train_timesteps(num_train_timesteps: object, num_steps: int) -> int:
    """T, which must be at least N so that the sub-step size Δ = T // N is at least 1."""
    number = _as_int(num_train_timesteps)
    if number is None or number < num_steps:
        raise ValueError(
            f"num_train_timesteps must be an int >= num_steps ({num_steps}) so that the sub-step size "
            f"T // N is at least 1, got {num_train_timesteps!r}"
        )
    return number


def _format_number(value: float) -> str:
    """The shortest decimal that reads back as ``value``, without exponent or trailing zeros."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# --------------------------------------------------------------------------------------------------
# Tokenizer (packaging style: a table of token regexes and a context-sensitive reader)
# --------------------------------------------------------------------------------------------------

_RULES: dict[str, re.Pattern[str]] = {
    "WS": re.compile(r"\s+"),
    "WORD": re.compile(r"[A-Za-z]+"),  # form letters, or a keyword: origin, i, all
    "ORDER": re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*"),  # df, nf, denoise-first, noise-first
    "NUMBER": re.compile(r"[0-9]+(?:\.[0-9]+)?"),
    "DASH": re.compile(r"-"),
    "COLON": re.compile(r":"),
    "AT": re.compile(r"@"),
    "PLUS": re.compile(r"\+"),
    "RANGE": re.compile(r"\.\."),
    "PERCENT": re.compile(r"%"),
    "EQUALS": re.compile(r"==?"),
    "END": re.compile(r"\Z"),
}


@dataclass(frozen=True)
class _Token:
    name: str
    text: str
    position: int


class _Tokenizer:
    """Reads tokens on demand; the parser says which token it wants next. Whitespace is skipped."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.position = 0

    def _skip_ws(self) -> None:
        match = _RULES["WS"].match(self.source, self.position)
        if match:
            self.position = match.end()

    def check(self, name: str) -> bool:
        """Whether the next token is a ``name``."""
        self._skip_ws()
        return _RULES[name].match(self.source, self.position) is not None

    def consume(self, name: str) -> _Token | None:
        """Read the next token if it is a ``name``."""
        self._skip_ws()
        match = _RULES[name].match(self.source, self.position)
        if match is None:
            return None
        self.position = match.end()
        return _Token(name, match.group(), match.start())

    def expect(self, name: str, reason: str) -> _Token:
        """Read the next token, which must be a ``name``; else fail with ``reason``."""
        token = self.consume(name)
        if token is None:
            self.error(reason)
        return token

    def next_char(self) -> str | None:
        """The next non-space character, or None at the end."""
        self._skip_ws()
        return self.source[self.position] if self.position < len(self.source) else None

    def error(self, reason: str, column: int | None = None) -> NoReturn:
        raise InvalidProgram(reason, self.source, self.position if column is None else column)


# --------------------------------------------------------------------------------------------------
# Parser: one function per grammar rule, the rule in its docstring
# --------------------------------------------------------------------------------------------------

_FORM_EXPECTED = "a form such as IV-IV, or origin"
_SELECTOR_EXPECTED = "a window such as 0..24, a percentage such as 66.7%, a period such as i%3=2, or all"


def parse(text: str) -> Program:
    """Parse program text such as ``IV-IV``, ``RR-II``, ``VV-VV@66.7%`` or ``IV-IV+VV-VV@i%3=2``.

    Raises InvalidProgram (a ValueError) pointing at the offending column.
    """
    if not isinstance(text, str):
        raise TypeError(f"program text must be a str, got {type(text).__name__}")
    return _parse_cached(text)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> Program:
    return _parse_program(_Tokenizer(text))


def clear_parse_cache() -> None:
    """Forget the programs :func:`parse` has cached (``benchmarks/parse.py`` times parsing without the cache)."""
    _parse_cached.cache_clear()


def _parse_program(tok: _Tokenizer) -> Program:
    """program = clause ("+" clause)* END        (at most MAX_PROGRAM_CHARS characters, MAX_CLAUSES clauses)"""
    if len(tok.source) > MAX_PROGRAM_CHARS:
        tok.error(
            f"the program is {len(tok.source)} characters long; expected at most {MAX_PROGRAM_CHARS} "
            "(select steps with a window such as 0..24 or a period such as i%3=2 rather than one clause per step)",
            MAX_PROGRAM_CHARS,
        )
    if not tok.source.strip():
        tok.error(f"empty program; expected {_FORM_EXPECTED}", 0)
    clauses = [_parse_clause(tok)]
    while tok.consume("PLUS"):
        if tok.check("END"):
            tok.error(f"missing clause after '+'; expected {_FORM_EXPECTED}")
        if len(clauses) == MAX_CLAUSES:
            tok.error(
                f"too many clauses: this is clause {MAX_CLAUSES + 1}; expected at most {MAX_CLAUSES} "
                "(select steps with a window such as 0..24 or a period such as i%3=2 rather than one clause per step)"
            )
        clauses.append(_parse_clause(tok))
    tok.expect("END", "expected the end of the program")  # _parse_clause already checked this
    return Program(tuple(clauses))


def _parse_clause(tok: _Tokenizer) -> Clause:
    """clause = form (":" order)? ("@" selector)?"""
    form = _parse_form(tok)
    after, expected = f"the form {form}", "':', '@', '+' or the end of the program"
    if form.is_origin:
        expected = "'@', '+' or the end of the program"
    order = DENOISE_FIRST
    if tok.check("COLON"):
        if form.is_origin:
            tok.error(f"origin has no zigzag, so it takes no phase order; expected {expected}")
        tok.consume("COLON")
        order = _parse_order(tok, form)
        after, expected = "the phase order", "'@', '+' or the end of the program"
    selector: Selector = AllSteps()
    if tok.consume("AT"):
        selector = _parse_selector(tok)
        after, expected = f"the selector {_short(str(selector))}", "'+' or the end of the program"
        if tok.check("COLON") and not form.is_origin:
            tok.error("the phase order comes before the selector; expected FORM:ORDER@SELECTOR such as IV-IV:nf@0..24")
    if not (tok.check("PLUS") or tok.check("END")):
        char = tok.next_char()
        hint = " (clauses are joined with '+'; commas separate programs in a sweep list)" if char == "," else ""
        tok.error(f"unexpected {char!r} after {after}; expected {expected}{hint}")
    return Clause(form, order, selector)


def _parse_form(tok: _Tokenizer) -> Form:
    """form = "origin" | NOISE "-" DENOISE ;  NOISE = [RIV]+ ;  DENOISE = [IV]+ ;  len(NOISE) == len(DENOISE)"""
    if tok.check("DASH"):
        tok.error(f"missing add-noise letters before '-'; expected {_either(_PHASE_LETTERS[Direction.BACK])}")
    noise = tok.consume("WORD")
    if noise is None:
        tok.error(f"unexpected {tok.next_char()!r}; expected {_FORM_EXPECTED}")
    if noise.text == "origin":
        return ORIGIN
    if noise.text.lower() == "origin":
        tok.error(f"'{noise.text}' must be written in lower case; expected origin", noise.position)
    _check_letters(tok, noise, Direction.BACK)
    tok.expect(
        "DASH", f"missing '-' after the add-noise letters {_short(noise.text)}; expected NOISE-DENOISE such as IV-IV"
    )
    denoise = tok.expect("WORD", f"missing denoise letters after '-'; expected {_either(_PHASE_LETTERS[Direction.GO])}")
    _check_letters(tok, denoise, Direction.GO)
    for word, phase in ((noise, "add-noise"), (denoise, "denoise")):
        if len(word.text) > MAX_LETTERS:
            tok.error(
                f"too many letters in the {phase} phase: {len(word.text)}; expected at most {MAX_LETTERS}",
                word.position + MAX_LETTERS,
            )
    if len(noise.text) != len(denoise.text):
        tok.error(
            f"unequal phases: {_count(len(noise.text), 'add-noise letter')} but "
            f"{_count(len(denoise.text), 'denoise letter')}; expected the same number on both sides of '-'",
            denoise.position,
        )
    return Form(noise.text, denoise.text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _check_letters(tok: _Tokenizer, word: _Token, direction: Direction) -> None:
    """Letters are upper case, and each one in a phase that allows it (:data:`LETTERS`: R only adds noise)."""
    allowed, phase = _PHASE_LETTERS[direction], direction.phase
    expected = _either(allowed)
    for offset, letter in enumerate(word.text):
        column = word.position + offset
        if letter in allowed:
            continue
        if letter.upper() in allowed:
            tok.error(
                f"lower-case letter '{letter}' in the {phase} phase; letters are upper case: expected {expected}",
                column,
            )
        if letter in LETTERS:
            tok.error(
                f"letter '{letter}' in the {phase} phase; expected {expected} ({letter} only {_only(LETTERS[letter])})",
                column,
            )
        tok.error(f"unknown letter '{letter}' in the {phase} phase; expected {expected}", column)


def _parse_order(tok: _Tokenizer, form: Form) -> str:
    """order = "df" | "nf" | "ad" | "denoise-first" | "noise-first" | "animatediff-swap"    ("ad": two letters per phase)"""
    expected = "expected df (denoise-first), nf (noise-first) or ad (animatediff-swap)"
    word = tok.consume("ORDER")
    if word is None:
        tok.error(f"missing phase order after ':'; {expected}")
    if word.text not in _ORDER_WORDS:
        tok.error(f"unknown phase order '{_short(word.text)}'; {expected}", word.position)
    order = _ORDER_WORDS[word.text]
    if order == ANIMATEDIFF_SWAP and form.length != 2:
        tok.error(
            f"the order {word.text} swaps the levels of two denoise sub-steps, but {form} has "
            f"{_count(form.length, 'letter')} per phase; expected a two-letter form such as IV-IV:ad",
            word.position,
        )
    return order


def _parse_selector(tok: _Tokenizer) -> Selector:
    """selector = window | percent | period | "all\""""
    word = tok.consume("WORD")
    if word is not None:
        if word.text == "all":
            return AllSteps()
        if word.text == "i":
            return _parse_period(tok, word)
        tok.error(f"unknown selector '{_short(word.text)}'; expected {_SELECTOR_EXPECTED}", word.position)
    number = tok.consume("NUMBER")
    if number is None:
        tok.error(f"missing selector after '@'; expected {_SELECTOR_EXPECTED}")
    if tok.check("RANGE"):
        return _parse_window(tok, number)
    if tok.check("PERCENT"):
        return _parse_percent(tok, number)
    text = _short(number.text)
    if "." in number.text:
        example = f"{number.text}%" if len(number.text) <= 8 else "66.7%"
        tok.error(f"missing '%' after {text}; expected a percentage such as {example}")
    begin = int(number.text) if len(number.text) <= 7 and int(number.text) <= MAX_INDEX - 8 else 0
    window = f"{begin}..{begin + 8}"
    tok.error(f"incomplete selector {text}; expected '..' (a window such as {window}) or '%' (a percentage)")


def _parse_window(tok: _Tokenizer, begin: _Token) -> Window:
    """window = INT ".." INT        (inclusive step indices, begin <= end)"""
    first = _whole(tok, begin, "step index")
    tok.consume("RANGE")
    end = tok.expect("NUMBER", "missing last step after '..'; expected a whole number such as 0..24")
    last = _whole(tok, end, "step index")
    if last < first:
        tok.error(
            f"empty window {_short(begin.text)}..{_short(end.text)} (it ends before it begins); expected BEGIN..END with BEGIN <= END",
            begin.position,
        )
    return Window(first, last)


def _parse_percent(tok: _Tokenizer, number: _Token) -> Percent:
    """percent = NUMBER "%"        (0 < NUMBER <= 100, at most MAX_NUMBER_CHARS characters)"""
    tok.consume("PERCENT")
    expected = "expected a value above 0 and at most 100"
    text = f"{number.text}%" if len(number.text) <= 24 else _short(number.text)
    whole = number.text.partition(".")[0].lstrip("0")
    if len(whole) > 3:  # decided without converting a number of any length
        tok.error(f"percentage {text} is more than 100%; {expected}", number.position)
    if len(number.text) > MAX_NUMBER_CHARS:
        tok.error(
            f"percentage {text} has too many digits; expected at most {MAX_NUMBER_CHARS} characters",
            number.position,
        )
    exact = Fraction(number.text)
    if exact == 0:
        tok.error(f"percentage {text} selects no steps; {expected}", number.position)
    if exact > 100:
        tok.error(f"percentage {text} is more than 100%; {expected}", number.position)
    value = float(number.text)
    if value == 0.0:
        tok.error(f"percentage {text} is too small to represent; {expected}", number.position)
    return Percent(value)


def _parse_period(tok: _Tokenizer, var: _Token) -> Every:
    """period = "i" "%" INT ("=" | "==") INT        (K >= 1, 0 <= J < K)"""
    tok.expect("PERCENT", "expected '%' after i; a period reads i%K=J, such as i%3=2")
    k_token = tok.expect("NUMBER", "missing period after 'i%'; expected a whole number K in i%K=J, such as i%3=2")
    k = _whole(tok, k_token, "period")
    if k < 1:
        tok.error(f"period {_short(k_token.text)} is too small; expected i%K=J with K >= 1", k_token.position)
    tok.expect("EQUALS", f"missing '=' after i%{k}; expected i%K=J, such as i%3=2")
    j_token = tok.expect("NUMBER", f"missing remainder after '='; expected a whole number in 0..{k - 1}")
    j = _whole(tok, j_token, "remainder")
    if j >= k:
        tok.error(f"remainder {_short(j_token.text)} is out of range for period {k}; expected 0..{k - 1}", j_token.position)
    return Every(k, j)


def _whole(tok: _Tokenizer, number: _Token, what: str) -> int:
    """A step index, period or remainder: a whole number at most MAX_INDEX (checked before converting it)."""
    text = _short(number.text)
    if "." in number.text:
        tok.error(f"{what} {text} is not a whole number; expected an integer such as 3", number.position)
    digits = number.text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_INDEX)) or int(digits) > MAX_INDEX:
        tok.error(f"{what} {text} is out of range; expected at most {MAX_INDEX}", number.position)
    return int(digits)


# --------------------------------------------------------------------------------------------------
# explain: the sub-step plan and cost, as data and as text
# --------------------------------------------------------------------------------------------------


def linspace_timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """DDIM's "linspace" grid: ``round(linspace(0, T−1, N))[::-1]`` (numpy's rounding, half to even)."""
    num_steps = _int_arg("num_steps", num_steps, 1, MAX_INDEX)
    top = _train_timesteps(num_train_timesteps, num_steps) - 1
    if num_steps == 1:
        return [0]
    step = top / (num_steps - 1)
    grid = [round(i * step) for i in range(num_steps - 1)] + [top]  # numpy sets the endpoint exactly
    return grid[::-1]


def _clause_label(form: Form, order: str) -> str:
    return str(form) + ("" if order == DENOISE_FIRST else f":{_ORDER_SHORT[order]}")


def explain(
    program: Program,
    num_steps: int,
    num_frames: int,
    num_train_timesteps: int = 1000,
    show_steps: int | None = 3,
    *,
    substeps: str = "delta",
    grid: Sequence[int] | None = None,
    grid_name: str | None = None,
    guidance: float | None = None,
) -> dict[str, Any]:
    """The plan of ``program`` as JSON-ready data: cost, forms per step count, the first steps' sub-steps.

    ``guidance``: ω of the standard step, where it changes the cost (at ω = 1 the standard step runs the
    conditional half alone); None: not given, the guided cost.

    Timesteps are those of ``grid``, the standard scheduler's timesteps (default: the DDIM "linspace" grid;
    ``grid_name`` says which grid it is in the text); ``show_steps=None`` lists every step. With
    ``substeps="grid"`` the sub-steps move to the neighbouring grid timesteps (:meth:`Program.substeps`), and the
    data say so under ``"substeps"``.
    """
    num_steps, num_frames = _int_arg("num_steps", num_steps, 1, MAX_INDEX), _int_arg("num_frames", num_frames, 1)
    num_train_timesteps = _train_timesteps(num_train_timesteps, num_steps)  # before any work that grows with N
    substeps = check_substeps(substeps)
    cost = program.cost(num_steps, num_frames, guided_standard_step=guides_standard_step(guidance))  # validates
    if grid is None:
        grid = linspace_timesteps(num_steps, num_train_timesteps)
    else:
        grid = [_int_arg("grid timestep", t, 0, num_train_timesteps - 1) for t in grid]
        grid_name = grid_name or "the standard scheduler's"
        if len(grid) != num_steps:
            raise ValueError(f"grid must hold the {num_steps} timesteps of the standard scheduler, one per step; got {len(grid)}")
    aligned = grid if substeps == "grid" else None
    delta = num_train_timesteps // num_steps
    shown = num_steps if show_steps is None else _int_arg("show_steps", show_steps, 0)
    forms: dict[str, int] = {}
    steps = []
    clauses = program._clauses_by_step(num_steps)
    for i, t in enumerate(grid):
        c = clauses[i]
        form = ORIGIN if c is None else c.form
        order = None if form.is_origin else c.order
        label = _clause_label(form, order or DENOISE_FIRST)
        forms[label] = forms.get(label, 0) + 1
        if i < shown:
            steps.append(
                {
                    "step": i,
                    "t": t,
                    "form": str(form),
                    "order": order,
                    "substeps": [
                        s.as_dict() for s in program.substeps(i, t, num_steps, num_train_timesteps, grid=aligned)
                    ],
                }
            )
    notes = []
    if any(c.order == ANIMATEDIFF_SWAP for c in program.clauses):
        notes.append(_SWAP_NOTE)
    info = {
        "program": str(program),
        "num_steps": num_steps,
        "num_frames": num_frames,
        "num_train_timesteps": num_train_timesteps,
        "delta": delta,
        **cost.as_dict(),
        "cost": cost.as_dict(),
        "forms": forms,
        "steps": steps,
        "notes": notes,
    }
    if substeps != "delta":  # the default plan's data stay as they always were
        info["substeps"] = substeps
    if guidance is not None:
        info["guidance"] = float(guidance)
    if grid_name is not None:
        info["grid_name"] = grid_name
    return info


_SWAP_NOTE = (
    "ad (animatediff-swap) runs the released AnimateDiff pipeline's sub-steps: its first denoise sub-step at "
    "t−Δ → t−2Δ, then the second at t → t−Δ (the first treats a latent at t as if at t−Δ); the default order "
    "(df) runs them in level order, t → t−Δ → t−2Δ"
)


def guides_standard_step(guidance: float | None) -> bool:
    """Whether the standard step at ω = ``guidance`` evaluates both CFG halves: not at ω = 1, where
    ε_u + 1·(ε_c − ε_u) is ε_c (None: ω not given, counted as guided)."""
    return guidance is None or float(guidance) != 1.0


def cost_words(guidance: float | None) -> str:
    """How a cost line counts: the CFG doubling, and at ω = 1 the standard step's single evaluation."""
    if not guides_standard_step(guidance):
        return "CFG doubling included; at ω 1 the standard step evaluates the conditional half alone"
    return "CFG doubling included" + (f", ω {float(guidance):g}" if guidance is not None else "")


def format_explain(info: dict[str, Any]) -> str:
    """``explain``'s data as the text table printed by ``ivmixed explain``."""
    n, cost = info["num_steps"], info["cost"]
    forms = ", ".join(f"{label} on {_count(count, 'step')}" for label, count in info["forms"].items())
    size = f"sub-step delta = {info['num_train_timesteps']} // {n} = {info['delta']}"
    if info.get("substeps") == "grid":
        size = f"sub-steps on the grid (each moves to the neighbouring grid timestep; delta would be {info['delta']})"
    lines = [
        f"program  {info['program']}",
        f"steps    {n}, frames {info['num_frames']}, {size}",
        f"forms    {forms}",
        f"cost     {cost['idm_image_evals']} IDM image evaluations, {cost['vdm_clip_evals']} VDM clip evaluations"
        f" per video ({cost_words(info.get('guidance'))})",
    ]
    lines += [f"note     {note}" for note in info.get("notes", ())]
    if info["steps"]:
        width = max([13] + [len(s["order"] or "") for s in info["steps"]])
        lines += ["", f"step     t  form      {'order':<{width}}  sub  letter  model  direction  levels"]
        for s in info["steps"]:
            head = f"{s['step']:>4}  {s['t']:>4}  {s['form']:<8}  {s['order'] or '-':<{width}}"
            for sub_index, sub in enumerate(s["substeps"]):
                model = sub["model"] or "-"
                levels = f"{sub['t_from']} -> {sub['t_to']}"
                lines.append(f"{head}  {sub_index:>3}  {sub['letter']:<6}  {model:<5}  {sub['direction']:<9}  {levels}")
                head = " " * len(head)
            lines.append(f"{head}  std  V       vdm    go         the VDM's standard step from t = {s['t']}")
        lines.append(f"(the first {len(info['steps'])} of {n} steps; grid: {info.get('grid_name', 'DDIM linspace')})")
    return "\n".join(lines)
