"""Weak-field-approximation physics: dI/dlambda, the forward model, field conversions.

Formulas (docs/ARCHITECTURE.md section 5; Landi Degl'Innocenti & Landolfi 2004, sec.
9.6), with ``C = -4.67e-13 lambda0^2`` [A/G] and wavelengths
``dl = lambda - lambda0`` [A] relative to the line centre::

    V = C geff B_los dI/dlambda
    Q = -0.25 C^2 Gg B_Q d^2I/dlambda^2                 (qu_form="second_derivative", default)
    U = -0.25 C^2 Gg B_U d^2I/dlambda^2
    Q = 0.75 C^2 Gg B_Q dI/dlambda / dl                 (qu_form="wing", the reference report's formula;
    U = 0.75 C^2 Gg B_U dI/dlambda / dl                  1/dl := 0 where |dl| <= 0.035 A)
    B_Q = B_t^2 cos 2phi,  B_U = B_t^2 sin 2phi

**Which Q/U form.** The second-derivative form is the textbook weak-field
expression for the transverse Zeeman effect and holds at every wavelength.
The wing form follows from it only in the far wings, where
``d^2I/dlambda^2 ~ -3 (dI/dlambda) / dl`` (true of a Lorentzian-like wing,
not of a Doppler core). The reference protocol applies it at the active
wavelengths -0.04, 0, +0.04 A of the CRISP Mg I b2 grid; a line whose core
the 0.04 A grid resolves (1/e half-width ~0.14 A) has its inflection points
at ~+-0.1 A, so at +-0.04 A ``d^2I/dlambda^2 > 0`` while ``dI/dlambda / dl < 0``:
the wing form has the *opposite sign* of the Zeeman Q and U there (and its
core cut-off discards the 0 A point, where Q and U are largest): on the
Zeeman synthetic plage its azimuths come out 90 deg off the truth (measured
in BENCHMARKS.md, "The synthetic plage and the pixel-wise WFA"). Hence ``"second_derivative"``
is the default everywhere (:class:`hashwfa.training.loss.WFALoss`,
:func:`hashwfa.wfa.baselines.pixelwise.pixel_wfa`, :func:`forward_stokes`,
:func:`wfa_coefficients`, the synthetic ``"wfa"`` model); ``qu_form="wing"``
(with its 0.035 A core cut-off, :data:`CORE_CUTOFF`) reproduces the reference report's
formula, e.g. for comparison with the reference report's numbers or for lines sampled only
in their far wings.

``d^2I/dlambda^2`` is the second derivative of the parabola through three
neighbouring wavelengths (exact for a quadratic; first-order accurate on an
unequal grid, second-order on an equal one, see
:func:`intensity_second_derivative`).

**Which derivative.** dI/dlambda and d^2I/dlambda^2 at the active
wavelengths come from one of :data:`DERIVATIVES` (config key
``physics.derivative``): ``"three_point"`` (the default; the parabola through
each active wavelength and its two neighbours, :func:`intensity_derivative`,
:func:`intensity_second_derivative`) or ``"spline"`` (the not-a-knot cubic
spline through I at *all* observed wavelengths, differentiated at the active
ones). On a grid coarse against the line width the three-point slope is
biased (10-20 % on B_los for a Doppler core sampled at about its width); the
spline removes most of that bias and is exact for any cubic. For a fixed
wavelength grid either is a linear map of I, so it is built once as the
matrices ``D1``, ``D2`` ``(A, nw)`` (:func:`derivative_operators`) that the
noise propagation uses; :func:`derivatives_at` applies it to spectra.

Stokes parameters are in the units of the intensity (usually the continuum
intensity), fields in gauss (B_los, B_t) and gauss^2 (B_Q, B_U), azimuth phi
in radians in [0, pi). The forward model is linear in B_los and in (B_Q, B_U):
:func:`wfa_coefficients` returns the two per-wavelength factors so that the
loss and the pixel-wise inversion can precompute them once.

Everything here is plain array arithmetic: the functions take numpy arrays,
and the forward model and the conversions also take torch tensors.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import SpectralLine, get_line

#: Half-width [A] of the line core where the Q/U factor 1/(lambda - lambda0) is set to 0.
CORE_CUTOFF = 0.035

#: Forms of the Q/U model: the second-derivative form (the textbook WFA, the default)
#: and the reference report's far-wing form (see the module docstring).
QU_FORMS = ("second_derivative", "wing")
#: The default Q/U form everywhere in the package.
DEFAULT_QU_FORM = "second_derivative"

#: How dI/dlambda and d^2I/dlambda^2 are estimated from the sampled I (see the module docstring).
DERIVATIVES = ("three_point", "spline")
#: The default derivative everywhere in the package.
DEFAULT_DERIVATIVE = "three_point"


def _is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch ourselves)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _wavelength_axis(
    intensity: np.ndarray, wavelengths: np.ndarray, axis: int, caller: str, min_points: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Checked inputs of a finite-difference derivative along the wavelength axis.

    Returns ``(data, h)``: the intensity as float64 with the wavelength axis
    last, and the ``(nw - 1,)`` wavelength steps [A].

    Raises:
        HashwfaError: mismatched lengths, fewer than ``min_points`` wavelengths,
            or wavelengths not strictly increasing (named after ``caller``).
    """
    wl = np.asarray(wavelengths, dtype=np.float64)
    data = np.moveaxis(np.asarray(intensity, dtype=np.float64), axis, -1)
    nw = data.shape[-1]
    if wl.ndim != 1 or wl.shape[0] != nw:
        raise HashwfaError(
            f"{caller}: wavelengths have shape {wl.shape}, expected ({nw},) to match "
            f"the wavelength axis of the intensity {np.shape(intensity)}"
        )
    if nw < min_points:
        raise HashwfaError(f"{caller}: need at least {min_points} wavelengths for this derivative")
    h = np.diff(wl)
    if not np.all(h > 0):
        raise HashwfaError(f"{caller}: wavelengths must be strictly increasing")
    return data, h


def intensity_derivative(intensity: np.ndarray, wavelengths: np.ndarray, axis: int = -1) -> np.ndarray:
    """dI/dlambda by the three-point formula for unequal wavelength spacing.

    At an interior wavelength ``i`` with spacings ``h0 = l[i] - l[i-1]`` and
    ``h1 = l[i+1] - l[i]`` the derivative is the spacing-weighted mean of the
    two one-sided slopes, ``(h1 * s_left + h0 * s_right) / (h0 + h1)``: the
    derivative at ``l[i]`` of the parabola through the three points, exact for
    any quadratic. At both ends it is the one-sided slope (as in the CRISP
    WFA codes the reference protocol comes from).

    Args:
        intensity: Stokes I, any shape with the wavelength axis ``axis`` of
            length ``nw >= 2`` (for an observation ``(..., nw)``).
        wavelengths: ``(nw,)`` strictly increasing, Angstrom (absolute or
            relative to line centre: only differences enter).
        axis: the wavelength axis of ``intensity``.

    Returns:
        float64 array of the shape of ``intensity``: dI/dlambda in intensity
        units per Angstrom.

    Raises:
        HashwfaError: when the wavelength axis lengths differ, ``nw < 2``, or
            the wavelengths are not strictly increasing.
    """
    data, h = _wavelength_axis(intensity, wavelengths, axis, "intensity_derivative", 2)
    nw = data.shape[-1]
    slope = np.diff(data, axis=-1) / h  # (..., nw-1): slope of segment k between l[k], l[k+1]
    out = np.empty_like(data)
    out[..., 0] = slope[..., 0]
    out[..., -1] = slope[..., -1]
    if nw > 2:
        h0, h1 = h[:-1], h[1:]
        out[..., 1:-1] = (h1 * slope[..., :-1] + h0 * slope[..., 1:]) / (h0 + h1)
    return np.moveaxis(out, -1, axis)


def intensity_second_derivative(intensity: np.ndarray, wavelengths: np.ndarray, axis: int = -1) -> np.ndarray:
    """d^2I/dlambda^2 by the three-point formula for unequal spacing.

    At an interior wavelength ``i`` (spacings ``h0``, ``h1`` as in
    :func:`intensity_derivative`) it is the second derivative of the parabola
    through the three points, ``2 (h0 I[i+1] - (h0 + h1) I[i] + h1 I[i-1]) /
    (h0 h1 (h0 + h1))``; each end takes the value of its interior neighbour.
    By Taylor expansion about ``l[i]`` its error is ``(h1 - h0)/3 I'''(l[i])
    + (h0^2 - h0 h1 + h1^2)/12 I''''`` (the fourth derivative somewhere in the
    stencil): first order on an unequal grid, second order on an equal one,
    exact for a quadratic.

    Args:
        intensity: any shape with the wavelength axis ``axis`` of length
            ``nw >= 3``.
        wavelengths: ``(nw,)`` strictly increasing, Angstrom.
        axis: the wavelength axis.

    Returns:
        float64 array of the shape of ``intensity`` in intensity units per A^2.

    Raises:
        HashwfaError: mismatched lengths, ``nw < 3``, or wavelengths not
            strictly increasing.
    """
    data, h = _wavelength_axis(intensity, wavelengths, axis, "intensity_second_derivative", 3)
    h0, h1 = h[:-1], h[1:]
    out = np.empty_like(data)
    out[..., 1:-1] = 2.0 * (h0 * data[..., 2:] - (h0 + h1) * data[..., 1:-1] + h1 * data[..., :-2]) / (
        h0 * h1 * (h0 + h1))
    out[..., 0] = out[..., 1]
    out[..., -1] = out[..., -2]
    return np.moveaxis(out, -1, axis)


def check_derivative(method: Any, source: str = "derivative") -> str:
    """``method`` when it is one of :data:`DERIVATIVES`.

    Raises:
        HashwfaError: naming ``source`` and the choices, for any other value.
    """
    if not isinstance(method, str) or method not in DERIVATIVES:
        raise HashwfaError(f"{source} = {method!r} unknown; use one of {', '.join(DERIVATIVES)} "
                           "(config key physics.derivative)")
    return method


def derivative_operators(
    wavelengths: np.ndarray,
    active_indices: Optional[Sequence[int]] = None,
    method: str = DEFAULT_DERIVATIVE,
    method_qu: Optional[str] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The derivatives as matrices: ``dI(active) = D1 @ I``, ``d2I(active) = D2 @ I``.

    Every method of :data:`DERIVATIVES` is linear in I for a fixed wavelength
    grid; the matrices are its response to each unit spectrum (the columns of
    the identity), so ``D1 @ I`` equals the method applied to I up to rounding.

    Args:
        wavelengths: ``(nw,)`` strictly increasing, Angstrom.
        active_indices: the ``A`` wavelength indices where the derivatives
            are wanted; None = all ``nw``.
        method: one of :data:`DERIVATIVES`, for D1 (dI/dlambda: V).
        method_qu: one of :data:`DERIVATIVES` for D2 (d^2I/dlambda^2: Q, U);
            None = ``method``.

    Returns:
        ``(D1, D2)``: float64 ``(A, nw)`` in 1/A and 1/A^2; ``D2`` is None
        when ``nw < 3`` (no second derivative).

    Raises:
        HashwfaError: unknown method, fewer than 2 wavelengths, or
            wavelengths not strictly increasing.
    """
    method = check_derivative(method)
    method_qu = method if method_qu is None else check_derivative(method_qu, "derivative_qu")
    wl = np.asarray(wavelengths, dtype=np.float64)
    nw = wl.shape[0] if wl.ndim == 1 else -1
    eye = np.eye(max(nw, 0))
    _wavelength_axis(eye, wl, -1, "derivative_operators", 2)
    act = list(range(nw)) if active_indices is None else [int(i) for i in active_indices]

    def operator(how: str, order: int) -> np.ndarray:
        if how == "three_point":
            # Row j of the result is the derivative of the unit spectrum e_j: its transpose is the operator.
            rows = intensity_derivative(eye, wl) if order == 1 else intensity_second_derivative(eye, wl)
            return np.ascontiguousarray(rows[:, act].T)
        from scipy.interpolate import CubicSpline

        spline = CubicSpline(wl, eye, axis=0, bc_type="not-a-knot")  # column j: the spline through e_j
        return np.ascontiguousarray(spline(wl[act], order))

    return operator(method, 1), operator(method_qu, 2) if nw >= 3 else None


def derivatives_at(
    intensity: np.ndarray,
    wavelengths: np.ndarray,
    active_indices: Optional[Sequence[int]] = None,
    method: str = DEFAULT_DERIVATIVE,
    operators: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None,
    second: bool = True,
    method_qu: Optional[str] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """dI/dlambda (by ``method``) and d^2I/dlambda^2 (by ``method_qu``) at the active wavelengths.

    ``"three_point"`` runs :func:`intensity_derivative` or
    :func:`intensity_second_derivative` (the numbers the package has always
    used, to the last bit); the spline applies its matrix from
    :func:`derivative_operators` with one product over the wavelength axis.

    Args:
        intensity: Stokes I ``(..., nw)`` (wavelengths last), finite.
        wavelengths: ``(nw,)`` strictly increasing, Angstrom.
        active_indices: the ``A`` indices wanted; None = all.
        method: one of :data:`DERIVATIVES`, for dI/dlambda.
        operators: ``derivative_operators(wavelengths, active_indices, method,
            method_qu)`` when the caller holds them (not rebuilt); the
            three-point derivatives do not use them.
        second: False: skip d^2I/dlambda^2 (returned as None).
        method_qu: one of :data:`DERIVATIVES`, for d^2I/dlambda^2; None = ``method``.

    Returns:
        ``(dI, d2I)`` float64 ``(..., A)`` in intensity/A and intensity/A^2;
        ``d2I`` is None when ``nw < 3`` or ``second`` is False.

    Raises:
        HashwfaError: what :func:`derivative_operators` raises.
    """
    method = check_derivative(method)
    method_qu = method if method_qu is None else check_derivative(method_qu, "derivative_qu")
    data = np.asarray(intensity, dtype=np.float64)
    nw = data.shape[-1]
    act = list(range(nw)) if active_indices is None else [int(i) for i in active_indices]
    second = second and nw >= 3
    if operators is None and (method != "three_point" or (second and method_qu != "three_point")):
        operators = derivative_operators(wavelengths, act, method, method_qu)
    # The matrices annihilate a constant only up to rounding; applied to I minus its mean
    # (the same numbers in exact arithmetic) a flat spectrum gives exactly 0, as the
    # three-point formula does, so "no WFA signal" stays recognisable.
    centred = None if method == "three_point" and (not second or method_qu == "three_point") else \
        data - np.mean(data, axis=-1, keepdims=True)
    if method == "three_point":
        d1 = intensity_derivative(data, wavelengths)[..., act]
    else:
        d1 = centred @ operators[0].T
    if not second:
        return d1, None
    if method_qu == "three_point":
        return d1, intensity_second_derivative(data, wavelengths)[..., act]
    return d1, centred @ operators[1].T


def inverse_offset(wavelengths: np.ndarray, core_cutoff: float = CORE_CUTOFF) -> np.ndarray:
    """``1 / (lambda - lambda0)`` in 1/Angstrom, set to 0 in the line core.

    Args:
        wavelengths: wavelengths relative to line centre in Angstrom, any shape.
        core_cutoff: half-width of the core in Angstrom; where
            ``|lambda - lambda0| <= core_cutoff`` the factor is 0 because the
            wing form of the Q/U weak-field formula does not hold there.

    Returns:
        float64 array of the shape of ``wavelengths``.
    """
    dl = np.asarray(wavelengths, dtype=np.float64)
    core = np.abs(dl) <= core_cutoff
    # Divide only outside the core so that dl = 0 never produces inf.
    return np.where(core, 0.0, 1.0 / np.where(core, 1.0, dl))


def _check_qu_form(qu_form: str, d2I: Any, needs_qu: bool = True) -> None:
    """Raise our error for an unknown form, or for the second-derivative form without
    d^2I/dlambda^2 when Q/U are asked for."""
    if qu_form not in QU_FORMS:
        raise HashwfaError(f"qu_form = {qu_form!r} unknown; use one of {', '.join(QU_FORMS)}")
    if needs_qu and qu_form == "second_derivative" and d2I is None:
        raise HashwfaError(
            "qu_form 'second_derivative' (the default) needs d2I_dlambda2 (from intensity_second_derivative, "
            "which needs >= 3 wavelengths); pass it, or qu_form='wing' for the reference report's far-wing formula"
        )


def wfa_coefficients(
    dI_dlambda: np.ndarray,
    wavelengths: np.ndarray,
    line: "SpectralLine | str",
    core_cutoff: float = CORE_CUTOFF,
    qu_form: str = DEFAULT_QU_FORM,
    d2I_dlambda2: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """The two factors of the (linear) WFA forward model.

    ``V = coef_v * B_los``, ``Q = coef_qu * B_Q``, ``U = coef_qu * B_U``.

    Args:
        dI_dlambda: ``(..., nw)`` dI/dlambda per Angstrom (from
            :func:`intensity_derivative`).
        wavelengths: ``(nw,)`` Angstrom relative to line centre.
        line: the :class:`SpectralLine` (or its name).
        core_cutoff: Angstrom, see :func:`inverse_offset` (wing form only).
        qu_form: ``"second_derivative"`` (default) or ``"wing"`` (the reference report's
            formula); see the module docstring.
        d2I_dlambda2: ``(..., nw)`` per A^2 (from
            :func:`intensity_second_derivative`), needed by ``"second_derivative"``.

    Returns:
        ``(coef_v, coef_qu)``, float64 arrays of the shape of ``dI_dlambda``:
        ``coef_v = C geff dI/dlambda`` (intensity per gauss) and ``coef_qu =
        -0.25 C^2 Gg d^2I/dlambda^2`` (intensity per gauss^2), or for the
        wing form ``0.75 C^2 Gg dI/dlambda / (lambda - lambda0)`` (0 in the core).

    Raises:
        HashwfaError: unknown ``qu_form``, or ``"second_derivative"`` without
            ``d2I_dlambda2``.
    """
    _check_qu_form(qu_form, d2I_dlambda2)
    line = get_line(line)
    dI = np.asarray(dI_dlambda, dtype=np.float64)
    coef_v = (line.C * line.geff) * dI
    if qu_form == "wing":
        coef_qu = (0.75 * line.C ** 2 * line.Gg) * dI * inverse_offset(wavelengths, core_cutoff)
    else:
        coef_qu = (-0.25 * line.C ** 2 * line.Gg) * np.asarray(d2I_dlambda2, dtype=np.float64)
    return coef_v, coef_qu


class StokesQUV(NamedTuple):
    """Model Stokes Q, U, V ``(..., nw)``; an entry is None when its field was not given."""

    q: Any
    u: Any
    v: Any


def forward_stokes(
    dI_dlambda: Any,
    wavelengths: np.ndarray,
    line: "SpectralLine | str",
    blos: Any = None,
    bq: Any = None,
    bu: Any = None,
    core_cutoff: float = CORE_CUTOFF,
    qu_form: str = DEFAULT_QU_FORM,
    d2I_dlambda2: Any = None,
) -> StokesQUV:
    """The WFA forward model: Stokes Q, U, V from dI/dlambda and the field.

    Args:
        dI_dlambda: ``(..., nw)`` numpy array or torch tensor, per Angstrom.
        wavelengths: ``(nw,)`` Angstrom relative to line centre.
        line: the :class:`SpectralLine` (or its name).
        blos: ``(...)`` line-of-sight field in gauss, or None.
        bq, bu: ``(...)`` B_Q and B_U in gauss^2, or None (both or neither).
        core_cutoff: Angstrom; with the wing form Q and U are 0 where
            ``|lambda - lambda0| <= core_cutoff``.
        qu_form: ``"second_derivative"`` (default) or ``"wing"`` (the reference report's
            formula); see the module docstring.
        d2I_dlambda2: ``(..., nw)`` per A^2 (numpy or torch like
            ``dI_dlambda``), needed by ``"second_derivative"`` when ``bq``,
            ``bu`` are given.

    Returns:
        :class:`StokesQUV` with ``(..., nw)`` arrays (torch tensors when
        ``dI_dlambda`` is one), None for the parameters whose field was not given.

    Raises:
        HashwfaError: unknown ``qu_form``, only one of ``bq``/``bu``, or the
            second-derivative form with ``bq`` but no ``d2I_dlambda2``.
    """
    if (bq is None) != (bu is None):
        raise HashwfaError("forward_stokes: give both bq and bu (gauss^2) or neither")
    _check_qu_form(qu_form, d2I_dlambda2, needs_qu=bq is not None)
    line = get_line(line)
    inv = inverse_offset(wavelengths, core_cutoff)
    if _is_torch(dI_dlambda):
        inv = sys.modules["torch"].as_tensor(inv, dtype=dI_dlambda.dtype, device=dI_dlambda.device)
    v = q = u = None
    if blos is not None:
        v = (line.C * line.geff) * dI_dlambda * blos[..., None]
    if bq is not None:
        if qu_form == "wing":
            base = (0.75 * line.C ** 2 * line.Gg) * dI_dlambda * inv
        else:
            base = (-0.25 * line.C ** 2 * line.Gg) * d2I_dlambda2
        q = base * bq[..., None]
        u = base * bu[..., None]
    return StokesQUV(q, u, v)


def bqbu_to_bt_azimuth(bq: Any, bu: Any) -> Tuple[Any, Any]:
    """Transverse field and azimuth from (B_Q, B_U).

    Args:
        bq, bu: B_Q = B_t^2 cos 2phi and B_U = B_t^2 sin 2phi in gauss^2
            (numpy arrays or torch tensors, same shape).

    Returns:
        ``(bt, azimuth)``: ``B_t = (B_Q^2 + B_U^2)^(1/4)`` in gauss and
        ``phi = atan2(B_U, B_Q) / 2`` in radians, folded into [0, pi) (the
        WFA cannot tell phi from phi + pi).
    """
    if _is_torch(bq):
        torch = sys.modules["torch"]
        bt = torch.sqrt(torch.hypot(bq, bu))
        phi = 0.5 * torch.atan2(bu, bq)
        phi = torch.where(phi < 0, phi + math.pi, phi)
        # phi + pi can round up to exactly pi for tiny negative phi: keep [0, pi).
        phi = torch.where(phi >= math.pi, phi - math.pi, phi)
        return bt, phi
    bq = np.asarray(bq, dtype=np.float64)
    bu = np.asarray(bu, dtype=np.float64)
    bt = np.sqrt(np.hypot(bq, bu))
    phi = 0.5 * np.arctan2(bu, bq)
    phi = np.where(phi < 0, phi + np.pi, phi)
    phi = np.where(phi >= np.pi, phi - np.pi, phi)
    return bt, phi


def bt_azimuth_to_bqbu(bt: Any, azimuth: Any) -> Tuple[Any, Any]:
    """(B_Q, B_U) from the transverse field and its azimuth.

    Args:
        bt: transverse field B_t in gauss (numpy array or torch tensor).
        azimuth: phi in radians (any value; only 2 phi enters).

    Returns:
        ``(bq, bu) = (B_t^2 cos 2phi, B_t^2 sin 2phi)`` in gauss^2.
    """
    if _is_torch(bt):
        torch = sys.modules["torch"]
        return bt * bt * torch.cos(2 * azimuth), bt * bt * torch.sin(2 * azimuth)
    bt = np.asarray(bt, dtype=np.float64)
    azimuth = np.asarray(azimuth, dtype=np.float64)
    return bt * bt * np.cos(2 * azimuth), bt * bt * np.sin(2 * azimuth)


def azimuth_difference(a: Any, b: Any) -> Any:
    """Smallest absolute difference of two azimuths modulo pi, in [0, pi/2] radians.

    Use it for azimuth errors: 0.01 and pi - 0.01 are 0.02 apart.
    """
    d = np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64), np.pi)
    return np.minimum(d, np.pi - d)
