"""The registry of encoding versions: one declarative entry per version.

Every place that lists, describes or branches on versions derives from
:data:`REGISTRY`: the :class:`~hashwfa.encodings.hash_encoding.HashEncoding` it
builds (grid type, plane, smoother, mask), :data:`VERSIONS` and the messages,
the config's allowed ``encoding.version`` values and their documentation, the
benchmark's rows and the README's table of versions (a test checks that the
README holds :func:`markdown_table`). Adding a version is adding one
:class:`VersionSpec` here, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = [
    "VersionSpec",
    "REGISTRY",
    "VERSIONS",
    "VERSION_NUMBERS",
    "PROGRESSIVE_VERSIONS",
    "GRID_TYPES",
    "SMOOTHER_KINDS",
    "versions_text",
    "markdown_table",
]

#: tiny-cuda-nn grid types a version's main grid may be.
GRID_TYPES = ("HashGrid", "DenseGrid")
#: Smoothers a version may put on the grid levels (None: no smoother).
SMOOTHER_KINDS = ("shared", "per_level")


@dataclass(frozen=True)
class VersionSpec:
    """One encoding version.

    Attributes:
        number: the version, ``V<number>``.
        report_name: its name in the reference report (the benchmark's row name).
        grid: the main grid's tiny-cuda-nn type, one of :data:`GRID_TYPES`.
        smoother: ``None``, ``"shared"`` (one smoother for all levels) or
            ``"per_level"`` (one per level, one batched op).
        progressive: whether a coarse-to-fine level mask opens the levels
            over each phase.
        plane: whether a single-level DenseGrid plane at ``plane_resolution``
            (default ``max_resolution``) is appended (its features bypass the smoother and the mask).
        summary: one line on what is built, for messages and documentation.
    """

    number: int
    report_name: str
    grid: str
    smoother: Optional[str]
    progressive: bool
    plane: bool
    summary: str

    def __post_init__(self) -> None:
        # A malformed entry is a bug in this file, not a user error.
        assert self.grid in GRID_TYPES, self.grid
        assert self.smoother is None or self.smoother in SMOOTHER_KINDS, self.smoother

    @property
    def description(self) -> str:
        """``"<report name>: <summary>"``, the entry of :data:`VERSIONS`."""
        return f"{self.report_name}: {self.summary}"

    @property
    def grid_text(self) -> str:
        """The README's "grid" column."""
        text = f"`{self.grid}`"
        return f"{text} + a dense plane at `plane_resolution`" if self.plane else text

    @property
    def on_top_text(self) -> str:
        """The README's "on top of the grid output" column."""
        alone = not (self.progressive or self.plane)
        smoother = {
            None: "",
            "shared": "one smoother shared by all levels" if alone else "shared smoother",
            "per_level": "one smoother per level (one batched op)" if alone else "per-level smoothers",
        }[self.smoother]
        parts = [smoother] if smoother else []
        if self.progressive:
            parts.append("coarse-to-fine level mask")
        text = " + ".join(parts) or "nothing"
        return f"{text} on the grid levels" if self.plane and parts else text


REGISTRY: Dict[int, VersionSpec] = {
    spec.number: spec
    for spec in (
        VersionSpec(0, "Baseline Hash", "HashGrid", None, False, False, "tcnn HashGrid"),
        VersionSpec(1, "Dense Grids", "DenseGrid", None, False, False, "tcnn DenseGrid"),
        VersionSpec(2, "Shared Smooth", "HashGrid", "shared", False, False,
                    "HashGrid + one smoother shared by all levels"),
        VersionSpec(3, "Spec. Smooth", "HashGrid", "per_level", False, False, "HashGrid + one smoother per level"),
        VersionSpec(4, "Progressive (S)", "HashGrid", "shared", True, False,
                    "HashGrid + shared smoother + progressive level mask"),
        VersionSpec(5, "Progressive (P)", "HashGrid", "per_level", True, False,
                    "HashGrid + per-level smoothers + progressive level mask"),
        VersionSpec(6, "Hybrid Plane", "HashGrid", "shared", False, True,
                    "HashGrid + shared smoother, plus a DenseGrid plane at plane_resolution"),
    )
}

#: version -> ``"<report name>: <summary>"``.
VERSIONS: Dict[int, str] = {v: spec.description for v, spec in REGISTRY.items()}
#: The version numbers, ascending (the config's allowed ``encoding.version``).
VERSION_NUMBERS: Tuple[int, ...] = tuple(sorted(REGISTRY))
#: The versions with a progressive level mask.
PROGRESSIVE_VERSIONS: Tuple[int, ...] = tuple(v for v in VERSION_NUMBERS if REGISTRY[v].progressive)


def versions_text() -> str:
    """``"0 Baseline Hash (tcnn HashGrid); 1 ..."``: every version in one line, for messages and docs."""
    return "; ".join(f"{v} {REGISTRY[v].report_name} ({REGISTRY[v].summary})" for v in VERSION_NUMBERS)


def markdown_table() -> str:
    """The README's table of versions (``| V | grid | on top of the grid output | report name |``)."""
    rows = ["| V | grid | on top of the grid output | report name |", "|---|------|---------------------------|-----------|"]
    rows += [
        f"| {v} | {REGISTRY[v].grid_text} | {REGISTRY[v].on_top_text} | {REGISTRY[v].report_name} |"
        for v in VERSION_NUMBERS
    ]
    return "\n".join(rows)
