"""Spectral lines for the weak-field approximation.

A :class:`SpectralLine` is a line centre (Angstrom) and the total angular
momentum J and Lande factor g of its two levels. The effective Lande factor
``geff`` (first moment of the Zeeman pattern, used for Stokes V) and ``Gg``
(second moment, used for Stokes Q and U) are computed from those numbers,
never typed in, with the formulas of Landi Degl'Innocenti & Landolfi (2004)::

    d    = J1(J1+1) - J2(J2+1)
    s    = J1(J1+1) + J2(J2+1)
    geff = (g1 + g2)/2 + (g1 - g2) d / 4
    Gg   = geff^2 - 0.0125 (g1 - g2)^2 (16 s - 7 d^2 - 4)

Level 1 is the lower level and level 2 the upper one in :data:`LINES`; both
formulas are symmetric under swapping the levels, so the order only matters
for documentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Union

from hashwfa.errors import HashwfaError

#: Larmor constant of the weak-field approximation in Angstrom^-1 G^-1:
#: the Zeeman splitting is ``4.67e-13 * lambda0^2 * g * B`` Angstrom.
LARMOR_CONSTANT = 4.67e-13


def _check_momentum(value: float, what: str, line: str) -> float:
    """Return ``value`` as a float if it is a non-negative (half-)integer."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise HashwfaError(f"line {line!r}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or abs(2 * value - round(2 * value)) > 1e-9:
        raise HashwfaError(
            f"line {line!r}: {what} = {value!r} is not a total angular momentum; "
            "use a non-negative integer or half-integer (0, 0.5, 1, 1.5, ...)"
        )
    return value


@dataclass(frozen=True)
class SpectralLine:
    """A spectral line: centre wavelength and the (J, g) of its two levels.

    Attributes:
        name: short name used in configs and FITS headers (e.g. ``"5173"``).
        center: line-centre wavelength lambda0 in Angstrom (air, as usual for
            these lines).
        j1, g1: total angular momentum and Lande factor of level 1 (lower).
        j2, g2: the same for level 2 (upper).

    Derived (read-only properties): ``geff`` and ``Gg`` (dimensionless) and
    ``C = -4.67e-13 * center^2`` in Angstrom per gauss.

    Raises:
        HashwfaError: when the centre is not a positive finite number, a J is
            not a non-negative (half-)integer, a g is not finite, or the two
            J values cannot be connected by a dipole transition
            (``|J1 - J2| > 1`` or ``J1 = J2 = 0``).
    """

    name: str
    center: float
    j1: float
    j2: float
    g1: float
    g2: float

    def __post_init__(self) -> None:
        label = str(self.name)
        try:
            center = float(self.center)
        except (TypeError, ValueError):
            center = float("nan")
        if not math.isfinite(center) or center <= 0:
            raise HashwfaError(
                f"line {label!r}: center = {self.center!r} must be the positive line-centre "
                "wavelength in Angstrom (e.g. 5172.6843)"
            )
        j1 = _check_momentum(self.j1, "j1", label)
        j2 = _check_momentum(self.j2, "j2", label)
        if abs(j1 - j2) > 1 + 1e-9 or (j1 == 0 and j2 == 0):
            raise HashwfaError(
                f"line {label!r}: J1 = {j1}, J2 = {j2} is not an electric-dipole transition; "
                "the two J must differ by at most 1 and not both be 0"
            )
        for attr in ("g1", "g2"):
            try:
                g = float(getattr(self, attr))
            except (TypeError, ValueError):
                g = float("nan")
            if not math.isfinite(g):
                raise HashwfaError(f"line {label!r}: {attr} = {getattr(self, attr)!r} must be a finite Lande factor")
            object.__setattr__(self, attr, g)
        # Store normalised floats so equality and FITS headers are predictable.
        object.__setattr__(self, "name", label)
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "j1", j1)
        object.__setattr__(self, "j2", j2)

    @property
    def geff(self) -> float:
        """Effective Lande factor (dimensionless), first moment of the Zeeman pattern."""
        d = self.j1 * (self.j1 + 1) - self.j2 * (self.j2 + 1)
        return 0.5 * (self.g1 + self.g2) + 0.25 * (self.g1 - self.g2) * d

    @property
    def Gg(self) -> float:  # noqa: N802 - the community's symbol
        """Second-order effective Lande factor G (dimensionless), for Stokes Q and U."""
        d = self.j1 * (self.j1 + 1) - self.j2 * (self.j2 + 1)
        s = self.j1 * (self.j1 + 1) + self.j2 * (self.j2 + 1)
        delta = 0.0125 * (self.g1 - self.g2) ** 2 * (16 * s - 7 * d * d - 4)
        return self.geff ** 2 - delta

    @property
    def C(self) -> float:  # noqa: N802 - the community's symbol
        """WFA constant ``-4.67e-13 * center^2`` in Angstrom per gauss."""
        return -LARMOR_CONSTANT * self.center ** 2

    def to_dict(self) -> Dict[str, Any]:
        """The defining numbers as a JSON-friendly dict (name, center [A], j1, j2, g1, g2)."""
        return {"name": self.name, "center": self.center, "j1": self.j1, "j2": self.j2,
                "g1": self.g1, "g2": self.g2}


#: The lines the community uses with the WFA, by short name.
LINES: Dict[str, SpectralLine] = {
    line.name: line
    for line in (
        SpectralLine("8542", 8542.091, 2.5, 1.5, 1.2, 1.33),       # Ca II 8542
        SpectralLine("6301", 6301.4995, 2.0, 2.0, 1.84, 1.50),     # Fe I 6301
        SpectralLine("6302", 6302.4931, 1.0, 0.0, 2.49, 0.0),      # Fe I 6302
        SpectralLine("8468", 8468.4059, 1.0, 1.0, 2.50, 2.49),     # Fe I 8468
        SpectralLine("6173", 6173.3340, 1.0, 0.0, 2.50, 0.0),      # Fe I 6173
        SpectralLine("5173", 5172.6843, 1.0, 1.0, 1.50, 2.0),      # Mg I b2
        SpectralLine("5896", 5895.9242, 0.5, 0.5, 2.00, 2.0 / 3.0),  # Na I D1
    )
}

#: Readable aliases (matched case-insensitively) for the short names.
ALIASES: Dict[str, str] = {
    "caii_8542": "8542", "ca_ii_8542": "8542", "ca8542": "8542",
    "fei_6301": "6301", "fe_i_6301": "6301", "fe6301": "6301",
    "fei_6302": "6302", "fe_i_6302": "6302", "fe6302": "6302",
    "fei_8468": "8468", "fe_i_8468": "8468", "fe8468": "8468",
    "fei_6173": "6173", "fe_i_6173": "6173", "fe6173": "6173",
    "mgi_5173": "5173", "mg_i_5173": "5173", "mgi_b2": "5173", "mg_b2": "5173", "mg5173": "5173",
    "nai_5896": "5896", "na_i_5896": "5896", "nai_d1": "5896", "na_d1": "5896", "na5896": "5896",
}


def get_line(line: Union[str, int, SpectralLine, Mapping[str, Any]]) -> SpectralLine:
    """Return a :class:`SpectralLine` from a name, a line, or a definition.

    Args:
        line: one of

            - a short name of :data:`LINES` (``"5173"`` or the integer 5173),
              or an alias such as ``"MgI_5173"`` (case-insensitive);
            - a :class:`SpectralLine` (returned as is);
            - a mapping with keys ``center`` (Angstrom), ``j1``, ``j2``,
              ``g1``, ``g2`` and optionally ``name`` (any other line).

    Raises:
        HashwfaError: for an unknown name (the message lists the known ones)
            or an incomplete definition.
    """
    if isinstance(line, SpectralLine):
        return line
    if isinstance(line, Mapping):
        keys = {"center", "j1", "j2", "g1", "g2"}
        missing = sorted(keys - set(line))
        extra = sorted(set(line) - keys - {"name"})
        if missing or extra:
            raise HashwfaError(
                f"line definition {dict(line)!r}: "
                + (f"missing keys {missing}" if missing else f"unknown keys {extra}")
                + "; give center (Angstrom), j1, j2, g1, g2 and optionally name"
            )
        name = line.get("name", f"{float(line['center']):.4f}")
        return SpectralLine(str(name), line["center"], line["j1"], line["j2"], line["g1"], line["g2"])
    if isinstance(line, bool) or not isinstance(line, (str, int)):
        raise HashwfaError(
            f"line {line!r}: expected a line name such as '5173', a SpectralLine, or a dict "
            "with center, j1, j2, g1, g2"
        )
    key = str(line).strip()
    if key in LINES:
        return LINES[key]
    alias = ALIASES.get(key.lower().replace(" ", "_").replace("-", "_"))
    if alias is not None:
        return LINES[alias]
    raise HashwfaError(
        f"unknown spectral line {line!r}; known lines: {', '.join(sorted(LINES))} "
        f"(aliases such as 'MgI_5173', 'CaII_8542', 'NaI_D1'), or define one with "
        "center, j1, j2, g1, g2"
    )


#: Wavelength units understood in BUNIT (lower case) -> factor to Angstrom.
WAVELENGTH_UNITS: Dict[str, float] = {
    "": 1.0, "angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "aa": 1.0, "0.1 nm": 1.0,
    "nm": 10.0, "nanometer": 10.0, "ma": 1e-3, "mangstrom": 1e-3, "milliangstrom": 1e-3,
}
