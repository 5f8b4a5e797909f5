"""The checks of what an :class:`~hashwfa.wfa.observation.observation.Observation` is built from: each
returns the value in the form the observation keeps, or raises :class:`HashwfaError` naming the
argument (and, where it has one, its config key) and the fix."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple

import numpy as np

from hashwfa.errors import HashwfaError

__all__ = ["STOKES_NAMES", "checked_cube_layout", "checked_times", "checked_wavelengths", "checked_active_indices", "checked_weights",
           "checked_mask", "as_float_tuple"]

STOKES_NAMES = ("I", "Q", "U", "V")


def checked_cube_layout(cube: np.ndarray, src: str) -> int:
    """The number of leading axes before ``(ny, nx, 4, nw)``: 0 for one frame, 1 for a series
    ``(nt, ny, nx, 4, nw)``; refuses any other layout with the transpose that fixes it."""
    if cube.ndim not in (4, 5):
        raise HashwfaError(
            f"{src}: Stokes cube has shape {cube.shape} ({cube.ndim} dimensions); expected 4 "
            "dimensions (ny, nx, 4, nw) with I, Q, U, V along axis 2, or 5 (nt, ny, nx, 4, nw) "
            "for a time series"
        )
    lead = cube.ndim - 4
    if cube.shape[lead + 2] != 4:
        hint = ""
        if cube.shape[lead] == 4:
            order = "(4, nw, ny, nx)" if lead == 0 else "(nt, 4, nw, ny, nx)"
            axes = "(2, 3, 0, 1)" if lead == 0 else "(0, 3, 4, 1, 2)"
            hint = f" (a {order} cube converts with np.transpose(cube, {axes}))"
        layout = "(ny, nx, 4, nw)" if lead == 0 else "(nt, ny, nx, 4, nw)"
        raise HashwfaError(
            f"{src}: Stokes cube has shape {cube.shape}; its Stokes axis (axis {lead + 2}) has length "
            f"{cube.shape[lead + 2]}, expected 4 (I, Q, U, V) in shape {layout}{hint}"
        )
    if not np.issubdtype(cube.dtype, np.number):
        raise HashwfaError(f"{src}: Stokes cube has dtype {cube.dtype}; expected a float array")
    return lead


def checked_times(times: Any, map_shape: Tuple[int, ...], lead: int, src: str) -> Optional[np.ndarray]:
    """``(nt,)`` float64 frame times [s] of a series, strictly increasing; None when not given."""
    if times is None:
        return None
    if lead == 0:
        raise HashwfaError(f"{src}: frame times given for a single frame; times are only for a "
                           "series (nt, ny, nx, 4, nw)")
    tt = np.asarray(times, dtype=np.float64).reshape(-1)
    if tt.shape != (map_shape[0],) or not np.all(np.isfinite(tt)) or not np.all(np.diff(tt) > 0):
        raise HashwfaError(
            f"{src}: frame times {np.asarray(times).tolist()!r}; expected {map_shape[0]} finite, "
            "strictly increasing values in seconds, one per frame"
        )
    return tt


def checked_wavelengths(wavelengths: Any, cube_shape: Tuple[int, ...], nw: int, src: str) -> np.ndarray:
    """``(nw,)`` float64 wavelengths, finite and strictly increasing, one per wavelength of the cube."""
    wl = np.asarray(wavelengths, dtype=np.float64) if np.ndim(wavelengths) else np.asarray([wavelengths], float)
    if wl.ndim != 1 or wl.shape[0] != nw:
        hint = ""
        if wl.ndim == 1 and cube_shape[0] == 4 and cube_shape[1] == wl.shape[0]:
            hint = (" (the cube looks like (4, nw, ny, nx); convert it with "
                    "np.transpose(cube, (2, 3, 0, 1)))")
        raise HashwfaError(
            f"{src}: wavelengths have shape {wl.shape} but the Stokes cube {cube_shape} has "
            f"nw = {nw} wavelengths (axis 3); expected wavelengths of shape ({nw},){hint}"
        )
    if nw < 2:
        raise HashwfaError(f"{src}: the cube has {nw} wavelength; dI/dlambda needs at least 2 (ideally 3+)")
    if not np.all(np.isfinite(wl)):
        raise HashwfaError(f"{src}: wavelengths contain NaN or infinite values; all {nw} must be finite")
    steps = np.diff(wl)
    if not np.all(steps > 0):
        k = int(np.argmax(steps <= 0))
        raise HashwfaError(
            f"{src}: wavelengths are not strictly increasing (index {k}: {wl[k]:.6g} then "
            f"{k + 1}: {wl[k + 1]:.6g}); sort the wavelengths and the cube's axis 3 together "
            "and drop duplicates"
        )
    return wl


def checked_active_indices(active_indices: Any, wavelengths: np.ndarray, src: str) -> Tuple[int, ...]:
    """The active wavelength indices, sorted, each once and within the cube's ``nw`` wavelengths;
    None: every wavelength."""
    nw = len(wavelengths)
    if active_indices is None:
        active_indices = range(nw)
    try:
        idx = [int(i) for i in active_indices]
        if any(int(i) != i for i in active_indices):
            raise ValueError
    except (TypeError, ValueError):
        raise HashwfaError(
            f"{src}: active_indices = {active_indices!r}; expected a list of integer wavelength indices"
        ) from None
    if not idx:
        raise HashwfaError(f"{src}: active_indices is empty; give at least one index in 0..{nw - 1}")
    bad = [i for i in idx if not 0 <= i < nw]
    if bad:
        centre = int(np.argmin(np.abs(wavelengths)))
        around = sorted({min(max(centre + k, 0), nw - 1) for k in (-1, 0, 1)})
        raise HashwfaError(
            f"{src}: active_indices {tuple(idx)} out of range: {bad} not in 0..{nw - 1} "
            f"for nw = {nw} wavelengths. Fix: use 0-based indices in 0..{nw - 1} (in a config: "
            f"data.active_indices), e.g. {around}, the wavelengths around the line centre"
        )
    if len(set(idx)) != len(idx):
        raise HashwfaError(f"{src}: active_indices {tuple(idx)} repeat an index; list each once")
    return tuple(sorted(idx))


def checked_weights(weights: Any, src: str) -> Tuple[float, float, float, float]:
    """The loss weights of I, Q, U, V: four finite non-negative numbers that give something to fit."""
    out = as_float_tuple(weights, 4, "weights", src)
    _check_weight_use(out, src)
    return out  # type: ignore[return-value]


def checked_mask(mask: Any, map_shape: Tuple[int, ...], src: str) -> np.ndarray:
    """The user's mask as bool ``map_shape`` (True = use); all True when None; a ``(ny, nx)`` mask
    applies to every frame of a series."""
    lead = len(map_shape) - 2
    ny, nx = map_shape[-2:]
    if mask is None:
        user_mask = np.ones(map_shape, dtype=bool)
    else:
        user_mask = np.asarray(mask)
        if user_mask.shape != map_shape and user_mask.shape != (ny, nx):
            also = f" or {map_shape}" if lead else ""
            raise HashwfaError(
                f"{src}: mask has shape {user_mask.shape}; expected ({ny}, {nx}){also} like the cube's "
                "leading axes (True = use the pixel)"
            )
        user_mask = np.broadcast_to(user_mask.astype(bool), map_shape)
    return user_mask


def _check_weight_use(weights: Tuple[float, ...], source: str) -> None:
    """Refuse weights that fit nothing; warn when one phase's map would be unconstrained."""
    _, w_q, w_u, w_v = weights
    if w_q == w_u == w_v == 0:
        raise HashwfaError(
            f"{source}: weights = {list(weights)} give Stokes Q, U and V no weight: nothing would be "
            "fitted and every map would be the untrained network's output. Fix: give V (B_los) and Q, U "
            "(B_t, azimuth) positive weights (in a config: data.weights, e.g. [1, 1, 1, 1])"
        )
    unconstrained = [m for m, off in (("B_los (weight of V is 0)", w_v == 0),
                                      ("B_Q, B_U (weights of Q and U are 0)", w_q == w_u == 0)) if off]
    if unconstrained:
        warnings.warn(f"{source}: weights = {list(weights)}: {unconstrained[0]}: not fitted, its map is the "
                      "untrained network's output", stacklevel=3)


def as_float_tuple(values: Any, n: int, what: str, source: str) -> Tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise HashwfaError(f"{source}: {what} must be {n} numbers, got {values!r}") from None
    if len(out) != n or not all(np.isfinite(v) and v >= 0 for v in out):
        raise HashwfaError(
            f"{source}: {what} = {values!r}; expected {n} finite non-negative numbers "
            f"(one per Stokes parameter {', '.join(STOKES_NAMES[:n])})"
        )
    return out
