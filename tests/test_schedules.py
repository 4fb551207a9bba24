"""Guidance ramps, the I/V × go/back table, and the mapping of the released code's knobs."""

import pytest

from ivmixed.schedules import (
    GuidanceTable,
    Ramp,
    constant,
    from_released_knobs,
    karras_ramp,
    karras_ramp_float32,
    linear,
    released_guidance,
)


def by_hand(i, n=50, begin=6.0, end=2.0, rho=7.0):
    lo, hi = begin ** (1 / rho), end ** (1 / rho)
    return (lo + i / (n - 1) * (hi - lo)) ** rho


# begin 6, end 2, rho 7 over 50 steps, computed by hand (to 6 digits) from (6^(1/7) + i/49 (2^(1/7) - 6^(1/7)))^7
HAND = {0: 6.0, 10: 4.860415, 25: 3.500086, 40: 2.480076, 49: 2.0}


@pytest.mark.parametrize("i", sorted(HAND))
def test_karras_ramp_against_hand_computed_values(i):
    ramp = karras_ramp(50, 6, 2, 7)
    assert len(ramp) == 50
    assert ramp[i] == pytest.approx(HAND[i], abs=1e-5)
    assert ramp[i] == pytest.approx(by_hand(i), rel=1e-12)


def test_ramps_are_built_for_the_actual_number_of_steps():
    for n in (2, 13, 50, 120):
        ramp = karras_ramp(n, 6, 2, 7)
        assert len(ramp) == n and ramp[0] == pytest.approx(6) and ramp[-1] == pytest.approx(2)
    assert karras_ramp(1, 6, 2) == [6.0]
    assert linear(5, 6, 2) == [6, 5, 4, 3, 2]
    assert constant(3, 4) == [4.0, 4.0, 4.0]
    # monotone between the ends, convex toward the end for rho > 1
    ramp = karras_ramp(50, 6, 2, 7)
    assert all(a > b for a, b in zip(ramp, ramp[1:]))
    assert ramp[25] < linear(50, 6, 2)[25]


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_ramp_rejects_bad_lengths(bad):
    with pytest.raises(ValueError, match="positive integer number of steps"):
        karras_ramp(bad, 6, 2)


def test_released_knobs_map_to_karras_ramps_per_model():
    table = from_released_knobs(i_sigma_begin=6, i_sigma_end=2, v_sigma_begin=2, v_sigma_end=6, rho=7)
    built = table.build(50)
    assert built.scale("idm", "go", 10) == pytest.approx(HAND[10], abs=1e-5)
    assert built.scale("idm", "back", 10) == pytest.approx(-HAND[10], abs=1e-5)  # inversion uses the negated scale
    assert built.scale("vdm", "go", 0) == pytest.approx(2.0)
    assert built.scale("vdm", "back", 49) == pytest.approx(-6.0)
    # the released defaults (all 4) are a constant 4, here exactly
    default = from_released_knobs().build(50)
    assert all(default.scale("idm", "go", i) == pytest.approx(4.0, rel=1e-12) for i in range(50))


def test_default_table_is_four_everywhere_with_negated_back():
    built = GuidanceTable().build(7)
    for model in ("idm", "vdm"):
        for i in range(7):
            assert built.scale(model, "go", i) == 4.0
            assert built.scale(model, "back", i) == -4.0


@pytest.mark.parametrize(
    "text,ramp",
    [
        ("4", Ramp("constant", (4.0,))),
        ("constant(2.5)", Ramp("constant", (2.5,))),
        ("linear(6,2)", Ramp("linear", (6.0, 2.0))),
        ("karras(6, 2, 7)", Ramp("karras", (6.0, 2.0, 7.0))),
        ("karras(6,2)", Ramp("karras", (6.0, 2.0))),
    ],
)
def test_ramp_parse(text, ramp):
    assert Ramp.parse(text) == ramp
    assert Ramp.parse(str(ramp)) == ramp


@pytest.mark.parametrize(
    "text,message",
    [
        ("fast", "expected a number"),
        ("cosine(1,2)", "unknown ramp kind 'cosine'"),
        ("linear(1)", "linear takes 2 numbers, got 1"),
        ("karras(a,b)", "cannot read the numbers"),
    ],
)
def test_ramp_parse_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Ramp.parse(text)


def test_float32_karras_ramp_is_the_released_guidance_array():
    """The released code's ``get_sigmas_karras`` in float32 (notes §2): ≈4.000001 rather than 4, 1.9999998, 6.0000005."""
    torch = pytest.importorskip("torch")
    for begin, end, value in [(4, 4, 4.000000953674316), (2, 2, 1.999999761581421), (6, 6, 6.000000476837158)]:
        lo, hi = begin ** (1 / 7), end ** (1 / 7)
        released = ((lo + torch.linspace(0, 1, 50) * (hi - lo)) ** 7).tolist()  # float32, as the released code
        assert karras_ramp_float32(50, begin, end, 7) == released == [value] * 50
    ramp = karras_ramp_float32(50, 6, 2, 7)
    assert ramp == pytest.approx(karras_ramp(50, 6, 2, 7), rel=1e-6) and ramp != karras_ramp(50, 6, 2, 7)
    assert Ramp.parse("karras-float32(4,4,7)") == Ramp("karras-float32", (4.0, 4.0, 7.0))


def test_released_guidance_is_the_float32_value_and_the_default_stays_exact():
    built = released_guidance().build(50)
    assert {built.scale(m, d, i) for m in ("idm", "vdm") for d in ("go",) for i in range(50)} == {4.000000953674316}
    assert {built.scale(m, "back", i) for m in ("idm", "vdm") for i in range(50)} == {-4.000000953674316}
    assert released_guidance().as_dict()["v_back"] == "karras-float32(4, 4, 7)"
    assert set(GuidanceTable().build(50).scales[("idm", "go")]) == {4.0}
