"""A synthetic time series: the synthetic plage advected by a flow, with
evolving azimuths and fresh noise in every frame, and its truth.

Frame 0 is exactly :func:`hashwfa.wfa.synthetic.plage.synthetic_plage` with the
same arguments (same field, line maps, noise). Frame k (time ``k *
cadence`` s) is made from the intrinsic (pre-PSF) field and line maps of
frame 0:

- **Advection**: every intrinsic map (B_los, B_Q, B_U, line depth, width and
  Doppler shift) is translated by ``k * flow`` pixels (a uniform drift,
  ``flow = (vy, vx)`` px per frame; at the default 0.044 arcsec/px and 20 s
  cadence, 0.5 px per frame is 0.8 km/s). The translation is a Fourier phase
  shift of the map mirror-padded by 32 px beyond the shift, so sub-pixel
  shifts neither blur nor wrap the field around the edges; what flows in at
  the upwind edge is the mirror image of the field there.
- **Evolving azimuths**: the transverse field rotates in place by ``k *
  rate(y, x)``, with ``rate`` a smooth random map (correlation length 20 px,
  rms ``azimuth_rate`` degrees per frame) carried along by the flow:
  (B_Q, B_U) turn by twice that angle, B_t and B_los are unchanged.
- Then each frame is observed as the single plage is (the forward model,
  the PSF, the truth as the PSF-weighted field; see
  :mod:`hashwfa.wfa.synthetic.plage`), and gets noise of its own: an independent
  stream of the seed per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa.errors import HashwfaError
from hashwfa.host.memory import check_fits_in_memory
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.fits_files import provenance_cards, write_atomic
from hashwfa.wfa.observation.stokes_fits import times_table
from hashwfa.wfa.physics.lines import SpectralLine
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import DEFAULT_DERIVATIVE, DEFAULT_QU_FORM, check_derivative
from hashwfa.wfa.synthetic.plage import (default_active, INSTRUMENT_FWHM, PIXEL_SCALE, synthetic_map_cards, _checked_settings, synthetic_plage_bytes, _make_atmosphere, _make_field, output_paths,
                                   _observe, _smooth_noise)

#: Extra mirror padding [px] beyond the shift when translating a map (keeps the
#: Fourier shift's wrap-around far from the field of view).
SHIFT_PADDING = 32
#: Correlation length [px] of the azimuth rotation-rate map.
RATE_SCALE = 20.0
_ATMOSPHERE = ("depth", "width", "shift")


@dataclass
class SyntheticSeries:
    """A synthetic time series with its truth.

    Attributes:
        stokes: ``(nt, ny, nx, 4, nw)`` Stokes I, Q, U, V [Ic], float64.
        wavelengths: ``(nw,)`` Angstrom relative to the line centre.
        line: the line.
        active_indices: the wavelength indices to fit.
        times: ``(nt,)`` frame times [s], ``k * cadence``.
        truth: :class:`FieldMaps` of ``(nt, ny, nx)`` arrays (PSF-weighted field).
        intrinsic: :class:`FieldMaps` ``(nt, ny, nx)``, the field before the PSF.
        atmosphere: line maps ``depth``, ``width``, ``shift`` ``(nt, ny, nx)`` (PSF-blurred), and with
            model "milne_eddington" its maps (see :class:`hashwfa.wfa.synthetic.plage.SyntheticPlage`).
        azimuth_rate: ``(ny, nx)`` rotation rate of the azimuth [rad/frame] in
            the frame of the flow (frame k turns by ``k * azimuth_rate``
            translated by ``k * flow``).
        parameters: how it was made (nt, ny, nx, seed, noise, model, line,
            pattern, qu_form, psf_fwhm [px], pixel_scale [arcsec], instrument_fwhm [mA], flow
            [px/frame], azimuth_rate [deg/frame rms], cadence [s]).
        derivative, derivative_qu: the derivatives of the observations made from it
            (:class:`~hashwfa.wfa.observation.observation.Observation`; the data do not depend on them).
    """

    stokes: np.ndarray
    wavelengths: np.ndarray
    line: SpectralLine
    active_indices: Tuple[int, ...]
    times: np.ndarray
    truth: FieldMaps
    intrinsic: FieldMaps
    atmosphere: Dict[str, np.ndarray] = field(default_factory=dict)
    azimuth_rate: Optional[np.ndarray] = None
    parameters: Dict[str, Any] = field(default_factory=dict)
    derivative: str = DEFAULT_DERIVATIVE
    derivative_qu: Optional[str] = None

    @property
    def nt(self) -> int:
        """Number of frames."""
        return self.stokes.shape[0]

    def observation(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Observation:
        """The whole series as one :class:`Observation` ``(nt, ny, nx, 4, nw)`` with its frame times."""
        p = self.parameters
        return Observation(self.stokes, self.wavelengths, line=self.line, active_indices=self.active_indices,
                           weights=weights, unit="Ic", times=self.times,
                           derivative=self.derivative, derivative_qu=self.derivative_qu,
                           map_cards=synthetic_map_cards(*self.stokes.shape[1:3]),
                           source=f"synthetic series (nt={self.nt}, seed={p['seed']}, model={p['model']}, "
                                  f"noise={p['noise']:g})")

    def frame_observation(self, t: int, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Observation:
        """Frame ``t`` as a single-frame :class:`Observation` (a view of :attr:`stokes`)."""
        p = self.parameters
        return Observation(self.stokes[t], self.wavelengths, line=self.line, active_indices=self.active_indices,
                           weights=weights, unit="Ic", derivative=self.derivative, derivative_qu=self.derivative_qu,
                           map_cards=synthetic_map_cards(*self.stokes.shape[1:3]),
                           source=f"synthetic series frame {t} (seed={p['seed']}, model={p['model']}, "
                                  f"noise={p['noise']:g})")

    def write_fits(self, directory: Union[str, Path], overwrite: bool = False) -> Dict[str, Path]:
        """Write ``stokes.fits`` (the series ``(nt, ny, nx, 4, nw)`` with its ``TIMES``
        table), ``wavelengths.fits`` and ``truth.fits`` (BLOS, BQ, BU, BTRANS,
        AZIMUTH ``(nt, ny, nx)``, the field before the PSF as INTR_*, and a
        ``TIMES`` table) into ``directory`` (created if needed; atomic writes).

        Returns:
            ``{"stokes": path, "wavelengths": path, "truth": path}``.

        Raises:
            HashwfaError: when a file exists and ``overwrite`` is False.
        """
        paths = output_paths(directory, overwrite)
        p = self.parameters
        cards = {"SYNTHET": (True, "synthetic series made by hashwfa"), "SEED": (p["seed"], "random seed"),
                 "NOISE": (p["noise"], "noise sigma in units of the continuum"),
                 "MODEL": (p["model"], "forward model: zeeman, wfa or milne_eddington"),
                 "FLOWY": (p["flow"][0], "[px/frame] drift along y"), "FLOWX": (p["flow"][1], "[px/frame] drift along x"),
                 "AZRATE": (p["azimuth_rate"], "[deg/frame] rms rotation rate of the azimuths")}
        if p["model"] == "milne_eddington":
            cards["INSTFWHM"] = (p["instrument_fwhm"], "[mA] FWHM of the instrument transmission profile")
        self.observation().write_fits(paths["stokes"], paths["wavelengths"], overwrite=overwrite, header=cards)
        hdr = fits.Header()
        for key, value, comment in provenance_cards():
            hdr[key] = (value, comment)
        for key, value in cards.items():
            hdr[key] = value
        hdr.add_comment("True field of the synthetic series (PSF-weighted): BLOS, BQ, BU, BTRANS, AZIMUTH;")
        hdr.add_comment("the field before the PSF as INTR_*; all (nt, ny, nx); frame times in TIMES.")
        hdus = [fits.PrimaryHDU(header=hdr)] + self.truth.to_hdus() + self.intrinsic.to_hdus(prefix="INTR_")
        hdus.append(times_table(self.times))
        write_atomic(fits.HDUList(hdus), paths["truth"], overwrite=True)
        return paths

    def frame_truth(self, t: int) -> FieldMaps:
        """The true maps ``(ny, nx)`` of frame ``t``."""
        return FieldMaps(**{name: value[t] for name, value in self.truth.as_dict().items()})


def translate(images: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate ``images`` ``(ny, nx, ...)`` by ``(dy, dx)`` pixels (content at
    (y, x) moves to (y + dy, x + dx)), band-limited (Fourier phase shift) on a
    mirror-padded copy; an exact copy when both shifts are 0."""
    images = np.asarray(images, dtype=np.float64)
    if dy == 0 and dx == 0:
        return images.copy()
    pad = int(math.ceil(max(abs(dy), abs(dx)))) + SHIFT_PADDING
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 2)
    padded = np.pad(images, widths, mode="symmetric")
    ky = np.fft.fftfreq(padded.shape[0]).reshape((-1, 1) + (1,) * (images.ndim - 2))
    kx = np.fft.fftfreq(padded.shape[1]).reshape((1, -1) + (1,) * (images.ndim - 2))
    phase = np.exp(-2j * math.pi * (ky * dy + kx * dx))
    moved = np.fft.ifft2(np.fft.fft2(padded, axes=(0, 1)) * phase, axes=(0, 1)).real
    return moved[pad:pad + images.shape[0], pad:pad + images.shape[1]]


def synthetic_series(
    nt: int = 8,
    ny: int = 96,
    nx: int = 96,
    seed: int = 0,
    noise: float = 1e-3,
    flow: Tuple[float, float] = (0.25, 0.5),
    azimuth_rate: float = 2.0,
    cadence: float = 20.0,
    model: str = "zeeman",
    line: Union[str, SpectralLine] = "5173",
    wavelengths: Optional[Sequence[float]] = None,
    active_indices: Optional[Sequence[int]] = None,
    pattern: str = "full",
    qu_form: str = DEFAULT_QU_FORM,
    psf_fwhm: Optional[float] = None,
    instrument_fwhm: float = INSTRUMENT_FWHM,
    derivative: str = DEFAULT_DERIVATIVE,
    derivative_qu: Optional[str] = None,
) -> SyntheticSeries:
    """Make a synthetic time series of the plage and its true field.

    Args:
        nt: number of frames (>= 1).
        ny, nx, seed, noise, model, line, wavelengths, active_indices,
            pattern, qu_form, psf_fwhm, instrument_fwhm, derivative, derivative_qu: as for
            :func:`hashwfa.wfa.synthetic.plage.synthetic_plage` (frame 0 is that plage).
        flow: ``(vy, vx)`` drift [px per frame] of the whole field.
        azimuth_rate: rms rotation rate of the azimuth [deg per frame] (>= 0).
        cadence: time between frames [s] (> 0).

    Returns:
        :class:`SyntheticSeries`.

    Raises:
        HashwfaError: for a bad frame count, flow, rate or cadence, and
            everything :func:`synthetic_plage` refuses.
    """
    caller = "synthetic_series"
    check_derivative(derivative, f"{caller}: derivative")
    if derivative_qu is not None:
        check_derivative(derivative_qu, f"{caller}: derivative_qu")
    noise, line, psf_fwhm, wl = _checked_settings(caller, ny, nx, seed, noise, model, pattern, qu_form, line,
                                                  psf_fwhm, wavelengths, instrument_fwhm)
    if isinstance(nt, bool) or not isinstance(nt, (int, np.integer)) or nt < 1:
        raise HashwfaError(f"{caller}: nt = {nt!r}; expected an integer >= 1 (frames)")
    # The nt frames held at once, plus the working copy of the frame being made.
    check_fits_in_memory(
        synthetic_plage_bytes(int(ny), int(nx), wl.shape[0]) * (int(nt) + 1) // 2,
        f"{caller}: {nt} frames of {ny} x {nx} x 4 x {wl.shape[0]}",
        "make nt, ny or nx smaller (data.synthetic.nt, .ny, .nx in a config)",
    )
    try:
        vy, vx = (float(v) for v in flow)
    except (TypeError, ValueError):
        vy = vx = float("nan")
    if not (math.isfinite(vy) and math.isfinite(vx)):
        raise HashwfaError(f"{caller}: flow = {flow!r}; expected two finite numbers (vy, vx) in pixels per frame")
    for name, value, lowest in (("azimuth_rate", azimuth_rate, 0.0), ("cadence", cadence, None)):
        ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
            and math.isfinite(float(value)) and (float(value) >= 0 if lowest is not None else float(value) > 0)
        if not ok:
            raise HashwfaError(f"{caller}: {name} = {value!r}; expected a finite number "
                               f"{'>= 0 (degrees per frame)' if lowest is not None else '> 0 (seconds)'}")
    # Streams 0-2 are synthetic_plage's (field, line maps, frame-0 noise); 3 is the series'.
    field_seq, atm_seq, noise_seq, series_seq = np.random.SeedSequence(int(seed)).spawn(4)
    rate_seq, frames_seq = series_seq.spawn(2)
    frame_noise = [np.random.default_rng(noise_seq)] + [np.random.default_rng(s) for s in frames_seq.spawn(nt)[1:]]
    intrinsic0, envelope, conc = _make_field(np.random.default_rng(field_seq), int(ny), int(nx))
    atm0 = _make_atmosphere(np.random.default_rng(atm_seq), envelope, conc, line.center)
    rate = math.radians(float(azimuth_rate)) * _smooth_noise(np.random.default_rng(rate_seq), (ny, nx), RATE_SCALE)

    base = np.stack([intrinsic0.blos, intrinsic0.bq, intrinsic0.bu] + [atm0[k] for k in _ATMOSPHERE] + [rate],
                    axis=-1)  # (ny, nx, 7)
    stokes = np.empty((nt, ny, nx, 4, wl.shape[0]))
    truths, intrinsics, atms = [], [], []
    for k in range(nt):  # frames: each a vectorised image computation
        if k == 0:
            intrinsic, atm_k = intrinsic0, atm0
        else:
            moved = translate(base, k * vy, k * vx)
            turn = 2.0 * k * moved[..., 6]  # (B_Q, B_U) turn by twice the azimuth's rotation
            bq = moved[..., 1] * np.cos(turn) - moved[..., 2] * np.sin(turn)
            bu = moved[..., 1] * np.sin(turn) + moved[..., 2] * np.cos(turn)
            intrinsic = FieldMaps.from_bqbu(blos=moved[..., 0], bq=bq, bu=bu)
            atm_k = {name: moved[..., 3 + i] for i, name in enumerate(_ATMOSPHERE)}
        frame, truth, atm_blurred = _observe(intrinsic, atm_k, wl, line, model, pattern, qu_form, psf_fwhm,
                                             float(instrument_fwhm))
        if noise > 0:
            frame = frame + noise * frame_noise[k].standard_normal(frame.shape)
        stokes[k] = frame
        truths.append(truth)
        intrinsics.append(intrinsic)
        atms.append(atm_blurred)

    def stacked(maps):
        return FieldMaps(**{name: np.stack([m.as_dict()[name] for m in maps]) for name in maps[0].as_dict()})

    params = {"nt": int(nt), "ny": int(ny), "nx": int(nx), "seed": int(seed), "noise": noise, "model": model,
              "line": line.name, "pattern": pattern, "qu_form": qu_form, "psf_fwhm": psf_fwhm,
              "pixel_scale": PIXEL_SCALE, "instrument_fwhm": float(instrument_fwhm), "flow": (vy, vx), "azimuth_rate": float(azimuth_rate),
              "cadence": float(cadence)}
    series = SyntheticSeries(
        stokes=stokes, wavelengths=wl, line=line, active_indices=tuple(sorted(int(i) for i in (default_active(active_indices, wavelengths) or range(wl.shape[0])))),
        times=float(cadence) * np.arange(nt, dtype=np.float64), truth=stacked(truths), intrinsic=stacked(intrinsics),
        atmosphere={name: np.stack([a[name] for a in atms]) for name in atms[0]}, azimuth_rate=rate,
        parameters=params, derivative=derivative, derivative_qu=derivative_qu)
    series.frame_observation(0)  # refuses bad active indices like synthetic_plage does
    return series
