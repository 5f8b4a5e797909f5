"""Spectral lines: geff, Gg and C against numbers computed by hand from the formulas."""

import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import LINES, SpectralLine, get_line

# (geff, Gg) worked out by hand (python used as a calculator) from
# d = J1(J1+1) - J2(J2+1), s = J1(J1+1) + J2(J2+1),
# geff = (g1+g2)/2 + (g1-g2) d/4, Gg = geff^2 - 0.0125 (g1-g2)^2 (16 s - 7 d^2 - 4):
HAND = {
    # 8542: d = 8.75 - 3.75 = 5, s = 12.5; geff = 1.265 - 0.1625; 16s - 7d^2 - 4 = 21
    "8542": (1.1025, 1.21107),
    # 6301: d = 0, s = 12; 16s - 4 = 188
    "6301": (1.67, 2.51724),
    # 6302: d = 2, s = 2: 16s - 7d^2 - 4 = 0, a normal triplet
    "6302": (2.49, 6.2001),
    "8468": (2.495, 6.22495),
    "6173": (2.5, 6.25),
    # 5173 (Mg I b2): d = 0, s = 4; 0.0125 * 0.25 * 60 = 0.1875
    "5173": (1.75, 2.875),
    # 5896 (Na I D1): d = 0, s = 1.5; 0.0125 * (4/3)^2 * 20 = 4/9
    "5896": (4.0 / 3.0, 4.0 / 3.0),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_geff_and_Gg_match_hand_values(name):
    line = get_line(name)
    geff, gg = HAND[name]
    assert line.geff == pytest.approx(geff, rel=1e-12, abs=1e-12)
    assert line.Gg == pytest.approx(gg, rel=1e-12, abs=1e-12)


def test_seven_lines_and_their_centres():
    assert sorted(LINES) == ["5173", "5896", "6173", "6301", "6302", "8468", "8542"]
    assert LINES["5173"].center == 5172.6843
    assert LINES["8542"].center == 8542.091


def test_C_constant():
    # -4.67e-13 * 5172.6843^2, by hand
    assert get_line("5173").C == pytest.approx(-1.2495361559106852e-05, rel=1e-12)
    assert get_line("8542").C == pytest.approx(-3.407573781061523e-05, rel=1e-12)


def test_aliases_and_types():
    assert get_line("MgI_5173") is LINES["5173"]
    assert get_line("caii_8542") is LINES["8542"]
    assert get_line("NaI D1") is LINES["5896"]
    assert get_line(5173) is LINES["5173"]
    line = LINES["6302"]
    assert get_line(line) is line


def test_any_other_line_from_its_levels():
    # Fe I 5250.2 (J 0 -> 1, g_u = 3.00): a normal triplet, geff = Gg^(1/2) = 3
    line = get_line({"name": "5250", "center": 5250.2084, "j1": 0, "j2": 1, "g1": 0.0, "g2": 3.0})
    assert line.geff == pytest.approx(3.0)
    assert line.Gg == pytest.approx(9.0)
    assert line.to_dict()["center"] == 5250.2084
    # the formulas are symmetric in the two levels
    swapped = SpectralLine("x", 8542.091, 1.5, 2.5, 1.33, 1.2)
    assert swapped.geff == pytest.approx(1.1025) and swapped.Gg == pytest.approx(1.21107)


def test_unknown_line_lists_known_ones():
    with pytest.raises(HashwfaError) as err:
        get_line("1234")
    msg = str(err.value)
    assert "1234" in msg
    for name in LINES:
        assert name in msg


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"center": -1.0, "j1": 1, "j2": 0, "g1": 1, "g2": 0}, "center"),
        ({"center": 5000.0, "j1": 0.3, "j2": 0, "g1": 1, "g2": 0}, "j1"),
        ({"center": 5000.0, "j1": 3, "j2": 1, "g1": 1, "g2": 0}, "dipole"),
        ({"center": 5000.0, "j1": 0, "j2": 0, "g1": 1, "g2": 0}, "dipole"),
        ({"center": 5000.0, "j1": 1, "j2": 0, "g1": float("nan"), "g2": 0}, "g1"),
    ],
)
def test_bad_line_definitions(kwargs, words):
    with pytest.raises(HashwfaError, match=words):
        get_line(kwargs)


def test_incomplete_definition():
    with pytest.raises(HashwfaError, match="missing keys"):
        get_line({"center": 5000.0, "j1": 1})
