"""Coordinate inputs of the grid encodings: the finiteness check and the opt-in static-coordinate cache.

A neural field of an image sees the *same* coordinate tensor at every
training step, and everything a grid derives from the coordinates alone (the
unit coordinates, the table rows and interpolation weights of every point)
could be computed once. Whether a tensor is "the same" cannot be decided
safely by the encoding: ``Tensor._version`` is not bumped by writes through
the numpy array behind ``torch.from_numpy`` or through ``x.data``, so a cache
keyed on identity and version would return the encoding of the old values.

So reuse is an explicit promise of the caller. Inside a
``with static_coordinates():`` block, an encoding that is called again with
the same tensor object (same ``_version``, not requiring a gradient) reuses
what it derived from it on the previous call; the caller promises that the
tensors it passes there are not modified in any way between calls. Outside
the block (the default) nothing is cached or reused, so every call computes
from the values it is given. The cached value outlives the block (the next
block reuses it); ``clear_cache()`` of the encoding frees it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Optional

import torch

from hashwfa.errors import HashwfaError

_STATIC = contextvars.ContextVar("hashwfa_static_coordinates", default=False)


@contextlib.contextmanager
def static_coordinates() -> Iterator[None]:
    """Let the grid encodings reuse what they derived from a coordinate tensor seen before.

    Use it around a training step whose coordinate tensor is created once and
    never written to (not in place, not through ``.data``, not through a
    numpy array sharing its memory)::

        with static_coordinates():
            loss = loss_fn(field(coords))

    Only the tensors passed inside the block are cached and only there is a
    cached value served. Results are identical to uncached calls bit for bit
    (the same lookup is computed, and the backward pass is the same); only
    the time differs.
    """
    token = _STATIC.set(True)
    try:
        yield
    finally:
        _STATIC.reset(token)


def coordinates_are_static() -> bool:
    """Whether the caller is inside :func:`static_coordinates`."""
    return _STATIC.get()


class CoordinateCache:
    """One value derived from one coordinate tensor, served only inside :func:`static_coordinates`.

    Keyed on the tensor object and its ``_version``; tensors that require a
    gradient are never cached (their derived values carry a graph). Pickling
    and deep copies carry an empty cache (the key is the caller's tensor).
    """

    def __init__(self) -> None:
        self._entry: Optional[tuple[torch.Tensor, int, Any]] = None

    def get(self, x: torch.Tensor) -> Optional[Any]:
        """The value cached for ``x``, or None (always None outside :func:`static_coordinates`)."""
        entry = self._entry
        if entry is None or x.requires_grad or not coordinates_are_static():
            return None
        if entry[0] is x and entry[1] == x._version:
            return entry[2]
        return None

    def put(self, x: torch.Tensor, value: Any) -> None:
        """Remember ``value`` for ``x`` (only inside :func:`static_coordinates`)."""
        if coordinates_are_static() and not x.requires_grad:
            self._entry = (x, x._version, value)

    def clear(self) -> None:
        """Forget the cached value (and the reference to the caller's tensor)."""
        self._entry = None

    @property
    def value(self) -> Optional[Any]:
        """The cached value, whatever its key (None when empty)."""
        return None if self._entry is None else self._entry[2]

    def __getstate__(self) -> dict:
        return {"_entry": None}

    def __deepcopy__(self, memo: dict) -> "CoordinateCache":
        return CoordinateCache()


def require_finite(x: torch.Tensor, what: str) -> None:
    """Raise :class:`HashwfaError` when ``x [N, D]`` holds a NaN or an infinity.

    Clamping would silently move an infinite coordinate onto the border and a
    NaN would reach the sparse lookup (NaN outputs, then a failing backward),
    so both are refused, naming the first offending row.
    """
    bad_rows = (~torch.isfinite(x)).any(dim=1)
    if bool(bad_rows.any()):
        first = int(bad_rows.nonzero()[0, 0])
        raise HashwfaError(
            f"{what} has {int(bad_rows.sum())} point(s) with NaN or infinite coordinates "
            f"(first: row {first}, {x[first].tolist()}); remove or replace them before encoding."
        )
