"""The spatially regularised weak-field inversion (a classic baseline).

The pixel-wise WFA (:mod:`hashwfa.wfa.baselines.pixelwise`) fits one unknown per pixel
and quantity. Following the idea of Morosin et al. (2020, A&A 642, A210), the
regularised WFA adds a smoothness penalty between neighbouring pixels and
solves one sparse linear system per quantity. For a quantity ``x`` (B_los
from V; B_Q from Q and B_U from U, with the selected Q/U form) it minimises::

    sum_p sum_a (d_pa - c_pa x_p)^2  +  alpha * m * sum_{p~q} (x_p - x_q)^2

over all pixels, where ``c_pa`` are the WFA coefficients of
:func:`hashwfa.wfa.physics.weak_field.wfa_coefficients` at the active wavelengths a,
``p~q`` runs over the 4-neighbour pairs of the image grid, and ``m`` is the
median *data weight* ``w_p = sum_a c_pa^2`` over the valid pixels with
``w_p > 0``. Its normal equations are::

    (diag(w) + alpha m L) x = b,        b_p = sum_a d_pa c_pa

with ``L`` the graph Laplacian of the 4-neighbour grid (degree minus
adjacency). ``alpha`` is therefore dimensionless and relative: at
``alpha = 1`` one neighbour difference costs as much as a typical pixel's
data misfit per unit of the field, and the same ``alpha`` means the same
smoothing on any line, intensity unit or per-Stokes loss weight. B_Q and B_U
share one ``alpha`` (and one matrix); B_los has its own.

``alpha -> 0`` gives the pixel-wise WFA ``x_p = b_p / w_p`` wherever
``w_p > 0``; ``alpha -> infinity`` gives one constant, the data-weighted mean
``sum b / sum w``.

**Invalid pixels** (masked or non-finite, see
:class:`hashwfa.wfa.observation.observation.Observation`) and valid pixels with
``w_p = 0`` (flat intensity) get no data term: the smoothness fills them by
harmonic interpolation of their neighbours. Like the pixel-wise WFA, invalid
pixels are NaN in the returned maps unless ``fill_invalid=True`` asks for the
filled values; valid pixels with ``w_p = 0`` keep their filled value (the
pixel-wise WFA gives 0 there).

**Choosing alpha without the truth** (``rule``), separately for V and for
Q/U. Because the pixel-wise estimate ``xhat_p = b_p / w_p`` is the per-pixel
least-squares solution, the data residual splits exactly::

    RSS(alpha) = RSS(0) + sum_p w_p (x_p - xhat_p)^2

- ``"discrepancy"`` (Morozov's discrepancy principle): the ``alpha`` at which
  the regularised map departs from the pixel-wise one by what the noise
  explains, ``sum_p w_p |x_p - xhat_p|^2 = k P sigma^2`` (P valid pixels with
  data weight, k = 1 for V and 2 for Q/U; ``xhat_p`` has variance
  ``sigma^2 / w_p``). It uses the increase of the residual over RSS(0), not
  the residual itself, so the model error in RSS(0) (the data are not exactly
  the WFA) does not push alpha up. ``sigma`` is the noise of the Stokes
  parameter in intensity units (V; Q and U pooled), the root mean square
  over the active wavelengths: given (``noise``), or estimated from the data
  by :func:`hashwfa.wfa.observation.noise.estimate_noise`.
- ``"misfit"`` (the discrepancy principle with the model error counted):
  the residual may grow by the noise's share or by a fraction ``f =``
  :data:`MISFIT_FRACTION` of the pixel-wise fit's own residual, whichever
  is larger: ``sum_p w_p |x_p - xhat_p|^2 = max(k P sigma^2, f RSS(0))``.
  RSS(0) holds the noise and the WFA's model error together; where the
  model error dominates it (good derivatives, many wavelengths, strong
  lines) the discrepancy principle reads the model error as signal and
  hardly smooths, this rule smooths as far as the model error allows. Where
  the noise dominates, RSS(0) is about ``(N - k P) sigma^2`` and the rule is
  the discrepancy principle.
- ``"gcv"`` (generalised cross-validation, Golub, Heath & Wahba 1979): the
  ``alpha`` minimising ``N RSS(alpha) / (N - k tr(K^-1 diag(w)))^2`` (N data
  values, ``K`` the system matrix), with the trace estimated by Hutchinson's
  method (Rademacher probes with a fixed seed). It needs no sigma.

The default rules, :data:`DEFAULT_RULE` = ``("misfit", "discrepancy")``
(V, Q/U), measured best against the truth on the built-in synthetic plage and
a Milne-Eddington Fe I 6173 case, with every wavelength and the spline
derivative, and were confirmed on a Milne-Eddington Fe I 6302 case
(BENCHMARKS.md, "Derivatives of I and the WFA's model error"); with the
seed's three wavelengths the misfit rule is the discrepancy principle, the
earlier default ("Regularised WFA baseline").

**Solvers** (``method``): ``"direct"`` factorises the sparse matrix
(:func:`scipy.sparse.linalg.splu`; fill-in grows slightly faster than the
number of pixels), ``"cg"`` runs conjugate gradients with a Jacobi
preconditioner (memory linear in the number of pixels, a few vectors), and
``"auto"`` takes the direct solver up to :data:`DIRECT_MAX_PIXELS` pixels per
frame and CG above. Everything is float64 numpy/scipy on the CPU.

**Series** are smoothed in space, frame by frame, with one ``alpha`` for the
whole series (chosen by the rule over all frames): the system is
block-diagonal and each frame's block is solved on its own, one at a time.
The per-pixel sums ``w_p``, ``b_p`` are made from one frame's spectra at a
time (:meth:`~hashwfa.wfa.observation.observation.Observation.wfa_input_chunks`), so a
lazily read series is never held whole; what is held is a few float64
numbers per pixel (``w``, ``b``, the pixel-wise and regularised solutions)
and one frame's matrix and factors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.optimize import brentq, minimize_scalar

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.physics.lines import SpectralLine
from hashwfa.wfa.observation.noise import StokesNoise, estimate_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM, wfa_coefficients

#: Rules that choose alpha without the truth.
RULES = ("discrepancy", "gcv", "misfit")
#: The default rules, for V and for Q/U (see the module docstring).
DEFAULT_RULE = ("misfit", "discrepancy")
#: Solvers of the sparse system.
METHODS = ("auto", "direct", "cg")
#: Largest frame (pixels) that ``method="auto"`` solves with the direct factorisation.
DIRECT_MAX_PIXELS = 300_000
#: Range of log10(alpha) the rules search.
LOG10_ALPHA_RANGE = (-4.0, 4.0)
#: Relative residual at which CG stops.
CG_TOLERANCE = 1e-8
#: Hutchinson probes for the GCV trace.
GCV_PROBES = 16
#: Rule ``"misfit"``: the residual may grow by this fraction of the pixel-wise fit's own residual
#: (or by the noise's k P sigma^2, whichever is larger).
MISFIT_FRACTION = 0.05
#: The rules that need the noise sigma.
NOISE_RULES = ("discrepancy", "misfit")

AlphaLike = Union[None, float, Sequence[float]]


@dataclass
class RegularizedResult:
    """The regularised WFA's maps and how they were made.

    Attributes:
        maps: :class:`FieldMaps` ``(ny, nx)``, float64 (B_los [G], B_Q and B_U
            [G^2], B_t [G], azimuth [rad]); NaN at the invalid pixels unless
            they were filled.
        alpha_v: relative smoothness weight used for B_los (dimensionless).
        alpha_qu: the one used for B_Q and B_U.
        rule_v, rule_qu: how each was chosen: ``"discrepancy"``, ``"gcv"``
            or ``"given"``.
        noise_v, noise_qu: sigma of V and of Q/U [the cube's intensity unit] that the
            discrepancy rule used (None when it was not used).
        noise_estimated: True when those sigmas were estimated from the data
            (here, or in the :class:`~hashwfa.wfa.observation.noise.StokesNoise` given).
        method: the solver used, ``"direct"`` or ``"cg"``.
        solves: number of sparse solves (matrix factorisations or CG runs)
            made, including the search for alpha.
        details: other numbers of the rules: ``gcv_v``, ``gcv_qu``, the
            minimum of the GCV function (in the normalised units of the
            solve, comparable only between weights of one quantity).
    """

    maps: FieldMaps
    alpha_v: float
    alpha_qu: float
    rule_v: str
    rule_qu: str
    method: str
    noise_v: Optional[float] = None
    noise_qu: Optional[float] = None
    noise_estimated: bool = False
    solves: int = 0
    details: Dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------- linear algebra
def grid_laplacian(ny: int, nx: int) -> sp.csr_matrix:
    """Graph Laplacian ``L = D - W`` of the 4-neighbour grid of ``ny x nx`` pixels.

    Pixels are numbered row-major (y, x). ``x^T L x`` is the sum of squared
    differences over horizontally and vertically adjacent pairs.

    Returns:
        ``(ny*nx, ny*nx)`` float64 CSR matrix.
    """
    index = np.arange(ny * nx).reshape(ny, nx)
    pairs = [(index[:, :-1].ravel(), index[:, 1:].ravel()), (index[:-1, :].ravel(), index[1:, :].ravel())]
    i = np.concatenate([p[0] for p in pairs])
    j = np.concatenate([p[1] for p in pairs])
    n = ny * nx
    adjacency = sp.coo_matrix((np.ones(2 * i.size), (np.concatenate([i, j]), np.concatenate([j, i]))),
                              shape=(n, n)).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sp.diags(degree) - adjacency).tocsr()


def _jacobi_cg(matrix: sp.csr_matrix, rhs: np.ndarray, x0: Optional[np.ndarray] = None) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients for an SPD ``matrix`` and ``(n, k)`` right-hand sides.

    All k columns iterate together (one sparse product per iteration); each
    stops changing once its relative residual is below :data:`CG_TOLERANCE`.
    """
    inv_diag = 1.0 / matrix.diagonal()
    x = np.zeros_like(rhs) if x0 is None else x0.copy()
    r = rhs - matrix @ x
    z = inv_diag[:, None] * r
    p = z.copy()
    rz = np.sum(r * z, axis=0)
    target = CG_TOLERANCE * np.maximum(np.linalg.norm(rhs, axis=0), np.finfo(float).tiny)
    for _ in range(20 * rhs.shape[0] + 100):
        active = np.linalg.norm(r, axis=0) > target
        if not active.any():
            break
        ap = matrix @ p
        step = np.where(active, rz / np.where(active, np.sum(p * ap, axis=0), 1.0), 0.0)
        x += step * p
        r -= step * ap
        z = inv_diag[:, None] * r
        rz_new = np.sum(r * z, axis=0)
        p = z + np.where(active, rz_new / np.where(rz == 0, 1.0, rz), 0.0) * p
        rz = rz_new
    return x


class RegularizedSystem:
    """The normal equations ``(diag(w) + alpha L) x = b`` of one quantity on an image or a series.

    A series of F frames is smoothed in space only, so its system is
    block-diagonal, one block per frame: each frame's block is factorised
    (or solved by CG) on its own, one at a time, and only one block's
    matrix and factors exist at once.

    Args:
        weight: ``(n,)`` data weights ``w_p >= 0`` (0 = no data), already
            divided by the reference weight ``m`` so that ``alpha`` is relative;
            ``n = F x ny x nx``, frames one after the other.
        rhs: ``(n, k)`` right-hand sides ``b_p / m`` (k quantities sharing ``w``).
        laplacian: the ``(ny nx, ny nx)`` Laplacian of one frame's grid (:func:`grid_laplacian`).
        method: ``"direct"`` or ``"cg"``.
    """

    def __init__(self, weight: np.ndarray, rhs: np.ndarray, laplacian: sp.csr_matrix, method: str) -> None:
        self.weight = weight
        self.rhs = rhs
        self.laplacian = laplacian
        self.method = method
        self.block = laplacian.shape[0]
        self.frames = weight.size // self.block
        self.solves = 0
        self._last: Optional[np.ndarray] = None

    def solve_many(self, alpha: float, ys: Sequence[np.ndarray], x0: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """Solve ``(diag(w) + alpha L) x = y`` for each ``(n, k)`` array of ``ys``, frame by frame.

        ``x0``: CG's starting point for the first of ``ys`` (ignored by the direct solver).
        """
        outs = [np.empty_like(y) for y in ys]
        self.solves += 1
        for f in range(self.frames):
            rows = slice(f * self.block, (f + 1) * self.block)
            matrix = sp.diags(self.weight[rows]) + alpha * self.laplacian
            if self.method == "direct":
                # Minimum-degree ordering on A^T + A: half the fill-in of the default COLAMD on a grid.
                lu = spla.splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A")
                for y, out in zip(ys, outs):
                    out[rows] = lu.solve(np.ascontiguousarray(y[rows]))
            else:
                csr = matrix.tocsr()
                for j, (y, out) in enumerate(zip(ys, outs)):
                    out[rows] = _jacobi_cg(csr, y[rows], x0[rows] if x0 is not None and j == 0 else None)
        return outs

    def solver(self, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
        """A function solving ``(diag(w) + alpha L) x = y`` for ``(n, k)`` arrays ``y`` (one solve per call)."""
        return lambda y: self.solve_many(alpha, [y])[0]

    def solve(self, alpha: float) -> np.ndarray:
        """``(n, k)`` solution at the relative weight ``alpha > 0``."""
        # CG starts from the previous alpha's solution: the rules' searches move alpha gradually.
        # (Kept for CG only: the direct solver does not use it, and it is a whole (n, k) array.)
        x = self.solve_many(alpha, [self.rhs], self._last if self.method == "cg" else None)[0]
        self._last = x if self.method == "cg" else None
        return x


# ---------------------------------------------------------------------- rules
def _check_positive(value: float, what: str, meaning: str) -> float:
    """``value`` as a float, or our error when it is not finite and > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise HashwfaError(f"regularized WFA: {what} = {value!r}; expected a finite number > 0 "
                           f"({meaning})")
    return value


def _discrepancy_alpha(system: RegularizedSystem, xhat: np.ndarray, has_data: np.ndarray, sigma2: float) -> float:
    """alpha with ``sum_p w_p |x_p - xhat_p|^2 = k P sigma^2`` (in the normalised weights)."""
    w = system.weight[has_data][:, None]
    xhat_data = xhat[has_data]
    target = xhat.shape[1] * np.count_nonzero(has_data) * sigma2

    def excess(log_alpha: float) -> float:
        # w (x - xhat)^2 in place in one (m, k) array: the same numbers, summed in the
        # same order, as the plain expression, with one temporary instead of five.
        d = system.solve(10.0 ** log_alpha)[has_data]
        d -= xhat_data
        np.square(d, out=d)
        d *= w
        return float(np.sum(d)) / target - 1.0

    # The excess grows with alpha: bracket the root one decade at a time from alpha = 1
    # (few solves, and no solve at an extreme alpha, where CG is slow), then refine.
    lo, hi = LOG10_ALPHA_RANGE
    a, f_a = 0.0, excess(0.0)
    step = 1.0 if f_a < 0 else -1.0
    while lo <= a + step <= hi:
        b, f_b = a + step, excess(a + step)
        if (f_b >= 0) != (f_a >= 0):
            left, right = (a, b) if a < b else (b, a)
            return 10.0 ** brentq(excess, left, right, xtol=0.01)
        a, f_a = b, f_b
    return 10.0 ** a  # no root inside the range: its end


def _gcv_alpha(system: RegularizedSystem, xhat: np.ndarray, has_data: np.ndarray, rss0: float,
               n_data: int) -> Tuple[float, float]:
    """alpha minimising the GCV function; returns ``(alpha, gcv value)``."""
    k = xhat.shape[1]
    w = system.weight
    rng = np.random.default_rng(0)
    probes = np.sqrt(w)[:, None] * rng.choice([-1.0, 1.0], size=(w.size, GCV_PROBES))

    def gcv(log_alpha: float) -> float:
        alpha = 10.0 ** log_alpha
        x, solved_probes = system.solve_many(alpha, [system.rhs, probes])
        trace = float(np.mean(np.sum(probes * solved_probes, axis=0)))
        # The normalised weights scale RSS by 1/m; GCV's minimiser does not depend on it.
        rss = rss0 + float(np.sum(w[has_data, None] * (x[has_data] - xhat[has_data]) ** 2))
        return n_data * rss / (n_data - k * trace) ** 2

    lo, hi = LOG10_ALPHA_RANGE
    grid = np.arange(lo, hi + 1e-9, 0.5)
    values = [gcv(g) for g in grid]
    best = int(np.argmin(values))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    res = minimize_scalar(gcv, bounds=(a, b), method="bounded", options={"xatol": 0.02})
    if res.fun < values[best]:
        return 10.0 ** float(res.x), float(res.fun)
    return 10.0 ** float(grid[best]), float(values[best])


# ---------------------------------------------------------------------- public API
def _data_sums(observation: Observation, line: Union[None, str, SpectralLine], core_cutoff: float, qu_form: str,
               gcv: Sequence[bool]) -> Dict[str, Tuple[np.ndarray, np.ndarray, list]]:
    """Per valid pixel, the data weight ``w_p = sum_a c_pa^2`` and ``b_p = sum_a d_pa c_pa``, for V and Q/U.

    Made frame by frame (:meth:`Observation.wfa_input_chunks`), so a lazy
    series holds one frame's spectra at a time. Returns ``{"v": (w (P,),
    b (P, 1), squares), "qu": (w, b (P, 2), squares)}``; ``squares`` (only
    where ``gcv`` asks, V then Q/U) are the ``(P, A)`` squared residuals of
    the pixel-wise fit per Stokes parameter (for GCV's RSS(0)), else empty.
    """
    n, n_active = observation.n_valid, len(observation.active_indices)
    out: Dict[str, Tuple[np.ndarray, np.ndarray, list]] = {}
    for name, k, want in (("v", 1, gcv[0]), ("qu", 2, gcv[1])):
        out[name] = (np.empty(n), np.empty((n, k)), [np.empty((n, n_active)) for _ in range(k)] if want else [])
    done = 0
    for inputs in observation.wfa_input_chunks():
        coef_v, coef_qu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, line, core_cutoff,
                                           qu_form=qu_form, d2I_dlambda2=inputs.d2I_dlambda2)
        part = slice(done, done + inputs.index.shape[0])
        done = part.stop
        for name, coef, data in (("v", coef_v, (inputs.v,)), ("qu", coef_qu, (inputs.q, inputs.u))):
            w, b, squares = out[name]
            w[part] = np.sum(coef * coef, axis=-1)
            for j, d in enumerate(data):
                b[part, j] = np.sum(d * coef, axis=-1)
                if squares:
                    fit = b[part, j] / np.where(w[part] > 0, w[part], 1.0)
                    squares[j][part] = (d - coef * fit[:, None]) ** 2
    return out


def _active_sigmas(noise: StokesNoise, observation: Observation) -> Tuple[float, float]:
    """``(sigma_v, sigma_qu)``: root mean square of the noise of V, and of Q and U, over the active wavelengths."""
    sigma = noise.at(observation.active_indices)  # (4, A): I, Q, U, V
    return float(np.sqrt(np.mean(sigma[3] ** 2))), float(np.sqrt(np.mean(sigma[1:3] ** 2)))


def _pair(value: Union[None, float, Sequence[Optional[float]]], what: str) -> Tuple[Optional[float], Optional[float]]:
    """One value for both V and Q/U, or a (V, Q/U) pair."""
    if value is None or np.ndim(value) == 0:
        return value, value  # type: ignore[return-value]
    values = list(value)  # type: ignore[arg-type]
    if len(values) != 2:
        raise HashwfaError(f"regularized WFA: {what} = {value!r}; give one number or a pair (V, Q/U)")
    return values[0], values[1]


def regularized_wfa(
    observation: Observation,
    alpha: AlphaLike = None,
    rule: Union[str, Sequence[str]] = DEFAULT_RULE,
    noise: Union[None, float, Sequence[Optional[float]], StokesNoise] = None,
    line: Union[None, str, SpectralLine] = None,
    core_cutoff: float = CORE_CUTOFF,
    qu_form: str = DEFAULT_QU_FORM,
    method: str = "auto",
    fill_invalid: bool = False,
) -> RegularizedResult:
    """Spatially regularised WFA inversion of an observation (see the module docstring).

    Args:
        observation: the :class:`Observation` (its active wavelengths and
            valid pixels are used).
        alpha: relative smoothness weight(s) > 0: one number for V and Q/U,
            a pair ``(alpha_v, alpha_qu)`` (an entry may be None), or None:
            chosen by ``rule``.
        rule: ``"discrepancy"``, ``"gcv"`` or ``"misfit"``, for the weights not
            given: one for V and Q/U, or a pair ``(rule_v, rule_qu)``.
        noise: the discrepancy rule's noise sigma in the observation's
            intensity unit: one number, a pair ``(sigma_v, sigma_qu)``, a
            :class:`~hashwfa.wfa.observation.noise.StokesNoise`, or None: estimated from
            the data (:func:`hashwfa.wfa.observation.noise.estimate_noise`, only when a
            weight is to be chosen by the discrepancy rule).
        line: override the observation's line (name or :class:`SpectralLine`).
        core_cutoff: Angstrom; the wing form's core cut-off.
        qu_form: ``"second_derivative"`` (default) or ``"wing"``; see
            :mod:`hashwfa.wfa.physics.weak_field`.
        method: ``"auto"``, ``"direct"`` or ``"cg"``.
        fill_invalid: keep the smoothness-filled values at invalid pixels
            instead of NaN.

    Returns:
        :class:`RegularizedResult` with float64 maps of the observation's map
        shape, ``(ny, nx)`` or ``(nt, ny, nx)`` (a series: each frame smoothed
        in space, one weight for the whole series).

    Raises:
        HashwfaError: unknown rule, method or Q/U form, a weight or noise
            that is not a positive finite number, or a noise estimate that
            cannot be made (see :func:`hashwfa.wfa.observation.noise.estimate_noise`).
    """
    rules = _pair(rule, "rule")
    for r in rules:
        if r not in RULES:
            raise HashwfaError(f"regularized WFA: rule = {r!r} unknown; use one of {', '.join(RULES)} "
                               "(or a pair (rule for V, rule for Q/U))")
    if method not in METHODS:
        raise HashwfaError(f"regularized WFA: method = {method!r} unknown; use one of {', '.join(METHODS)}")
    alphas = _pair(alpha, "alpha")
    alphas = tuple(None if a is None else
                   _check_positive(a, "alpha", "relative smoothness weight; None chooses it by the rule")
                   for a in alphas)
    # A StokesNoise carries how it was obtained: "given", or an estimate's method name.
    from_estimate = isinstance(noise, StokesNoise) and noise.method != "given"
    if isinstance(noise, StokesNoise):
        noise = _active_sigmas(noise, observation)
    noises = _pair(noise, "noise")
    noises = tuple(None if s is None else _check_positive(s, "noise", "sigma in intensity units; None estimates it")
                   for s in noises)
    # Estimate the noise only where the discrepancy rule needs a sigma nobody gave.
    missing = [r in NOISE_RULES and a is None and s is None for r, a, s in zip(rules, alphas, noises)]
    noise_estimated = any(missing) or (from_estimate and any(r in NOISE_RULES and a is None
                                                             for r, a in zip(rules, alphas)))
    if any(missing):
        estimated = _active_sigmas(estimate_noise(observation), observation)
        noises = tuple(e if m else s for e, m, s in zip(estimated, missing, noises))

    line = observation.line if line is None else line
    sums = _data_sums(observation, line, core_cutoff, qu_form,
                      gcv=[r in ("gcv", "misfit") and a is None for r, a in zip(rules, alphas)])
    index = observation.valid_index
    ny, nx = observation.ny, observation.nx
    n = observation.n_pixels
    if method == "auto":
        method = "direct" if ny * nx <= DIRECT_MAX_PIXELS else "cg"
    # A series is smoothed in space, frame by frame (no term along time yet), with one
    # weight for the whole series: a block-diagonal system, solved one frame at a time.
    laplacian = grid_laplacian(ny, nx)

    result_fields: Dict[str, np.ndarray] = {}
    chosen: Dict[str, Tuple[float, str, Optional[float]]] = {}
    details: Dict[str, float] = {}
    solves = 0
    for name, given_alpha, given_noise, rule in (("v", alphas[0], noises[0], rules[0]),
                                                  ("qu", alphas[1], noises[1], rules[1])):
        # Taken out of ``sums``: freed once the system is built (a series: 8 (1 + k) bytes per pixel).
        w_valid, b_valid, squares = sums.pop(name)
        positive = w_valid > 0
        scale = float(np.median(w_valid[positive])) if positive.any() else 1.0
        weight = np.zeros(n)
        weight[index] = w_valid / scale
        rhs = np.zeros((n, b_valid.shape[1]))
        for j in range(b_valid.shape[1]):
            rhs[index, j] = b_valid[:, j] / scale
        b_shape_k = b_valid.shape[1]
        del w_valid, b_valid
        has_data = weight > 0
        xhat = np.zeros_like(rhs)
        xhat[has_data] = rhs[has_data] / weight[has_data, None]
        system = RegularizedSystem(weight, rhs, laplacian, method)

        sigma = None
        if given_alpha is not None:
            alpha_used, how = given_alpha, "given"
        elif not has_data.any():
            alpha_used, how = 1.0, "given"  # no data at all: the map is 0 whatever the weight
        elif rule == "discrepancy":
            sigma = given_noise
            # sigma is in the cube's unit, the sums in the WFA inputs' (the cube / intensity_scale).
            sigma_fit = sigma / observation.intensity_scale
            alpha_used, how = _discrepancy_alpha(system, xhat, has_data, sigma_fit * sigma_fit / scale), rule
        elif rule == "misfit":
            sigma = given_noise
            sigma_fit = sigma / observation.intensity_scale
            rss0 = sum(float(np.sum(sq)) for sq in squares) / scale
            per_point = max(sigma_fit * sigma_fit / scale,
                            MISFIT_FRACTION * rss0 / (b_shape_k * np.count_nonzero(has_data)))
            alpha_used, how = _discrepancy_alpha(system, xhat, has_data, per_point), rule
            details[f"rss0_{name}"] = rss0 * scale
        else:
            rss0 = sum(float(np.sum(sq)) for sq in squares) / scale
            alpha_used, value = _gcv_alpha(system, xhat, has_data, rss0, len(squares) * squares[0].size)
            how = rule
            details[f"gcv_{name}"] = value
        # Without any data the system is singular (the Laplacian alone); the minimum-norm map is 0.
        x = system.solve(alpha_used) if has_data.any() else np.zeros_like(rhs)
        solves += system.solves
        chosen[name] = (alpha_used, how, sigma)
        for j, key in enumerate(("blos",) if name == "v" else ("bq", "bu")):
            out = x[:, j].copy()
            if not fill_invalid:
                out[~observation.valid] = np.nan
            result_fields[key] = out.reshape(observation.map_shape)
        # This quantity's whole-series arrays, freed now rather than when the next
        # quantity's replace them (they would be held through its weight search).
        del weight, rhs, has_data, xhat, system, x, out, positive

    return RegularizedResult(
        maps=FieldMaps.from_bqbu(**result_fields),
        alpha_v=chosen["v"][0], alpha_qu=chosen["qu"][0],
        rule_v=chosen["v"][1], rule_qu=chosen["qu"][1],
        method=method,
        noise_v=chosen["v"][2], noise_qu=chosen["qu"][2],
        noise_estimated=noise_estimated,
        solves=solves,
        details=details,
    )
