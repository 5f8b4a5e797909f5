"""Sigma maps of a spatially coherent field (the neural field) from its local risk.

A neural field fitted through the WFA is a smoother of the data: its error
against the truth is partly noise that survives the smoothing and partly
bias (structure the field does not follow). An ensemble over noise redraws
measures only the first; on the synthetic plage the bias dominates B_los
(BENCHMARKS.md, "Uncertainties"). So the sigma here is the square root of
the field's local *risk*, its expected squared error, estimated without the
truth against the pixel-wise WFA ``w`` (unbiased where the WFA holds, with
known noise ``sigma_w`` from :mod:`hashwfa.wfa.uncertainty.pixelwise`)::

    E[(f - t)^2] = E[(f - w)^2] - sigma_w^2 + 2 cov(f, w)

(Stein's unbiased risk estimate, per pixel). ``cov(f, w)`` is the field's
response to the noise of its own pixel (the divergence of the smoother
times ``sigma_w^2``). One or more bootstrap members measure it: fields
trained the same way, with another seed, on the data plus a fresh draw of
the noise (:func:`redraw_noise`); with ``w_k`` the pixel-wise WFA of member
k's data, ``cov(f, w) ~ mean_k (f_k - f)(w_k - w)`` (the Monte-Carlo
divergence; the change the seed makes does not correlate with ``w_k - w``
and drops out). The per-pixel estimate is unbiased but very noisy, so it is
averaged over a Gaussian window ``G`` (a local risk: ``smoothing_px`` for
B_los, the wider ``smoothing_qu_px`` for B_Q, B_U, whose pixel-wise noise
is large against their risk) and floored at the members' smoothed spread
``var_f = mean_k (f_k - f)^2``::

    risk_X = max(G * [(f_X - w_X)^2 - sigma_w,X^2 + 2 cov_k(f_X, w_X)],  G * var_f,X),  X = B_los, B_Q, B_U

    sigma(B_los) = sqrt(risk_blos)
    sigma(B_t)   = min( sqrt(B_Q^2 risk_Q + B_U^2 risk_U) / (2 B_t^3),  (risk_QU)^(1/4) )
    sigma(phi)   = min( sqrt(B_U^2 risk_Q + B_Q^2 risk_U) / (2 P),  pi / sqrt(12) )

with ``P = B_Q^2 + B_U^2 = B_t^4`` and ``risk_QU = (risk_Q + risk_U) / 2``
of the field; the B_t cap is the size of a B_t made of noise alone
(where linear propagation through ``P^(1/4)`` fails), the azimuth cap the
spread of an azimuth without information.

For a time series every map is ``(nt, ny, nx)``: the risk of each point is
estimated against its own frame's pixel-wise WFA, the members are fits of
the whole redrawn series, and the window ``G`` also extends
``smoothing_frames`` frames (a Gaussian sigma, by frame index) along time:
the pixel-wise noise is independent between frames while the field's error
changes slowly, so this averages the estimate's noise without mixing in
unrelated errors.

What it does not cover: the WFA's own model error (the pixel-wise WFA is the
reference, so a field that agrees with a biased WFA looks right), the
180-degree ambiguity, and structure smaller than the window (a local risk
is a neighbourhood's root mean square, not each pixel's own error).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from hashwfa.host.atomic import temporary_path
from hashwfa.errors import HashwfaError, OutputWriteError
from hashwfa.host.memory import format_bytes
from hashwfa.wfa.physics.maps import AZIMUTH_SIGMA_CAP, FieldMaps, FieldSigmas
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas

__all__ = ["redraw_noise", "redraw_noise_on_disk", "member_data", "gaussian_smooth", "local_risk_sigmas", "field_sigmas", "FieldUncertainty",
           "DEFAULT_SMOOTHING_PX", "DEFAULT_SMOOTHING_QU_PX", "DEFAULT_SMOOTHING_FRAMES", "DEFAULT_MEMBERS"]

#: Gaussian sigma [px] of the window over which the B_los risk is averaged, and the same for
#: B_Q, B_U (chosen on exact-WFA synthetics of the plage and the Fe I 6302 case, V1 at
#: 200 x 178; checked blind on two more; BENCHMARKS.md "Uncertainties").
DEFAULT_SMOOTHING_PX = 3.0
DEFAULT_SMOOTHING_QU_PX = 6.0
#: Gaussian sigma [frames] of the risk windows along time for a series (BENCHMARKS.md section 6,
#: "Time series").
DEFAULT_SMOOTHING_FRAMES = 1.0
#: Bootstrap members trained by :func:`field_sigmas` (one: 2x the training time; BENCHMARKS.md).
DEFAULT_MEMBERS = 1


def redraw_noise(observation: Observation, noise: StokesNoise, rng: np.random.Generator) -> Observation:
    """The observation plus one fresh draw of Gaussian noise of ``noise.sigma`` (all four Stokes parameters).

    The data of a bootstrap member: a field trained on it differs from the
    field trained on the observation by the field's response to noise.
    Same wavelengths, line, active indices, weights, mask and unit.
    """
    sigma = np.asarray(noise.sigma, dtype=np.float64)
    if sigma.shape != (4, observation.nw):
        raise HashwfaError(f"noise sigma has shape {sigma.shape}; expected (4, {observation.nw})")
    # (4, nw) broadcasts over the leading (ny, nx) or (nt, ny, nx) axes.
    cube = observation.stokes + sigma * rng.standard_normal(observation.stokes.shape)
    return observation.with_stokes(cube, source=f"{observation.source} + noise redraw")


# ---- bootstrap members' data of a lazy (memory-mapped) series: the redraw on disk ----------------------

#: Name stem of the scratch file of :func:`redraw_noise_on_disk` (``.member-stokes.<pid>.<hex>.tmp``: the
#: pattern :func:`hashwfa.host.atomic.remove_stale_temporaries` removes when a killed run left one behind).
SCRATCH_NAME = "member-stokes"


@contextlib.contextmanager
def redraw_noise_on_disk(observation: Observation, noise: StokesNoise, rng: np.random.Generator,
                         scratch_dir: Union[str, Path]) -> Iterator[Observation]:
    """:func:`redraw_noise` of a lazy observation, its cube written frame by frame to a scratch file.

    A context manager: yields the member's data, an :class:`Observation`
    whose cube is a read-only float64 :class:`numpy.memmap` of the scratch
    file ``scratch_dir/.member-stokes.<pid>.<hex>.tmp`` (8 B x n_pixels x 4 x
    nw of disk), and removes the file on leaving, also on an error. Host
    memory is about one float64 frame. The values are those of
    :func:`redraw_noise` bit for bit: each frame is the frame in float64 plus
    ``sigma`` times the next ``ny * nx * 4 * nw`` numbers of ``rng``, and
    :meth:`numpy.random.Generator.standard_normal` drawn frame by frame in C
    order gives the same stream as one call over the whole shape.

    Raises:
        OutputWriteError: less free disk in ``scratch_dir`` than the cube
            needs (checked before writing), or the file cannot be written.
        HashwfaError: a noise sigma that is not ``(4, nw)``.
    """
    sigma = np.asarray(noise.sigma, dtype=np.float64)
    if sigma.shape != (4, observation.nw):
        raise HashwfaError(f"noise sigma has shape {sigma.shape}; expected (4, {observation.nw})")
    shape = observation.stokes.shape
    needed = 8 * int(np.prod(shape))
    scratch_dir = Path(scratch_dir)
    try:
        free = shutil.disk_usage(scratch_dir).free
    except OSError as exc:
        raise OutputWriteError(f"cannot use '{scratch_dir}' for the bootstrap member's redrawn cube: "
                               f"{exc.strerror or exc}") from exc
    if needed > free:
        raise OutputWriteError(
            f"the bootstrap member's redrawn cube {shape} needs {format_bytes(needed)} of scratch disk (float64) "
            f"in '{scratch_dir}', but only {format_bytes(free)} is free. Fix: free disk space there, or set "
            "output.sigmas = false")
    path = temporary_path(scratch_dir, SCRATCH_NAME)
    try:
        try:
            # Plain writes, not a writable mapping: a full disk is then an OSError here,
            # not a SIGBUS when the kernel writes a page of a mapped sparse file back.
            with open(path, "xb") as out:
                for _, view in observation.frame_views():
                    frame = rng.standard_normal(view.shape)
                    frame *= sigma  # (4, nw) broadcasts over (ny, nx)
                    frame += view   # the frame converted to float64, as redraw_noise adds it
                    out.write(memoryview(frame).cast("B"))
                    del frame
        except OSError as exc:
            raise OutputWriteError(f"cannot write the bootstrap member's redrawn cube to '{path}': "
                                   f"{exc.strerror or exc}") from exc
        cube = np.memmap(path, dtype=np.float64, mode="r", shape=shape)
        data = observation.with_stokes(cube, source=f"{observation.source} + noise redraw")
        try:
            yield data
        finally:
            data.release_spectra()  # lets the mapping go (the caller may keep the Observation)
            del cube
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def member_data(observation: Observation, noise: StokesNoise, rng: np.random.Generator,
                scratch_dir: Optional[Union[str, Path]] = None, always_on_disk: bool = False) -> Iterator[Observation]:
    """A bootstrap member's data (a context manager): :func:`redraw_noise_on_disk` for a lazy
    observation when ``scratch_dir`` is given (for any observation with ``always_on_disk``: a
    data-parallel member, whose other ranks map the file), else :func:`redraw_noise` (in memory)."""
    if scratch_dir is not None and (observation.is_lazy or always_on_disk):
        with redraw_noise_on_disk(observation, noise, rng, scratch_dir) as data:
            yield data
    else:
        yield redraw_noise(observation, noise, rng)

# ---- end of the bootstrap members' data -------------------------------------------------------------------


def _kernel(sigma_px: float) -> np.ndarray:
    radius = max(1, int(math.ceil(4.0 * sigma_px)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def _convolve_axis(img: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """1-D convolution along ``axis`` with zero padding (the weights are normalised by the caller)."""
    radius = kernel.size // 2
    moved = np.moveaxis(img, axis, -1)
    padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(radius, radius)])
    # Sum of shifted copies: 2r+1 vectorised array operations, not a pixel loop.
    out = np.zeros_like(moved)
    n = moved.shape[-1]
    for i, w in enumerate(kernel):
        out += w * padded[..., i:i + n]
    return np.moveaxis(out, -1, axis)


def gaussian_smooth(image: np.ndarray, sigma_px: float, sigma_frames: float = 0.0) -> np.ndarray:
    """Gaussian mean of a ``(ny, nx)`` map, or of a series ``(nt, ny, nx)``, over its finite pixels
    (normalised convolution).

    Non-finite pixels take no part and get the mean of their finite
    neighbours; near the borders the window is renormalised. ``sigma_px``
    [px] is the window along y and x (the last two axes); ``sigma_frames``
    [frames] along the time axis of a series (0: each frame on its own).
    Zero widths return a copy. A pixel with no finite neighbour within
    4 sigma is NaN.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise HashwfaError(f"gaussian_smooth takes a (ny, nx) map or an (nt, ny, nx) series, not shape {img.shape}")
    if sigma_frames < 0 or (sigma_frames > 0 and img.ndim != 3):
        raise HashwfaError(f"sigma_frames = {sigma_frames}: a window over frames needs an (nt, ny, nx) series "
                           "and a width >= 0")
    if sigma_px <= 0 and sigma_frames <= 0:
        return img.copy()
    finite = np.isfinite(img)
    num = np.where(finite, img, 0.0)
    den = finite.astype(np.float64)
    axes = [(sigma_px, -2), (sigma_px, -1), (sigma_frames, 0)]
    for width, axis in axes:
        if width > 0:
            k = _kernel(width)
            num, den = _convolve_axis(num, k, axis), _convolve_axis(den, k, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), np.nan)


def local_risk_sigmas(
    field: FieldMaps,
    pixelwise: FieldMaps,
    pixel_sigmas: FieldSigmas,
    members: Sequence[FieldMaps],
    member_pixelwise: Sequence[FieldMaps],
    smoothing_px: float = DEFAULT_SMOOTHING_PX,
    smoothing_qu_px: float = DEFAULT_SMOOTHING_QU_PX,
    smoothing_frames: float = 0.0,
) -> FieldSigmas:
    """One-sigma maps of ``field`` from its local risk against the pixel-wise WFA (module docstring).

    Args:
        field: the field's maps ``(ny, nx)``, or ``(nt, ny, nx)`` for a series
            (B_los [G], B_Q, B_U [G^2]...).
        pixelwise: the pixel-wise WFA of the same observation.
        pixel_sigmas: its sigmas (:func:`hashwfa.wfa.uncertainty.pixelwise.pixel_wfa_sigmas`).
        members: at least one bootstrap member: maps of a field trained the
            same way (another seed) on :func:`redraw_noise` data.
        member_pixelwise: the pixel-wise WFA of each member's data, same order.
        smoothing_px: Gaussian sigma [px] of the window of the B_los risk.
        smoothing_qu_px: the same for B_Q and B_U (their per-pixel estimate
            is noisier: the pixel-wise noise is large against the risk).
        smoothing_frames: for a series, the width [frames] of the windows
            along time (0: each frame's risk from that frame alone).

    Returns:
        :class:`FieldSigmas` of the maps' shape everywhere the window reaches a
        pixel where the pixel-wise WFA and its sigma are finite: ``blos``
        [G], ``bq``, ``bu`` [G^2], ``bt`` [G], ``azimuth`` [rad].

    Raises:
        HashwfaError: no member, unequal numbers of members and their
            pixel-wise maps, or maps of different shapes.
    """
    if len(members) < 1:
        raise HashwfaError("local_risk_sigmas needs at least one bootstrap member (a field trained on redrawn noise)")
    if len(member_pixelwise) != len(members):
        raise HashwfaError(f"{len(members)} members but {len(member_pixelwise)} pixel-wise maps of their data; "
                           "give one per member")
    shape = field.shape
    for m in (*members, *member_pixelwise, pixelwise):
        if m.shape != shape:
            raise HashwfaError(f"maps of shape {m.shape} and {shape} do not match")
    risk = {}
    for q in ("blos", "bq", "bu"):
        f, w, sw = getattr(field, q), getattr(pixelwise, q), getattr(pixel_sigmas, q)
        var_f = np.mean([(getattr(m, q) - f) ** 2 for m in members], axis=0)
        # Monte-Carlo divergence: the part of the member's change that follows the change of
        # its pixel's data (the reference report's part does not correlate with it and drops out).
        cov_fw = np.mean([(getattr(m, q) - f) * (getattr(mw, q) - w) for m, mw in zip(members, member_pixelwise)],
                         axis=0)
        with np.errstate(invalid="ignore"):
            raw = np.where(np.isfinite(w) & np.isfinite(sw), (f - w) ** 2 - sw ** 2 + 2.0 * cov_fw, np.nan)
        window = smoothing_px if q == "blos" else smoothing_qu_px
        risk[q] = np.fmax(gaussian_smooth(raw, window, smoothing_frames),
                          gaussian_smooth(var_f, window, smoothing_frames))
    bq, bu = field.bq, field.bu
    p = bq * bq + bu * bu
    risk_qu = 0.5 * (risk["bq"] + risk["bu"])
    with np.errstate(divide="ignore", invalid="ignore"):
        bt = p ** 0.25
        lin_bt = np.sqrt(bq * bq * risk["bq"] + bu * bu * risk["bu"]) / (2.0 * bt ** 3)
        lin_az = np.sqrt(bu * bu * risk["bq"] + bq * bq * risk["bu"]) / (2.0 * p)
    sig_bt = np.fmin(np.where(p > 0, lin_bt, np.inf), risk_qu ** 0.25)
    sig_az = np.where(np.isnan(risk_qu), np.nan, np.fmin(np.where(p > 0, lin_az, np.inf), AZIMUTH_SIGMA_CAP))
    return FieldSigmas(blos=np.sqrt(risk["blos"]), bq=np.sqrt(risk["bq"]), bu=np.sqrt(risk["bu"]),
                       bt=sig_bt, azimuth=sig_az)


class FieldUncertainty(NamedTuple):
    """What :func:`field_sigmas` returns (all maps ``(ny, nx)``, or ``(nt, ny, nx)`` for a series).

    Attributes:
        sigmas: the field's sigma maps (written as ``SIGMA_*``).
        wfa_sigmas: the pixel-wise WFA's propagated sigmas (``WFA_SIGMA_*``).
        noise: the noise both assume (header ``NOISE_*``).
        members: the bootstrap members' maps.
    """

    sigmas: FieldSigmas
    wfa_sigmas: FieldSigmas
    noise: StokesNoise
    members: Sequence[FieldMaps]


def field_sigmas(
    observation: Observation,
    field: FieldMaps,
    fit: Callable[[Observation, int], FieldMaps],
    noise: StokesNoise,
    members: int = DEFAULT_MEMBERS,
    seed: int = 0,
    smoothing_px: float = DEFAULT_SMOOTHING_PX,
    smoothing_qu_px: float = DEFAULT_SMOOTHING_QU_PX,
    qu_form: str = DEFAULT_QU_FORM,
    core_cutoff: float = CORE_CUTOFF,
    smoothing_frames: float = DEFAULT_SMOOTHING_FRAMES,
    scratch_dir: Optional[Union[str, Path]] = None,
    always_on_disk: bool = False,
    pixelwise: Optional[FieldMaps] = None,
) -> FieldUncertainty:
    """The whole recipe: bootstrap members, pixel-wise sigmas and the local risk.

    Args:
        observation: the data ``field`` was fitted to.
        field: the fitted field's maps.
        fit: trains a field the same way on other data and returns its maps:
            ``fit(observation, member_index)`` with ``member_index`` = 1, 2, ...
            (use it to pick another initialisation seed). The training code
            supplies it; this module knows nothing of networks.
        noise: the noise of the data (:mod:`hashwfa.wfa.observation.noise`).
        members: number of bootstrap members (>= 1); each costs one training.
        seed: seed of the noise redraws.
        smoothing_px, smoothing_qu_px: the risk windows [px] (:func:`local_risk_sigmas`).
        qu_form, core_cutoff: the Q/U model the field was fitted with.
        smoothing_frames: the risk windows' width along time [frames]; used for a series only.
        scratch_dir: for a lazy observation (a memory-mapped cube), the directory where each
            member's redrawn cube is written (:func:`redraw_noise_on_disk`; removed after the
            member); None: the members' data are made in memory (:func:`redraw_noise`).
        always_on_disk: write every member's data to ``scratch_dir``, also for an observation in
            memory (a data-parallel member: the other ranks map the file and read their shard).
        pixelwise: the pixel-wise WFA of ``observation`` with ``qu_form`` and ``core_cutoff``, when
            the caller has it already (one pass over a lazy cube less); None: made here.

    For a series ``(nt, ny, nx, 4, nw)`` a member is a fit of the whole
    redrawn series (``fit`` decides how: one joint field, or one per frame)
    and every map is ``(nt, ny, nx)``.

    Raises:
        HashwfaError: ``members < 1``; and what the parts raise (an
            :class:`~hashwfa.errors.OutputWriteError` when a scratch cube cannot be written).
    """
    if members < 1:
        raise HashwfaError(f"members = {members}; the sigma maps need at least one bootstrap member")
    if pixelwise is None:
        pixelwise = pixel_wfa(observation, core_cutoff=core_cutoff, qu_form=qu_form)
    wfa_sig = pixel_wfa_sigmas(observation, noise, core_cutoff=core_cutoff, qu_form=qu_form)
    rng = np.random.default_rng(seed)
    member_maps, member_pix = [], []
    for k in range(1, members + 1):  # one training per member
        with member_data(observation, noise, rng, scratch_dir, always_on_disk) as data:
            member_maps.append(fit(data, k))
            member_pix.append(pixel_wfa(data, core_cutoff=core_cutoff, qu_form=qu_form))
    sig = local_risk_sigmas(field, pixelwise, wfa_sig, member_maps, member_pix,
                            smoothing_px=smoothing_px, smoothing_qu_px=smoothing_qu_px,
                            smoothing_frames=smoothing_frames if observation.is_series else 0.0)
    return FieldUncertainty(sigmas=sig, wfa_sigmas=wfa_sig, noise=noise, members=member_maps)
