"""Tests of the program language (ivmixed.program): parsing, printing, errors, sub-step plans and cost."""

from __future__ import annotations

import json
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivmixed.program import (
    MAX_CLAUSES,
    MAX_INDEX,
    MAX_LETTERS,
    MAX_NUMBER_CHARS,
    MAX_PROGRAM_CHARS,
    ORIGIN,
    AllSteps,
    Clause,
    Cost,
    Every,
    Form,
    InvalidProgram,
    Percent,
    Program,
    SubStep,
    Window,
    explain,
    format_explain,
    linspace_timesteps,
    parse,
)

FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DF, NF, AD = "denoise-first", "noise-first", "animatediff-swap"
VC2 = "IV-IV+VV-VV@i%3=2"  # the released VideoCrafter2 recipe


def one(form: Form, order: str = DF, selector=None) -> Program:
    return Program((Clause(form, order, selector or AllSteps()),))


# --------------------------------------------------------------------------------------------------
# Parsing and printing
# --------------------------------------------------------------------------------------------------

PAPER_FORMS = ["R-I", "RR-II", "R-V", "RR-VV", "I-I", "II-II", "V-V", "VV-VV", "IV-IV", "VI-VI", "II-VV", "VV-II"]


@pytest.mark.parametrize("text", PAPER_FORMS)
def test_every_paper_form_parses(text):
    noise, denoise = text.split("-")
    program = parse(text)
    assert program == one(Form(noise, denoise))
    assert str(program) == text
    assert not program.is_origin


@pytest.mark.parametrize("text", PAPER_FORMS)
def test_every_paper_form_parses_noise_first(text):
    noise, denoise = text.split("-")
    assert parse(f"{text}:nf") == one(Form(noise, denoise), NF)
    assert parse(f"{text}:noise-first") == one(Form(noise, denoise), NF)
    assert str(parse(f"{text}:nf")) == f"{text}:nf"


def test_origin():
    program = parse("origin")
    assert program == one(ORIGIN)
    assert ORIGIN == Form("", "") and str(ORIGIN) == "origin" and ORIGIN.is_origin
    assert str(program) == "origin"
    assert program.is_origin


def test_denoise_first_is_the_default_and_is_not_printed():
    assert parse("IV-IV:df") == parse("IV-IV:denoise-first") == parse("IV-IV") == one(Form("IV", "IV"), DF)
    assert str(parse("IV-IV:df")) == "IV-IV"


@pytest.mark.parametrize(
    "text, selector",
    [
        ("IV-IV@0..24", Window(0, 24)),
        ("IV-IV@7..7", Window(7, 7)),
        ("VV-VV@66.7%", Percent(66.7)),
        ("VV-VV@100%", Percent(100.0)),
        ("VV-VV@0.5%", Percent(0.5)),
        ("VV-VV@i%3=2", Every(3, 2)),
        ("VV-VV@i%1=0", Every(1, 0)),
        ("VV-VV@all", AllSteps()),
    ],
)
def test_selectors_parse(text, selector):
    assert parse(text) == one(Form("VV" if text.startswith("VV") else "IV", text[3:5]), DF, selector)


def test_order_and_selector_together():
    assert parse("IV-IV:nf@10..20") == one(Form("IV", "IV"), NF, Window(10, 20))


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("IV-IV", "IV-IV"),
        ("RR-II", "RR-II"),
        ("VV-VV@66.7%", "VV-VV@66.7%"),
        ("VV-VV@66.70%", "VV-VV@66.7%"),
        ("VV-VV@50.0%", "VV-VV@50%"),
        ("VV-VV@050%", "VV-VV@50%"),
        ("VV-VV@0.001%", "VV-VV@0.001%"),
        ("IV-IV@007..010", "IV-IV@7..10"),
        ("IV-IV@all", "IV-IV"),
        ("IV-IV:df@all", "IV-IV"),
        ("IV-IV:noise-first", "IV-IV:nf"),
        ("IV-IV+VV-VV@i%3==2", VC2),
        ("  IV - IV : nf @ i % 3 = 2 + origin @ 0 .. 4  ", "IV-IV:nf@i%3=2+origin@0..4"),
        ("IV-IV\n+\tVV-VV@ 66.7 %\n", "IV-IV+VV-VV@66.7%"),
    ],
)
def test_canonical_printing(text, canonical):
    program = parse(text)
    assert str(program) == canonical
    assert parse(canonical) == program


def test_composition_keeps_every_clause_in_order():
    program = parse("IV-IV+VV-VV@i%3=2+origin@45..49")
    assert program.clauses == (
        Clause(Form("IV", "IV")),
        Clause(Form("VV", "VV"), DF, Every(3, 2)),
        Clause(ORIGIN, DF, Window(45, 49)),
    )


def test_later_clause_overrides_earlier_ones():
    program = parse("IV-IV+VV-VV@0..9+origin@5..6")
    forms = [str(program.form_at(i, 20)) for i in range(20)]
    assert forms == ["VV-VV"] * 5 + ["origin"] * 2 + ["VV-VV"] * 3 + ["IV-IV"] * 10
    assert program.clause_at(5, 20) == Clause(ORIGIN, DF, Window(5, 6))
    assert program.clause_at(12, 20) == Clause(Form("IV", "IV"))


def test_unselected_steps_run_origin():
    program = parse("IV-IV@2..3")
    assert [program.clause_at(i, 6) for i in range(6)] == [None, None, program.clauses[0], program.clauses[0], None, None]
    assert program.substeps(0, 999, 6) == ()


def test_parse_rejects_non_text():
    with pytest.raises(TypeError, match="program text must be a str"):
        parse(b"IV-IV")  # type: ignore[arg-type]


def test_is_origin():
    assert parse("origin").is_origin
    assert parse("origin@0..3").is_origin
    assert parse("IV-IV+origin").is_origin  # the last clause covers every step
    assert parse("IV-IV@0..3+origin").is_origin
    assert not parse("origin+IV-IV@0..3").is_origin
    assert not parse("IV-IV+origin@0..3").is_origin
    assert not parse("IV-IV").is_origin


# --------------------------------------------------------------------------------------------------
# Round trip and fuzzing
# --------------------------------------------------------------------------------------------------


@st.composite
def forms(draw) -> Form:
    if draw(st.integers(0, 5)) == 0:
        return ORIGIN
    noise = draw(st.text(alphabet="RIV", min_size=1, max_size=4))
    denoise = draw(st.text(alphabet="IV", min_size=len(noise), max_size=len(noise)))
    return Form(noise, denoise)


windows = st.tuples(st.integers(0, MAX_INDEX), st.integers(0, MAX_INDEX)).map(lambda p: Window(min(p), max(p)))
percents = st.floats(min_value=0.0, max_value=100.0, exclude_min=True).map(Percent)
periods = st.integers(1, MAX_INDEX).flatmap(lambda k: st.integers(0, k - 1).map(lambda j: Every(k, j)))
selectors = st.one_of(st.just(AllSteps()), windows, percents, periods)


@st.composite
def clauses(draw) -> Clause:
    form = draw(forms())
    order = DF if form.is_origin else draw(st.sampled_from([DF, NF] + ([AD] if form.length == 2 else [])))
    return Clause(form, order, draw(selectors))


programs = st.lists(clauses(), min_size=1, max_size=5).map(lambda cs: Program(tuple(cs)))


@FAST
@given(programs)
def test_round_trip(program):
    text = str(program)
    assert parse(text) == program
    assert " " not in text and "," not in text  # the sweep CLI splits program lists on commas


def test_round_trip_of_awkward_percentages():
    for value in [5e-324, 1e-05, 0.1, 1 / 3, 66.7, 99.99999999999999, 100.0]:
        program = one(Form("VV", "VV"), DF, Percent(value))
        assert parse(str(program)) == program, str(program)
    assert str(Percent(1e-05)) == "0.00001%"


# Tokens of the grammar (and near misses), so that many fuzzed strings are almost valid.
TOKENS = [
    "IV", "RR", "II", "VV", "R", "I", "V", "X", "i", "iv", "r", "origin", "Origin", "all", "df", "nf",
    "noise-first", "-", "+", ":", "@", "..", ".", "%", "=", "==", "0", "2", "3", "24", "66.7", "100", "150",
    "1e3", " ", "\t", "\n", ",", ")", "\x00", "é",
]
near_valid = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)


@st.composite
def mutated(draw) -> str:
    """A valid program with one character deleted, inserted or replaced."""
    text = str(draw(programs))
    position = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from("RIVXi-+:@.%=0123456789 ,"))
    edit = draw(st.sampled_from(["delete", "insert", "replace"]))
    if edit == "delete":
        return text[:position] + text[position + 1 :]
    if edit == "insert":
        return text[:position] + char + text[position:]
    return text[:position] + char + text[position + 1 :]


def check_parse_outcome(text: str) -> None:
    try:
        program = parse(text)
    except InvalidProgram as error:
        lines = str(error).split("\n")
        assert len(lines) == 3, lines
        assert lines[0].startswith("invalid program: ") and "expected" in lines[0]
        assert len(lines[0]) < 400  # long tokens are quoted shortened
        shown = "".join(" " if c.isspace() else (c if c.isprintable() else "?") for c in text)
        assert 0 <= error.column <= len(text)
        assert error.text == text
        if len(text) <= 120:
            assert lines[1] == "    " + shown
            assert lines[2] == "    " + " " * error.column + "^"
        else:  # an excerpt of 120 characters around the column, cut ends marked
            body, caret = lines[1][4:], lines[2].index("^") - 4
            assert lines[2] == "    " + " " * caret + "^"
            head = "…" if body.startswith("…") else ""
            excerpt = body[len(head) :].removesuffix("…")
            start = error.column - (caret - len(head))  # where the excerpt starts in the text
            assert len(excerpt) == 120 and shown[start : start + 120] == excerpt
            assert bool(head) == (start > 0) and body.endswith("…") == (start + 120 < len(text))
        assert isinstance(error, ValueError)
    else:
        assert isinstance(program, Program)
        assert parse(str(program)) == program
        assert len(text) <= MAX_PROGRAM_CHARS and len(program.clauses) <= MAX_CLAUSES


@settings(max_examples=2000, deadline=None, database=None)
@given(st.one_of(st.text(), near_valid, mutated()))
def test_fuzz_parse_only_returns_a_program_or_raises_invalid_program(text):
    check_parse_outcome(text)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------

ERRORS = {
    "IX-IV": (
        "invalid program: unknown letter 'X' in the add-noise phase; expected R, I or V\n"
        "    IX-IV\n"
        "     ^"
    ),
    "I-R": (
        "invalid program: letter 'R' in the denoise phase; expected I or V (R only adds noise)\n"
        "    I-R\n"
        "      ^"
    ),
    "II-I": (
        "invalid program: unequal phases: 2 add-noise letters but 1 denoise letter; "
        "expected the same number on both sides of '-'\n"
        "    II-I\n"
        "       ^"
    ),
    "IV-IV@0%": (
        "invalid program: percentage 0% selects no steps; expected a value above 0 and at most 100\n"
        "    IV-IV@0%\n"
        "          ^"
    ),
    "IV-IV@150%": (
        "invalid program: percentage 150% is more than 100%; expected a value above 0 and at most 100\n"
        "    IV-IV@150%\n"
        "          ^"
    ),
    "IV-IV@5..2": (
        "invalid program: empty window 5..2 (it ends before it begins); expected BEGIN..END with BEGIN <= END\n"
        "    IV-IV@5..2\n"
        "          ^"
    ),
    "IV-IV)": (
        "invalid program: unexpected ')' after the form IV-IV; expected ':', '@', '+' or the end of the program\n"
        "    IV-IV)\n"
        "         ^"
    ),
    "": (
        "invalid program: empty program; expected a form such as IV-IV, or origin\n"
        "    \n"
        "    ^"
    ),
    "IVIV": (
        "invalid program: missing '-' after the add-noise letters IVIV; expected NOISE-DENOISE such as IV-IV\n"
        "    IVIV\n"
        "        ^"
    ),
    "IV-IV:xy": (
        "invalid program: unknown phase order 'xy'; expected df (denoise-first), nf (noise-first) or ad (animatediff-swap)\n"
        "    IV-IV:xy\n"
        "          ^"
    ),
    "IV-IV@i%0=0": (
        "invalid program: period 0 is too small; expected i%K=J with K >= 1\n"
        "    IV-IV@i%0=0\n"
        "            ^"
    ),
    "IV-IV@i%3=3": (
        "invalid program: remainder 3 is out of range for period 3; expected 0..2\n"
        "    IV-IV@i%3=3\n"
        "              ^"
    ),
    "iv-iv": (
        "invalid program: lower-case letter 'i' in the add-noise phase; letters are upper case: expected R, I or V\n"
        "    iv-iv\n"
        "    ^"
    ),
    "origin:nf": (
        "invalid program: origin has no zigzag, so it takes no phase order; "
        "expected '@', '+' or the end of the program\n"
        "    origin:nf\n"
        "          ^"
    ),
    "IV-IV,RR-II": (
        "invalid program: unexpected ',' after the form IV-IV; expected ':', '@', '+' or the end of the program "
        "(clauses are joined with '+'; commas separate programs in a sweep list)\n"
        "    IV-IV,RR-II\n"
        "         ^"
    ),
    "IV-IV@0..3:nf": (
        "invalid program: the phase order comes before the selector; "
        "expected FORM:ORDER@SELECTOR such as IV-IV:nf@0..24\n"
        "    IV-IV@0..3:nf\n"
        "              ^"
    ),
}


@pytest.mark.parametrize("text", list(ERRORS))
def test_exact_error_text(text):
    with pytest.raises(InvalidProgram) as info:
        parse(text)
    assert str(info.value) == ERRORS[text]


@pytest.mark.parametrize(
    "text, reason, column",
    [
        ("IV-IV@", "missing selector after '@'; expected a window such as 0..24", 6),
        ("IV-IV@1.5..3", "step index 1.5 is not a whole number", 6),
        ("IV-IV@12", "incomplete selector 12; expected '..' (a window such as 12..20) or '%'", 8),
        ("IV-IV@12.5", "missing '%' after 12.5", 10),
        ("IV-IV@0..", "missing last step after '..'", 9),
        ("IV-IV@x", "unknown selector 'x'", 6),
        ("IV-IV@i3", "expected '%' after i", 7),
        ("IV-IV@i%3", "missing '=' after i%3", 9),
        ("IV-IV@i%3=", "missing remainder after '='", 10),
        ("IV-IV@i%1.5=0", "period 1.5 is not a whole number", 8),
        ("IV-IV+", "missing clause after '+'", 6),
        ("IV-IV++RR-II", "unexpected '+'; expected a form", 6),
        ("IV-", "missing denoise letters after '-'; expected I or V", 3),
        ("-IV", "missing add-noise letters before '-'; expected R, I or V", 0),
        ("@0..3", "unexpected '@'; expected a form", 0),
        ("IV-IV:", "missing phase order after ':'", 6),
        ("IV-IV:nf:df", "unexpected ':' after the phase order; expected '@', '+' or the end", 8),
        ("IV-IV@0..3@5%", "unexpected '@' after the selector 0..3; expected '+' or the end", 10),
        ("Origin", "'Origin' must be written in lower case", 0),
        ("IV-IX", "unknown letter 'X' in the denoise phase; expected I or V", 4),
        ("RV-RI", "letter 'R' in the denoise phase", 3),
        ("I-II", "unequal phases: 1 add-noise letter but 2 denoise letters", 2),
        ("IV-IV@101%", "percentage 101% is more than 100%", 6),
        ("IV-IV@100.0000000000000001%", "is more than 100%", 6),
        ("IV-IV@0.000%", "selects no steps", 6),
        ("   ", "empty program", 0),
        ("IV IV", "missing '-' after the add-noise letters IV", 3),
    ],
)
def test_error_reason_and_column(text, reason, column):
    with pytest.raises(InvalidProgram) as info:
        parse(text)
    assert info.value.reason.startswith(reason) or reason in info.value.reason, info.value.reason
    assert info.value.column == column
    assert info.value.text == text


def test_invalid_program_is_a_value_error_and_pickles():
    with pytest.raises(ValueError):
        parse("IX-IV")
    error = InvalidProgram("bad; expected good", "IX-IV", 1)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.column == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: Form("I", "R"),
        lambda: Form("II", "I"),
        lambda: Form("X", "I"),
        lambda: Window(5, 2),
        lambda: Window(-1, 3),
        lambda: Percent(0),
        lambda: Percent(150),
        lambda: Percent(math.nan),
        lambda: Every(0, 0),
        lambda: Every(3, 3),
        lambda: Every(3, -1),
        lambda: Clause(ORIGIN, NF),
        lambda: Clause(Form("I", "I"), "sideways"),
        lambda: Program(()),
    ],
)
def test_values_reject_what_the_grammar_rejects(build):
    with pytest.raises(ValueError):
        build()


# --------------------------------------------------------------------------------------------------
# Validation against N
# --------------------------------------------------------------------------------------------------


def test_window_outside_the_steps_is_an_error():
    with pytest.raises(InvalidProgram) as info:
        parse("IV-IV@0..60").validate(50)
    assert str(info.value) == (
        "invalid program: window 0..60 reaches step 60 but there are only 50 steps (0..49)\n"
        "    IV-IV@0..60\n"
        "             ^"
    )


def test_window_error_points_into_the_canonical_text():
    with pytest.raises(InvalidProgram) as info:
        parse("RR-II + IV-IV:nf@55..60 + origin").validate(50)
    assert info.value.text == "RR-II+IV-IV:nf@55..60+origin"
    assert info.value.column == len("RR-II+IV-IV:nf@55..")


def test_validate_accepts_what_fits():
    parse("IV-IV@0..49").validate(50)
    with pytest.raises(InvalidProgram, match=r"window 49\.\.50 reaches step 50 but there are only 50 steps \(0\.\.49\)"):
        parse("IV-IV@49..50").validate(50)
    parse(VC2).validate(2)  # i%3=2 selects nothing with 2 steps: allowed, documented
    parse("VV-VV@i%100=99").validate(50)
    with pytest.raises(ValueError, match=r"num_steps must be an int in 1\.\.1000000, got 0"):
        parse("IV-IV").validate(0)


def test_cost_and_substeps_validate():
    with pytest.raises(InvalidProgram):
        parse("IV-IV@0..60").cost(50, 16)
    with pytest.raises(InvalidProgram):
        parse("IV-IV@0..60").substeps(0, 999, 50)


# --------------------------------------------------------------------------------------------------
# Sub-steps
# --------------------------------------------------------------------------------------------------


def test_iv_iv_denoise_first_at_999():
    assert parse("IV-IV").substeps(0, 999, 50) == (
        SubStep(0, "I", "idm", "go", 999, 979),
        SubStep(1, "V", "vdm", "go", 979, 959),
        SubStep(2, "I", "idm", "back", 959, 979),
        SubStep(3, "V", "vdm", "back", 979, 999),
    )


def test_iv_iv_noise_first():
    assert parse("IV-IV:nf").substeps(10, 500, 50) == (
        SubStep(0, "I", "idm", "back", 500, 520),
        SubStep(1, "V", "vdm", "back", 520, 540),
        SubStep(2, "I", "idm", "go", 540, 520),
        SubStep(3, "V", "vdm", "go", 520, 500),
    )


def test_clamping_at_zero():
    program = parse("IV-IV")
    assert program.substeps(48, 20, 50) == (
        SubStep(0, "I", "idm", "go", 20, 0),
        SubStep(1, "V", "vdm", "go", 0, 0),
        SubStep(2, "I", "idm", "back", 0, 0),
        SubStep(3, "V", "vdm", "back", 0, 20),
    )
    assert [(s.t_from, s.t_to) for s in program.substeps(49, 0, 50)] == [(0, 0)] * 4


def test_clamping_at_the_top():
    program = parse("IV-IV:nf")
    assert [(s.t_from, s.t_to) for s in program.substeps(0, 999, 50)] == [(999, 999)] * 4
    assert program.substeps(0, 990, 50) == (
        SubStep(0, "I", "idm", "back", 990, 999),
        SubStep(1, "V", "vdm", "back", 999, 999),
        SubStep(2, "I", "idm", "go", 999, 999),
        SubStep(3, "V", "vdm", "go", 999, 990),
    )


def test_rr_ii_both_orders():
    assert parse("RR-II").substeps(0, 999, 50) == (
        SubStep(0, "I", "idm", "go", 999, 979),
        SubStep(1, "I", "idm", "go", 979, 959),
        SubStep(2, "R", None, "back", 959, 979),
        SubStep(3, "R", None, "back", 979, 999),
    )
    assert parse("RR-II:nf").substeps(0, 500, 50) == (
        SubStep(0, "R", None, "back", 500, 520),
        SubStep(1, "R", None, "back", 520, 540),
        SubStep(2, "I", "idm", "go", 540, 520),
        SubStep(3, "I", "idm", "go", 520, 500),
    )


def test_sub_step_size_is_t_over_n():
    assert parse("V-V").substeps(0, 960, 25) == (
        SubStep(0, "V", "vdm", "go", 960, 920),
        SubStep(1, "V", "vdm", "back", 920, 960),
    )
    assert parse("V-V").substeps(0, 99, 7, num_train_timesteps=100) == (
        SubStep(0, "V", "vdm", "go", 99, 85),
        SubStep(1, "V", "vdm", "back", 85, 99),
    )


def test_substeps_follow_the_overriding_clause():
    program = parse("IV-IV+RR-VV:nf@3..4+origin@4..4")
    assert [s.letter for s in program.substeps(2, 500, 50)] == ["I", "V", "I", "V"]
    assert [(s.letter, s.direction) for s in program.substeps(3, 500, 50)] == [
        ("R", "back"), ("R", "back"), ("V", "go"), ("V", "go"),
    ]
    assert program.substeps(4, 500, 50) == ()


def test_videocrafter2_recipe_uses_vv_vv_exactly_on_every_third_step():
    program = parse(VC2)
    grid = linspace_timesteps(50)
    for i, t in enumerate(grid):
        letters = "".join(s.letter for s in program.substeps(i, t, 50))
        assert letters == ("VVVV" if i % 3 == 2 else "IVIV"), i


def test_iv_iv_matches_the_released_level_chain_on_the_whole_grid():
    # ModelScope / VideoCrafter: t -> prev_t -> prev_prev_t -> prev_t -> t with prev_t = max(0, t - T//N)
    program = parse("IV-IV")
    for n in (10, 25, 50):
        delta = 1000 // n
        for i, t in enumerate(linspace_timesteps(n)):
            p1, p2 = max(0, t - delta), max(0, t - 2 * delta)
            chain = [(s.t_from, s.t_to) for s in program.substeps(i, t, n)]
            assert chain == [(t, p1), (p1, p2), (p2, p1), (p1, t)]


@FAST
@given(forms(), st.sampled_from([DF, NF]), st.integers(1, 200), st.data())
def test_substeps_law(form, order, num_steps, data):
    if form.is_origin:
        order = DF
    t = data.draw(st.integers(0, 999))
    subs = one(form, order).substeps(0, t, num_steps)
    k, delta = form.length, 1000 // num_steps
    assert len(subs) == 2 * k
    assert [s.index for s in subs] == list(range(2 * k))
    expected_letters = form.denoise + form.noise if order == DF else form.noise + form.denoise
    assert "".join(s.letter for s in subs) == expected_letters
    if subs:
        assert subs[0].t_from == t and subs[-1].t_to == t  # back to the starting level
    for a, b in zip(subs, subs[1:]):
        assert a.t_to == b.t_from  # a continuous chain
    for s in subs:
        assert s.model == {"R": None, "I": "idm", "V": "vdm"}[s.letter]
        assert 0 <= s.t_to <= 999 and abs(s.t_to - s.t_from) <= delta
        assert (s.t_to <= s.t_from) if s.direction == "go" else (s.t_to >= s.t_from)
    assert [s.direction for s in subs] == (["go"] * k + ["back"] * k if order == DF else ["back"] * k + ["go"] * k)


def test_integer_arguments_may_be_numpy_integers():
    import numpy as np
    program = parse("IV-IV")
    assert program.substeps(np.int64(0), np.int64(999), np.int64(50)) == program.substeps(0, 999, 50)
    assert all(type(s.t_to) is int for s in program.substeps(np.int64(0), np.int64(999), 50))
    assert Window(np.int64(1), np.int64(3)) == Window(1, 3)
    assert program.cost(np.int64(50), np.int32(16)) == Cost(3200, 300)
    with pytest.raises(TypeError):
        Window(1.0, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_frames must be an int >= 1"):
        program.cost(50, True)


def test_substeps_reject_bad_arguments():
    with pytest.raises(ValueError, match="t must be an int in 0..999"):
        parse("IV-IV").substeps(0, 1000, 50)
    with pytest.raises(ValueError, match="step must be an int in 0..49"):
        parse("IV-IV").substeps(50, 0, 50)
    with pytest.raises(ValueError, match=r"num_train_timesteps must be an int >= num_steps \(20\)"):
        parse("IV-IV").substeps(0, 5, 20, num_train_timesteps=10)


# --------------------------------------------------------------------------------------------------
# Percentages
# --------------------------------------------------------------------------------------------------

PERCENT_66_7_OF_50 = (
    1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 24, 25,
    27, 28, 30, 31, 33, 34, 36, 37, 39, 40, 42, 43, 45, 46, 48, 49,
)


@pytest.mark.parametrize(
    "value, num_steps, indices",
    [
        (66.7, 50, PERCENT_66_7_OF_50),  # 33.35 -> 33 steps
        (50, 4, (1, 3)),
        (25, 8, (3, 7)),
        (10, 25, (8, 16, 24)),  # 2.5 -> 3 (half up)
        (50, 3, (1, 2)),  # 1.5 -> 2 (half up)
        (37.5, 4, (1, 3)),  # 1.5 -> 2
        (62.5, 4, (1, 2, 3)),  # 2.5 -> 3
        (1, 50, (49,)),  # 0.5 -> 1
        (0.1, 50, (49,)),  # 0.05 -> 0 -> at least 1
        (100, 7, tuple(range(7))),
        (33.3, 51, tuple(range(2, 51, 3))),  # 16.983 -> 17 = 51/3: exactly i % 3 == 2
    ],
)
def test_percent_positions(value, num_steps, indices):
    assert Percent(value).indices(num_steps) == indices
    assert Percent(value).count(num_steps) == len(indices)


@FAST
@given(percents, st.integers(1, 300))
def test_percent_rule(selector, num_steps):
    chosen = selector.indices(num_steps)
    exact = selector.value * num_steps / 100
    m = selector.count(num_steps)
    assert len(chosen) == m
    assert 1 <= m <= num_steps
    assert abs(m - exact) <= 0.5 + 1e-9 or (m == 1 and exact < 0.5)  # rounded, at least one
    for n in range(num_steps + 1):  # evenly spread: the first n steps hold floor(n*m/N) of them
        assert sum(1 for i in chosen if i < n) == n * m // num_steps
    assert chosen == selector.indices(num_steps)  # deterministic


# --------------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, num_steps, num_frames, cost",
    [
        ("IV-IV", 50, 16, (3200, 300)),
        ("origin", 50, 16, (0, 100)),
        ("VV-VV@66.7%", 50, 16, (0, (33 * 4 + 50) * 2)),
        (VC2, 50, 16, (34 * 2 * 16 * 2, (34 * 2 + 16 * 4 + 50) * 2)),
        ("IV-IV@0..24", 50, 16, (1600, 200)),
        ("IV-IV@45..49", 50, 16, (320, 120)),
        ("RR-II", 50, 16, (3200, 100)),  # R uses no model
        ("R-V", 10, 8, (0, 40)),
        ("II-VV:nf+origin@0..9", 20, 4, (10 * 2 * 4 * 2, (10 * 2 + 20) * 2)),
    ],
)
def test_cost(text, num_steps, num_frames, cost):
    assert parse(text).cost(num_steps=num_steps, num_frames=num_frames) == Cost(*cost)


def test_cost_counts_clamped_sub_steps():
    # at the last grid step (t = 0) every sub-step stands still, and still costs
    assert parse("IV-IV@49..49").cost(50, 1) == Cost(4, 104)


@FAST
@given(programs, st.integers(1, 60), st.integers(1, 8))
def test_cost_equals_the_plan(program, num_steps, num_frames):
    if any(isinstance(c.selector, Window) and c.selector.end >= num_steps for c in program.clauses):
        with pytest.raises(InvalidProgram):
            program.cost(num_steps, num_frames)
        return
    idm = vdm = 0
    for i, t in enumerate(linspace_timesteps(num_steps)):
        models = [s.model for s in program.substeps(i, t, num_steps)]
        idm += models.count("idm")
        vdm += models.count("vdm")
    assert program.cost(num_steps, num_frames) == Cost(idm * num_frames * 2, (vdm + num_steps) * 2)


def test_cost_arithmetic():
    assert Cost(1, 2) + Cost(3, 4) == Cost(4, 6)
    assert sum([Cost(1, 2), Cost(3, 4)]) == Cost(4, 6)
    assert Cost(1, 2).as_dict() == {"idm_image_evals": 1, "vdm_clip_evals": 2}


# --------------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------------


def test_linspace_grid():
    grid = linspace_timesteps(50)
    assert grid[:6] == [999, 979, 958, 938, 917, 897] and grid[-2:] == [20, 0] and len(grid) == 50
    import numpy as np
    for n in (1, 2, 3, 7, 25, 50, 51, 100, 999, 1000):
        expected = np.linspace(0, 999, n).round()[::-1].astype(int).tolist()
        assert linspace_timesteps(n) == expected, n


def vv_plan(t: int) -> list[dict]:
    return [
        {"letter": "V", "model": "vdm", "direction": "go", "t_from": t, "t_to": t - 20},
        {"letter": "V", "model": "vdm", "direction": "go", "t_from": t - 20, "t_to": t - 40},
        {"letter": "V", "model": "vdm", "direction": "back", "t_from": t - 40, "t_to": t - 20},
        {"letter": "V", "model": "vdm", "direction": "back", "t_from": t - 20, "t_to": t},
    ]


def test_explain_vv_vv_at_66_7_percent():
    info = explain(parse("VV-VV@66.7%"), num_steps=50, num_frames=16)
    assert info == {
        "program": "VV-VV@66.7%",
        "num_steps": 50,
        "num_frames": 16,
        "num_train_timesteps": 1000,
        "delta": 20,
        "idm_image_evals": 0,
        "vdm_clip_evals": 364,
        "cost": {"idm_image_evals": 0, "vdm_clip_evals": 364},
        "forms": {"origin": 17, "VV-VV": 33},
        "steps": [
            {"step": 0, "t": 999, "form": "origin", "order": None, "substeps": []},
            {"step": 1, "t": 979, "form": "VV-VV", "order": DF, "substeps": vv_plan(979)},
            {"step": 2, "t": 958, "form": "origin", "order": None, "substeps": []},
        ],
        "notes": [],
    }
    json.dumps(info)


def test_explain_videocrafter2_recipe():
    info = explain(parse(VC2), num_steps=50, num_frames=16, show_steps=None)
    assert info["program"] == VC2
    assert info["cost"] == {"idm_image_evals": 2176, "vdm_clip_evals": 364}
    assert info["forms"] == {"IV-IV": 34, "VV-VV": 16}
    assert len(info["steps"]) == 50
    assert [s["form"] for s in info["steps"][:6]] == ["IV-IV", "IV-IV", "VV-VV"] * 2
    assert info["steps"][2]["substeps"] == vv_plan(958)
    assert info["steps"][0]["substeps"][0] == {"letter": "I", "model": "idm", "direction": "go", "t_from": 999, "t_to": 979}
    assert explain(parse(VC2), 50, 16, show_steps=0)["steps"] == []


def test_explain_noise_first_and_validation():
    info = explain(parse("RR-II:nf"), 10, 2, show_steps=1)
    assert info["delta"] == 100 and info["forms"] == {"RR-II:nf": 10}
    assert info["steps"][0]["order"] == NF
    assert [(s["t_from"], s["t_to"]) for s in info["steps"][0]["substeps"]] == [(999, 999)] * 4
    with pytest.raises(InvalidProgram, match="window 0..60 reaches step 60"):
        explain(parse("IV-IV@0..60"), 50, 16)


def test_format_explain():
    text = format_explain(explain(parse(VC2), 50, 16))
    lines = text.splitlines()
    assert lines[:4] == [
        "program  IV-IV+VV-VV@i%3=2",
        "steps    50, frames 16, sub-step delta = 1000 // 50 = 20",
        "forms    IV-IV on 34 steps, VV-VV on 16 steps",
        "cost     2176 IDM image evaluations, 364 VDM clip evaluations per video (CFG doubling included)",
    ]
    assert "   0   999  IV-IV     denoise-first    0  I       idm    go         999 -> 979" in lines
    assert "   2   958  VV-VV     denoise-first    0  V       vdm    go         958 -> 938" in lines
    assert sum("standard step" in line for line in lines) == 3
    assert lines[-1] == "(the first 3 of 50 steps; grid: DDIM linspace)"
    origin_text = format_explain(explain(parse("origin"), 50, 16, show_steps=1))
    assert "   0   999  origin    -              std" in origin_text


def test_the_documented_examples_table_is_true():
    """Every row of the examples table in the README parses and costs what it says."""
    sources = [Path(__file__).resolve().parents[1] / "README.md"]
    row = re.compile(r"^\| \*{0,2}`([^`]+)`\*{0,2} \| .+ \| (\d+) \| (\d+) \|$")
    rows = [m.groups() for p in sources for line in p.read_text(encoding="utf-8").splitlines() if (m := row.match(line))]
    assert len(rows) >= 15
    assert any(text == VC2 for text, _, _ in rows)
    for text, idm, vdm in rows:
        program = parse(text)
        assert str(program) == text
        assert program.cost(num_steps=50, num_frames=16) == Cost(int(idm), int(vdm)), text


# --------------------------------------------------------------------------------------------------
# Limits: huge numbers, long texts, many clauses
# --------------------------------------------------------------------------------------------------

HUGE = "9" * 5000  # more digits than Python converts to an int by default


@pytest.mark.parametrize(
    "text, column, reason",
    [
        (f"IV-IV@{HUGE}..1", 6, "step index 999999999999… (5000 characters) is out of range; expected at most 1000000"),
        (f"IV-IV@0..{HUGE}", 9, "step index 999999999999… (5000 characters) is out of range; expected at most 1000000"),
        (f"IV-IV@i%{HUGE}=1", 8, "period 999999999999… (5000 characters) is out of range; expected at most 1000000"),
        (f"IV-IV@i%3={HUGE}", 10, "remainder 999999999999… (5000 characters) is out of range; expected at most 1000000"),
        (f"IV-IV@{HUGE}%", 6, "percentage 999999999999… (5000 characters) is more than 100%"),
        (f"IV-IV@0.{'0' * 5000}1%", 6, "percentage 0.0000000000… (5003 characters) has too many digits; expected at most 400"),
        (f"IV-IV@{HUGE}", 5006, "incomplete selector 999999999999… (5000 characters); expected '..'"),
        (f"IV-IV@{HUGE}.5", 5008, "missing '%' after 999999999999… (5002 characters)"),
        ("IV-IV@0..1000001", 9, "step index 1000001 is out of range; expected at most 1000000"),
        ("IV-IV@i%1000001=0", 8, "period 1000001 is out of range"),
        ("IV-IV@00000000000000000000000000000000000007..1000000", None, None),  # leading zeros: fine
        ("IV-IV@999999..1000000", None, None),
        ("IV-IV@i%1000000=999999", None, None),
    ],
)
def test_numbers_out_of_range_point_at_the_number(text, column, reason):
    if reason is None:
        check_parse_outcome(text)
        parse(text)
        return
    with pytest.raises(InvalidProgram) as info:
        parse(text)
    assert info.value.column == column
    assert info.value.reason.startswith(reason), info.value.reason
    check_parse_outcome(text)


def test_a_program_has_at_most_max_program_chars_characters():
    long = "+".join(["IV-IV:nf@i%1000=999"] * (MAX_CLAUSES - 1)) + "+II-II"
    long += " " * (MAX_PROGRAM_CHARS - len(long))  # exactly at the limit: fine
    assert len(long) == MAX_PROGRAM_CHARS and len(parse(long).clauses) == MAX_CLAUSES
    with pytest.raises(InvalidProgram, match=f"the program is {MAX_PROGRAM_CHARS + 1} characters long"):
        parse(long + " ")
    for text in ["IV-IV+" * 16666 + "IV-IV", "IV-IV" + " " * 100_000, "I" * 100_000, f"IV-IV@{'9' * 100_000}..1"]:
        with pytest.raises(InvalidProgram) as info:
            parse(text)
        assert info.value.reason.startswith(
            f"the program is {len(text)} characters long; expected at most {MAX_PROGRAM_CHARS}"
        )
        assert info.value.column == MAX_PROGRAM_CHARS and info.value.text == text
        assert len(str(info.value)) < 600  # the text is shown as an excerpt around the column
        check_parse_outcome(text)


def test_a_program_has_at_most_max_clauses_clauses():
    most = "+".join(["I-I"] * MAX_CLAUSES)
    assert len(parse(most).clauses) == MAX_CLAUSES
    with pytest.raises(InvalidProgram) as info:
        parse(most + "+V-V")
    assert info.value.reason.startswith(f"too many clauses: this is clause {MAX_CLAUSES + 1}; expected at most {MAX_CLAUSES}")
    assert info.value.column == len(most) + 1  # at the extra clause
    with pytest.raises(ValueError, match=f"at most {MAX_CLAUSES} clauses"):
        Program((Clause(Form("I", "I")),) * (MAX_CLAUSES + 1))


def test_a_phase_has_at_most_max_letters_letters():
    most = "I" * MAX_LETTERS
    assert parse(f"{most}-{most}").clauses[0].form.length == MAX_LETTERS
    with pytest.raises(InvalidProgram) as info:
        parse(f"{most}I-{most}V")
    assert info.value.reason.startswith(f"too many letters in the add-noise phase: {MAX_LETTERS + 1}")
    assert info.value.column == MAX_LETTERS
    with pytest.raises(ValueError, match=f"at most {MAX_LETTERS} letters"):
        Form("I" * (MAX_LETTERS + 1), "V" * (MAX_LETTERS + 1))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Window(0, MAX_INDEX + 1),
        lambda: Every(MAX_INDEX + 1, 0),
        lambda: Program((Clause(Form("I" * MAX_LETTERS, "I" * MAX_LETTERS), NF, Window(MAX_INDEX - 1, MAX_INDEX)),) * 200),
    ],
)
def test_values_keep_to_the_limits_so_that_they_print_as_parsable_text(build):
    with pytest.raises(ValueError):
        build()


def test_the_longest_percentage_a_float_holds_fits_the_number_limit():
    for value in [5e-324, 2.2250738585072014e-308, 1e-300, 99.99999999999999]:
        text = str(Percent(value))[:-1]
        assert len(text) <= MAX_NUMBER_CHARS
        assert parse(f"VV-VV@{text}%").clauses[0].selector == Percent(value)


digit_runs = st.integers(1, 6000).map(lambda n: "9" * n) | st.integers(1, 6000).map(lambda n: "0" * n + "1")


@st.composite
def huge_or_long(draw) -> str:
    """Valid or near-valid programs with a huge number somewhere, or repeated to tens of thousands of characters."""
    kind = draw(st.sampled_from(["number", "repeat", "word"]))
    if kind == "number":
        template = draw(st.sampled_from(["IV-IV@{}..1", "IV-IV@0..{}", "IV-IV@i%{}=0", "IV-IV@i%7={}", "VV-VV@{}%",
                                         "VV-VV@0.{}%", "VV-VV@{}.5%", "IV-IV@{}", "RR-II:nf@{}..{}", "{}-IV",
                                         "VV-VV@0.{}1%0", "IV-IV@{}..{}x", "IV-IV@i%{}={}:", "VV-VV@{}%,"]))
        return template.replace("{}", draw(digit_runs))
    if kind == "repeat":
        piece = draw(st.one_of(near_valid, st.sampled_from(["IV-IV+", "VV-VV@66.7%+", "I-I@0..0+", " ", "+"])))
        return piece * draw(st.integers(1, 30_000 // max(1, len(piece))))
    letters = draw(st.sampled_from("RIVX"))
    return letters * draw(st.integers(1, 25_000)) + draw(st.sampled_from(["", "-", "-IV", "-" + letters * 70]))


@pytest.mark.parametrize("selector", ["0." + "0" * 300 + "1%", "1" * 390 + "..2" + "0" * 390, "i%" + "9" * 390 + "=0"])
def test_trailing_text_after_a_long_selector_is_quoted_shortened(selector):
    # found by the fuzz test in CI: the selector was printed in full after "unexpected ... after the selector"
    text = "IIII-IIII@" + selector + "0x"
    check_parse_outcome(text)
    with pytest.raises(InvalidProgram, match=r"characters\)"):
        parse(text)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(huge_or_long())
def test_fuzz_long_inputs_and_huge_numbers(text):
    check_parse_outcome(text)


@FAST
@given(programs, st.integers(1, 80))
def test_the_per_step_table_agrees_with_clause_at(program, num_steps):
    if any(isinstance(c.selector, Window) and c.selector.end >= num_steps for c in program.clauses):
        return
    table = program._clauses_by_step(num_steps)
    assert list(table) == [program.clause_at(i, num_steps) for i in range(num_steps)]


def test_many_clauses_cost_and_explain_are_exact():
    """833 clauses at 66.7% (the last wins on the steps it selects) and 1000 per-step windows at N = 1000."""
    program = parse("+".join(["VV-VV@66.7%"] * 832 + ["IV-IV@66.7%"]))
    assert program.cost(1000, 16) == Cost(667 * 2 * 16 * 2, (667 * 2 + 1000) * 2)
    info = explain(program, 1000, 16)
    assert info["forms"] == {"origin": 333, "IV-IV": 667}
    windows = parse("+".join(f"{'IV-IV' if i % 2 else 'VV-VV'}@{i}..{i}" for i in range(1000)))
    assert explain(windows, 1000, 16)["forms"] == {"VV-VV": 500, "IV-IV": 500}


def test_explain_checks_the_step_count_against_t_before_any_work():
    with pytest.raises(ValueError, match="num_train_timesteps must be an int >= num_steps"):
        explain(parse("IV-IV"), 100_000, 16)
    with pytest.raises(ValueError, match=r"num_steps must be an int in 1\.\.1000000, got 100000000"):
        explain(parse("IV-IV"), 100_000_000, 16, num_train_timesteps=10**9)


# --------------------------------------------------------------------------------------------------
# The released AnimateDiff order (ad)
# --------------------------------------------------------------------------------------------------


def test_animatediff_swap_trades_the_levels_of_the_two_denoise_sub_steps():
    program = parse("IV-IV:ad")
    assert program == one(Form("IV", "IV"), AD) and str(program) == "IV-IV:ad"
    assert parse("IV-IV:animatediff-swap") == program
    plan = [(s.letter, s.direction, s.t_from, s.t_to) for s in program.substeps(0, 999, 50)]
    assert plan == [("I", "go", 979, 959), ("V", "go", 999, 979), ("I", "back", 959, 979), ("V", "back", 979, 999)]
    plain = [(s.letter, s.direction, s.t_from, s.t_to) for s in parse("IV-IV").substeps(0, 999, 50)]
    assert plain == [("I", "go", 999, 979), ("V", "go", 979, 959), ("I", "back", 959, 979), ("V", "back", 979, 999)]
    # clamped at the end of the grid, as max(0, ·) clamps the released prev_t and prev_prev_t
    assert [(s.t_from, s.t_to) for s in program.substeps(48, 20, 50)] == [(0, 0), (20, 0), (0, 0), (0, 20)]
    assert program.cost(50, 16) == parse("IV-IV").cost(50, 16)


def test_animatediff_swap_needs_two_letters_per_phase():
    with pytest.raises(InvalidProgram, match="the order ad swaps the levels of two denoise sub-steps, but I-I has 1 letter"):
        parse("I-I:ad")
    with pytest.raises(ValueError, match="needs two letters per phase"):
        Clause(Form("IVV", "IVV"), AD)


def test_explain_names_the_animatediff_swap():
    info = explain(parse("IV-IV:ad"), 50, 16, show_steps=1)
    assert info["steps"][0]["order"] == AD
    assert info["notes"] and "released AnimateDiff" in info["notes"][0]
    text = format_explain(info)
    assert "note     ad (animatediff-swap) runs the released AnimateDiff pipeline's sub-steps" in text
    assert "   0   999  IV-IV     animatediff-swap    0  I       idm    go         979 -> 959" in text
    assert "note" not in format_explain(explain(parse("IV-IV"), 50, 16))


# --------------------------------------------------------------------------------------------------
# The module stays light
# --------------------------------------------------------------------------------------------------


def test_module_does_not_import_torch():
    path = Path(__file__).resolve().parents[1] / "ivmixed" / "program.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('program_alone', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['program_alone'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(module.parse('IV-IV').cost(50, 16).as_dict())\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "3200" in result.stdout
