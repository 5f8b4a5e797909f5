"""A synthetic plage observation with a known magnetic field.

The real CRISP cube of the reference study is not available, so this module makes
one on the same wavelength grid (Mg I b2 5173, 13 wavelengths from -0.24 to
+0.24 A in 0.04 A steps, active indices 5, 6, 7), observed at disk centre
(B_los = B_z, B_t = B_horizontal) with the sampling and resolution of CRISP
at the Swedish 1-m Solar Telescope.

**Telescope.** Pixels of :data:`PIXEL_SCALE` = 0.044 arcsec (CRISP since
its 2019 cameras; 0.059 arcsec before). The point-spread function is a
Gaussian whose FWHM is the Airy core's, ``1.03 lambda / D`` with D = 0.97 m
(0.113 arcsec at 5173 A), added in quadrature to :data:`SEEING_FWHM` = 0.10
arcsec of residual seeing after adaptive optics and image restoration: 0.151
arcsec = **3.4 px** at 5173 A (``psf_fwhm`` overrides it; 0 switches it off).
The seeing halo (stray light on arcsec scales) is left out. Real plage maps
are never sharper than this: their smallest structures are a few pixels
across.

**Field** at the formation height of the line, before the PSF (the
``intrinsic`` maps):

- **B_los** [G]: kG flux concentrations (Gaussians of FWHM 0.2-0.4 arcsec =
  4.5-9 px, like the flux tubes of plage; peaks lognormal around 0.7 kG,
  clipped to 0.15-1.5 kG, 88 % of one polarity; ~107 of them in 200 x 178)
  clustered in the intergranular lanes (a Voronoi network of ~1 arcsec
  cells) inside a plage envelope, compressed smoothly so that no pixel
  exceeds ~1.45 kG (the weak-field regime of Mg I b2); plus a weaker
  extended field (diffuse plage field up to ~100 G, a 35 G rms field of 10 px
  scale, and a 10 G rms mixed-polarity field of 1.5 px scale that the PSF
  and the noise hide).
- **Transverse field** [G]: the horizontal part of the potential field whose
  vertical part at that height is B_los (``B_h(k) = -i k/|k| B_z(k)``): it
  fans out of every concentration, peaking at ~0.45 times its B_los at
  ~1.2 sigma from its centre (inclinations ~40 deg at the flanks, B_t of
  several hundred G in and around the concentrations); plus a canopy field
  of coherent azimuth over ~20 px (80 G rms per component, twice that inside
  the plage), and fibril striations (white noise smeared along the field
  direction by a line integral convolution) modulating B_t by +-30 %;
  B_t is compressed smoothly below 1 kG (``BT_MAX``), so |B| < 1.8 kG.
  Azimuth from +x towards +y, in [0, pi).
- **Line** (per pixel, smooth): Gaussian absorption ``a(dl) = depth *
  exp(-((dl - shift) / width)^2)`` with depth 0.45-0.75 (shallower in plage,
  where the core is filled in), 1/e half-width ~0.14 A (broader in plage) and
  Doppler shifts of a few tenths of km/s (downflows around concentrations).

**Truth.** The PSF-weighted mean of the intrinsic B_los, B_Q and B_U (what a
linear, WFA-like measurement of blurred images can recover); B_t and the
azimuth follow from the blurred (B_Q, B_U), so where azimuths mix within the
PSF the true B_t is the net linear-polarisation field, smaller than the mean
intrinsic B_t. :attr:`SyntheticPlage.intrinsic` keeps the field before the PSF.

Three forward models:

- ``"zeeman"`` (default, realistic): each pixel's profiles are synthesised
  from its intrinsic field with the full anomalous Zeeman pattern of the
  line's levels in the weak-line limit (:mod:`hashwfa.wfa.physics.zeeman`), and the
  telescope then blurs the Stokes I, Q, U, V images with the PSF. This is
  *not* the WFA: inversions meet model error as on real data (the
  finite-difference derivatives on the 0.04 A grid, the field's
  non-linearity, profiles that mix different fields, line shifts and depths
  within the PSF), but no systematic one in Q and U with the default
  second-derivative form (:mod:`hashwfa.wfa.physics.weak_field`; the reference report's ``"wing"``
  form has the wrong sign at +-0.04 A).
- ``"milne_eddington"`` (a photospheric line through a filtergraph): each
  pixel's profiles are the Milne-Eddington (Unno-Rachkovsky) solution of its
  intrinsic field (:mod:`hashwfa.wfa.physics.milne_eddington`: the line's Zeeman
  pattern, Voigt and Faraday-Voigt profiles, magneto-optical effects) seen
  through a Gaussian transmission profile of ``instrument_fwhm`` mA (65 mA by
  default, CRISP-like), then blurred by the PSF. Its line maps follow from the
  ones above (smooth, broader and weaker in plage): Doppler width
  ``1.6 km/s * lambda0 / c * width / 0.14 A`` (0.033 A at 6173 A), damping
  0.06-0.2 (growing with the width), eta0 = 3 + 20 (depth - 0.45) (about 4.6 in
  plage, 7.6 outside), source-function gradient S1 = depth + 0.1 with S0 = 1 -
  S1 (continuum 1), and the velocity of the Doppler shift map. The Doppler
  widths are photospheric: use it with a line such as Fe I 6173 and a grid
  that samples a ~0.1 A wide line (the default Mg I b2 grid's 0.04 A steps
  undersample it).
- ``"wfa"`` (exact, for tests): the PSF blurs the field and line maps, and
  each pixel's profiles are the zero-field profile for I and the exact WFA
  forward model (:func:`hashwfa.wfa.physics.weak_field.forward_stokes` of its
  three-point derivatives, Q/U in the ``qu_form`` given, by default the
  second-derivative form) for Q, U, V of the true field: the pixel-wise WFA
  with the same ``qu_form`` and the three-point derivative recovers the
  truth exactly without noise.

Noise: Gaussian, the same sigma (``noise`` times the continuum, which is 1)
in I, Q, U and V, added after the PSF (photon noise is white per pixel).
The default 1e-3 is a typical CRISP level. The result is deterministic for a
seed: the field, the line maps and the noise draw from three independent
streams of it, so the same seed with another noise level gives the same
field and the same noise pattern, scaled.

What the pixel-wise WFA makes of the default cube, with and without noise,
and the field's statistics are measured in BENCHMARKS.md ("The synthetic
plage and the pixel-wise WFA").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa.errors import HashwfaError, non_negative
from hashwfa.host.memory import check_fits_in_memory
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.fits_files import provenance_cards, write_atomic
from hashwfa.wfa.physics.lines import SpectralLine, get_line
from hashwfa.wfa.physics.milne_eddington import milne_eddington_stokes
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import (DEFAULT_DERIVATIVE, DEFAULT_QU_FORM, QU_FORMS, bt_azimuth_to_bqbu,
                                            check_derivative, forward_stokes, intensity_derivative,
                                            intensity_second_derivative)
from hashwfa.wfa.physics.zeeman import zeeman_stokes

#: The CRISP Mg I b2 grid of the reference study [A from line centre].
CRISP_WAVELENGTHS = np.round(np.linspace(-0.24, 0.24, 13), 10)
#: Its active indices.
CRISP_ACTIVE = (5, 6, 7)
MODELS = ("zeeman", "wfa", "milne_eddington")
#: FWHM [mA] of the Gaussian transmission profile of model "milne_eddington" (CRISP-like at 6173-6302 A).
INSTRUMENT_FWHM = 65.0
#: Doppler width of model "milne_eddington" as a velocity [km/s] (thermal and
#: microturbulent broadening of a photospheric Fe I line), at the mean width map.
ME_DOPPLER_VELOCITY = 1.6
#: Speed of light [km/s], for Doppler shifts.
C_KMS = 299792.458
#: CRISP pixel size [arcsec/px] (since 2019; 0.059 before).
PIXEL_SCALE = 0.044
#: Name of the spatial WCS of synthetic maps (FITS WCSNAME).
SYNTHETIC_WCSNAME = "synthetic, disk centre"


def synthetic_map_cards(ny: int, nx: int) -> Tuple[Tuple[str, Any, str], ...]:
    """The spatial WCS of synthetic maps ``(ny, nx)``: helioprojective, :data:`PIXEL_SCALE` arcsec per
    pixel, the image centre at disk centre (0, 0) -- where the synthetic is observed; as
    ``(keyword, value, comment)`` cards for FITS axes 1 = x and 2 = y (no date: it has none)."""
    cards = []
    for axis, (ctype, n) in enumerate((("HPLN-TAN", nx), ("HPLT-TAN", ny)), start=1):
        cards += [(f"CTYPE{axis}", ctype, "helioprojective " + ("longitude" if axis == 1 else "latitude")),
                  (f"CUNIT{axis}", "arcsec", ""),
                  (f"CRPIX{axis}", (n + 1) / 2.0, "the image centre"),
                  (f"CRVAL{axis}", 0.0, "disk centre"),
                  (f"CDELT{axis}", PIXEL_SCALE, "CRISP pixel size [arcsec]")]
    return tuple(cards) + (("WCSNAME", SYNTHETIC_WCSNAME, "synthetic data: no pointing, no date"),)


#: Aperture of the Swedish 1-m Solar Telescope [m].
TELESCOPE_DIAMETER = 0.97
#: FWHM [arcsec] of the residual seeing after adaptive optics and image
#: restoration, added in quadrature to the diffraction core.
SEEING_FWHM = 0.10
#: FWHM range [arcsec] of the flux concentrations (plage flux tubes).
TUBE_FWHM = (0.2, 0.4)
#: Flux concentrations per image pixel (placed where the plage envelope and the lanes accept them).
N_TUBES_PER_PIXEL = 0.003
#: Median peak B_los [G] of a flux concentration (lognormal, clipped to 150-1500 G).
TUBE_PEAK_MEDIAN = 700.0
#: Canopy field [G]: rms of each horizontal component outside the plage (doubled inside).
CANOPY_RMS = 80.0
#: Soft ceiling [G] of the intrinsic transverse field.
BT_MAX = 1000.0
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def psf_fwhm_pixels(line: "SpectralLine | str") -> float:
    """The default PSF FWHM [px] at a line: ``sqrt((1.03 lambda0/D)^2 + SEEING_FWHM^2)``
    in arcsec, divided by :data:`PIXEL_SCALE` (3.43 px for Mg I b2 5173)."""
    line = get_line(line)
    diffraction = 1.03 * line.center * 1e-10 / TELESCOPE_DIAMETER * (180.0 / math.pi * 3600.0)
    return math.hypot(diffraction, SEEING_FWHM) / PIXEL_SCALE


@dataclass
class SyntheticPlage:
    """A synthetic observation with its truth.

    Attributes:
        observation: the :class:`Observation` (Stokes in continuum units, Ic).
        truth: the true :class:`FieldMaps` ``(ny, nx)``: the PSF-weighted
            field (see the module docstring).
        atmosphere: line-parameter maps ``(ny, nx)``: ``depth`` (continuum
            units), ``width`` (1/e half-width, A), ``shift`` (Doppler shift,
            A); with model "milne_eddington" also ``doppler_width`` [A],
            ``eta0``, ``damping``, ``s1`` (S0 = 1 - S1); PSF-blurred like the truth.
        parameters: how it was made (ny, nx, seed, noise, model, line,
            pattern, qu_form, psf_fwhm [px], pixel_scale [arcsec],
            instrument_fwhm [mA]).
        intrinsic: the field before the PSF, :class:`FieldMaps` ``(ny, nx)``.
    """

    observation: Observation
    truth: FieldMaps
    atmosphere: Dict[str, np.ndarray] = field(default_factory=dict)
    parameters: Dict[str, Any] = field(default_factory=dict)
    intrinsic: Optional[FieldMaps] = None

    def header_cards(self) -> Dict[str, Tuple[Any, str]]:
        """FITS cards describing how the data were made (SYNTHET, SEED, NOISE, MODEL,
        PATTERN, QUFORM, PSFFWHM, PIXSCALE)."""
        p = self.parameters
        return {
            "SYNTHET": (True, "synthetic plage made by hashwfa"),
            "SEED": (p["seed"], "random seed of synthetic_plage"),
            "NOISE": (p["noise"], "noise sigma in units of the continuum"),
            "MODEL": (p["model"], "forward model: zeeman, wfa or milne_eddington"),
            "PATTERN": (p["pattern"], "Zeeman pattern: full or triplet"),
            "QUFORM": (p["qu_form"], "Q/U form of model wfa: second_derivative or wing"),
            "PSFFWHM": (p["psf_fwhm"], "FWHM of the Gaussian PSF [px]"),
            "PIXSCALE": (p["pixel_scale"], "pixel size [arcsec] the field is modelled at"),
            **({"INSTFWHM": (p["instrument_fwhm"], "[mA] FWHM of the instrument transmission profile")}
               if p["model"] == "milne_eddington" else {}),
        }

    def write_fits(self, directory: Union[str, Path], overwrite: bool = False) -> Dict[str, Path]:
        """Write ``stokes.fits``, ``wavelengths.fits`` and ``truth.fits`` into ``directory``.

        ``truth.fits`` holds image extensions BLOS [G], BQ [G2], BU [G2],
        BTRANS [G], AZIMUTH [rad] (the truth), the line maps DEPTH [Ic],
        WIDTH [A], SHIFT [A] (and DOPPLER_WIDTH [A], ETA0, DAMPING, S1 of
        model "milne_eddington"), and the field before the PSF as INTR_BLOS ...
        INTR_AZIMUTH. The directory is created if needed; writes are atomic.

        Returns:
            ``{"stokes": path, "wavelengths": path, "truth": path}``.

        Raises:
            HashwfaError: when a file exists and ``overwrite`` is False.
        """
        paths = output_paths(directory, overwrite)
        cards = self.header_cards()
        self.observation.write_fits(paths["stokes"], paths["wavelengths"], overwrite=overwrite, header=cards)
        hdr = fits.Header()
        for key, value, comment in provenance_cards():
            hdr[key] = (value, comment)
        for key, value in cards.items():
            hdr[key] = value
        hdr["LINE"] = (self.observation.line.name, "spectral line (hashwfa name)")
        hdr.add_comment("True field of the synthetic plage (PSF-weighted): extensions BLOS, BQ, BU,")
        hdr.add_comment("BTRANS, AZIMUTH; the line parameters DEPTH, WIDTH, SHIFT; the field before")
        hdr.add_comment("the PSF as INTR_BLOS ... INTR_AZIMUTH; all (ny, nx).")
        hdus = [fits.PrimaryHDU(header=hdr)] + self.truth.to_hdus()
        for name, unit, comment in (("depth", "Ic", "line depth, continuum units"),
                                    ("width", "Angstrom", "1/e half-width of the Gaussian"),
                                    ("shift", "Angstrom", "Doppler shift, + = red")) + _ME_MAPS:
            if name not in self.atmosphere:
                continue
            ext = fits.Header()
            ext["BUNIT"] = (unit, comment)
            hdus.append(fits.ImageHDU(self.atmosphere[name].astype(np.float32), header=ext, name=name.upper()))
        if self.intrinsic is not None:
            hdus += self.intrinsic.to_hdus(prefix="INTR_")
        write_atomic(fits.HDUList(hdus), paths["truth"], overwrite=True)
        return paths


# ---------------------------------------------------------------------- helpers
def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], scale: float) -> np.ndarray:
    """Gaussian random field of unit expected rms, correlation length ``scale`` px (periodic).

    Normalised by the filter's expected variance, not the sample's, so that
    tiny images (where the field is nearly constant) stay finite."""
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    kernel = np.exp(-2.0 * (math.pi * scale) ** 2 * (kx * kx + ky * ky))
    out = np.fft.ifft2(np.fft.fft2(white) * kernel).real
    # Filtered unit white noise has variance mean(kernel^2) (Parseval).
    return out / math.sqrt(float(np.mean(kernel * kernel)))


def _potential_horizontal(bz: np.ndarray, height: float, pad: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """Horizontal field (B_x, B_y) [G] at ``height`` px of the potential field whose
    vertical field at 0 is ``bz``: ``B_h(k) = -i k/|k| B_z(k) exp(-|k| h)``.
    Zero-padded so the periodic FFT does not wrap flux across the borders."""
    ny, nx = bz.shape
    padded = np.zeros((ny + 2 * pad, nx + 2 * pad))
    padded[pad:pad + ny, pad:pad + nx] = bz
    ky = 2 * math.pi * np.fft.fftfreq(padded.shape[0])[:, None]
    kx = 2 * math.pi * np.fft.rfftfreq(padded.shape[1])[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = 1.0  # the mean has no horizontal field
    spec = np.fft.rfft2(padded) * np.exp(-k * height) / k
    bx = np.fft.irfft2(-1j * kx * spec, s=padded.shape)[pad:pad + ny, pad:pad + nx]
    by = np.fft.irfft2(-1j * ky * spec, s=padded.shape)[pad:pad + ny, pad:pad + nx]
    return bx, by


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample ``image`` at fractional (y, x), clamped to the borders."""
    ny, nx = image.shape
    y = np.clip(y, 0, ny - 1)
    x = np.clip(x, 0, nx - 1)
    y0 = np.minimum(np.floor(y).astype(int), ny - 2) if ny > 1 else np.zeros_like(y, int)
    x0 = np.minimum(np.floor(x).astype(int), nx - 2) if nx > 1 else np.zeros_like(x, int)
    fy, fx = y - y0, x - x0
    y1, x1 = np.minimum(y0 + 1, ny - 1), np.minimum(x0 + 1, nx - 1)
    return ((1 - fy) * (1 - fx) * image[y0, x0] + (1 - fy) * fx * image[y0, x1]
            + fy * (1 - fx) * image[y1, x0] + fy * fx * image[y1, x1])


def _fibril_texture(rng: np.random.Generator, azimuth: np.ndarray, length: int = 6) -> np.ndarray:
    """Unit-rms striations along ``azimuth``: white noise averaged over a straight
    segment of +-``length`` px through each pixel in the local field direction
    (a line integral convolution)."""
    ny, nx = azimuth.shape
    noise = rng.standard_normal((ny, nx))
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    dy, dx = np.sin(azimuth), np.cos(azimuth)
    acc = np.zeros((ny, nx))
    for step in range(-length, length + 1):  # 2L+1 vectorised samples, not a pixel loop
        acc += _bilinear(noise, yy + step * dy, xx + step * dx)
    # Mean of 2L+1 correlated samples; normalise by the expected rms of a mean of
    # roughly independent ones (steps are ~1 px apart), not the sample rms.
    return (acc / (2 * length + 1)) * math.sqrt(2 * length + 1)


def _network_lanes(rng: np.random.Generator, shape: Tuple[int, int], cell: float) -> np.ndarray:
    """In [0, 1]: close to 1 on the boundaries of random cells of size ``cell`` px
    (a Voronoi network like the intergranular lanes where plage flux collects)."""
    ny, nx = shape
    n_cells = max(4, int(round(ny * nx / cell ** 2)))
    centres = rng.uniform((0, 0), (ny, nx), size=(n_cells, 2))
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    d = np.hypot(yy[..., None] - centres[:, 0], xx[..., None] - centres[:, 1])  # (ny, nx, n_cells)
    d2 = np.partition(d, 1, axis=-1)[..., :2]
    return np.exp(-((d2[..., 1] - d2[..., 0]) / (0.18 * cell)) ** 2)


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` matrix of a 1-D Gaussian blur of ``sigma`` px with mirror
    boundaries (half-sample symmetric); rows sum to 1."""
    radius = int(4.0 * sigma + 0.5)  # truncated at ~4 sigma (as scipy.ndimage.gaussian_filter)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    cols = np.arange(n)[:, None] + offsets[None, :]  # (n, 2r+1)
    # Mirror indices into 0..n-1 (period 2n: -1 -> 0, n -> n-1).
    cols = np.mod(cols, 2 * n)
    cols = np.where(cols >= n, 2 * n - 1 - cols, cols)
    out = np.zeros((n, n))
    np.add.at(out, (np.repeat(np.arange(n), offsets.size), cols.reshape(-1)), np.tile(kernel, n))
    return out


def _psf(images: np.ndarray, fwhm: float) -> np.ndarray:
    """Blur ``images`` ``(ny, nx, ...)`` over the two leading axes with a Gaussian
    PSF of ``fwhm`` px (separable, mirror boundaries, flux conserving); a copy
    when ``fwhm`` is 0."""
    images = np.asarray(images, dtype=np.float64)
    if fwhm <= 0:
        return images.copy()
    sigma = fwhm / _FWHM_PER_SIGMA
    by = _blur_matrix(images.shape[0], sigma)
    bx = _blur_matrix(images.shape[1], sigma)
    out = np.tensordot(by, images, axes=(1, 0))  # (ny, nx, ...)
    out = np.tensordot(bx, np.moveaxis(out, 1, 0), axes=(1, 0))  # (nx, ny, ...)
    return np.ascontiguousarray(np.moveaxis(out, 0, 1))


def _make_field(rng: np.random.Generator, ny: int, nx: int) -> Tuple[FieldMaps, np.ndarray, np.ndarray]:
    """The intrinsic field (before the PSF) and two helper maps: the plage
    envelope [0..1] and the concentration field [G]."""
    shape = (ny, nx)
    # Plage envelope: a smooth random field switched on over ~half of the area.
    env_noise = _smooth_noise(rng, shape, scale=0.18 * max(ny, nx))
    envelope = 1.0 / (1.0 + np.exp(-(env_noise + 0.1) / 0.35))

    # Flux concentrations in the intergranular lanes (cells ~1 arcsec) inside the plage.
    lanes = _network_lanes(rng, shape, cell=1.0 / PIXEL_SCALE)
    accept = envelope ** 1.5 * (0.15 + 0.85 * lanes)
    n_blobs = max(1, int(round(N_TUBES_PER_PIXEL * ny * nx)))
    cand = rng.uniform((0, 0), (ny, nx), size=(20 * n_blobs, 2))
    keep = rng.uniform(size=cand.shape[0]) < accept[cand[:, 0].astype(int), cand[:, 1].astype(int)]
    pos = cand[keep][:n_blobs]
    n = pos.shape[0]
    sigma = rng.uniform(*TUBE_FWHM, n) / PIXEL_SCALE / _FWHM_PER_SIGMA
    peak = np.clip(rng.lognormal(math.log(TUBE_PEAK_MEDIAN), 0.45, n), 150.0, 1500.0)
    polarity = np.where(rng.uniform(size=n) < 0.88, 1.0, -1.0)
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    conc = np.zeros(shape)
    for k in range(n):  # a loop over ~100 tubes, each a vectorised image
        r2 = (yy - pos[k, 0]) ** 2 + (xx - pos[k, 1]) ** 2
        conc += polarity[k] * peak[k] * np.exp(-0.5 * r2 / sigma[k] ** 2)
    # Overlapping tubes must not exceed what the WFA handles on this line (~1.5 kG).
    conc = 1450.0 * np.tanh(conc / 1450.0)

    # Weaker extended field: diffuse plage field, a mesoscale field, and a
    # small-scale mixed-polarity field that the PSF and the noise hide.
    diffuse = 100.0 * envelope + 35.0 * _smooth_noise(rng, shape, 10.0) + 10.0 * _smooth_noise(rng, shape, 1.5)
    blos = conc + diffuse

    # Transverse field: the horizontal potential field of B_los at its own height
    # (the fan-out of the flux tubes), plus a canopy of coherent azimuth (stronger
    # over the plage), with striations along the field direction (fibrils).
    bx, by = _potential_horizontal(blos, height=0.0)
    canopy = CANOPY_RMS * (1.0 + envelope)
    bx = bx + canopy * _smooth_noise(rng, shape, 20.0)
    by = by + canopy * _smooth_noise(rng, shape, 20.0)
    azimuth = np.mod(np.arctan2(by, bx), math.pi)
    azimuth = np.where(azimuth >= math.pi, azimuth - math.pi, azimuth)
    striation = _fibril_texture(rng, azimuth, length=6)
    bt = np.hypot(bx, by) * np.clip(1.0 + 0.3 * striation, 0.3, 1.9)
    # Compressed smoothly like B_los (steep flanks of merged tubes and bright
    # striations): |B| stays in the weak-field regime of the line.
    bt = BT_MAX * np.tanh(bt / BT_MAX)
    bq, bu = bt_azimuth_to_bqbu(bt, azimuth)
    return FieldMaps(blos=blos, bq=bq, bu=bu, bt=bt, azimuth=azimuth), envelope, conc


def _make_atmosphere(rng: np.random.Generator, envelope: np.ndarray, conc: np.ndarray,
                     center: float) -> Dict[str, np.ndarray]:
    """Smooth maps of line depth [Ic], 1/e half-width [A] and Doppler shift [A]."""
    shape = envelope.shape
    depth = 0.68 - 0.15 * envelope + 0.03 * _smooth_noise(rng, shape, 8.0)
    width = 0.14 * (1.0 + 0.10 * envelope + 0.04 * _smooth_noise(rng, shape, 8.0))
    # Velocities [km/s]: a smooth pattern of 0.4 km/s rms, and downflows of up to
    # 0.3 km/s around the concentrations (where |B| falls off); redshift positive.
    edge = np.abs(conc) / 1450.0
    v = 0.4 * _smooth_noise(rng, shape, 6.0) + 1.2 * edge * (1.0 - edge)
    return {"depth": np.clip(depth, 0.3, 0.9), "width": width, "shift": v * center / C_KMS}


_ME_MAPS = (("doppler_width", "Angstrom", "Milne-Eddington Doppler width"),
            ("eta0", "", "Milne-Eddington line-to-continuum absorption"),
            ("damping", "", "Voigt damping [Doppler widths]"),
            ("s1", "Ic", "source-function gradient (S0 = 1 - S1)"))


def _me_atmosphere(atm: Dict[str, np.ndarray], center: float) -> Dict[str, np.ndarray]:
    """Milne-Eddington maps from the line maps ``depth``, ``width``, ``shift`` (see the
    module docstring): ``doppler_width`` [A], ``eta0``, ``damping``, ``s1``, ``velocity`` [km/s]."""
    rel_width = atm["width"] / 0.14
    return {"doppler_width": ME_DOPPLER_VELOCITY * center / C_KMS * rel_width,
            "eta0": np.clip(3.0 + 20.0 * (atm["depth"] - 0.45), 1.5, 12.0),
            "damping": np.clip(0.1 + 0.5 * (rel_width - 1.0), 0.03, 0.3),
            "s1": np.clip(atm["depth"] + 0.1, 0.4, 0.95),
            "velocity": atm["shift"] * C_KMS / center}


def _checked_settings(caller: str, ny: Any, nx: Any, seed: Any, noise: Any, model: str, pattern: str,
                      qu_form: str, line: Union[str, SpectralLine], psf_fwhm: Optional[float],
                      wavelengths: Optional[Sequence[float]],
                      instrument_fwhm: Any = INSTRUMENT_FWHM) -> Tuple[float, SpectralLine, float, np.ndarray]:
    """Check the arguments shared by :func:`synthetic_plage` and the synthetic series
    (messages start with ``caller``); return ``(noise, line, psf_fwhm [px], wavelengths)``."""
    fwhm_ok = isinstance(instrument_fwhm, (int, float, np.integer, np.floating)) and not isinstance(
        instrument_fwhm, bool) and non_negative(instrument_fwhm) is not None
    if not fwhm_ok:
        raise HashwfaError(f"{caller}: instrument_fwhm = {instrument_fwhm!r}; expected a finite FWHM >= 0 in mA "
                           "(0 for no instrument profile)")
    for name, value in (("ny", ny), ("nx", nx)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise HashwfaError(f"{caller}: {name} = {value!r}; expected an integer >= 2 (pixels)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HashwfaError(f"{caller}: seed = {seed!r}; expected a non-negative integer")
    checked = non_negative(noise)
    if checked is None:
        raise HashwfaError(f"{caller}: noise = {noise!r}; expected a finite sigma >= 0 in continuum units")
    noise = checked
    if model not in MODELS:
        raise HashwfaError(f"{caller}: model = {model!r} unknown; use one of {', '.join(MODELS)}")
    if pattern not in ("full", "triplet"):
        raise HashwfaError(f"{caller}: pattern = {pattern!r} unknown; use 'full' or 'triplet'")
    if qu_form not in QU_FORMS:
        raise HashwfaError(f"{caller}: qu_form = {qu_form!r} unknown; use one of {', '.join(QU_FORMS)}")
    line = get_line(line)
    if psf_fwhm is None:
        psf_fwhm = psf_fwhm_pixels(line)
    checked = non_negative(psf_fwhm)
    if checked is None:
        raise HashwfaError(f"{caller}: psf_fwhm = {psf_fwhm!r}; expected a finite FWHM >= 0 in pixels "
                           "(None for the CRISP default, 0 for no PSF)")
    psf_fwhm = checked
    wl = CRISP_WAVELENGTHS.copy() if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    if wl.ndim != 1 or wl.shape[0] < 2 or not np.all(np.diff(wl) > 0) or np.any(np.abs(wl) >= 100):
        raise HashwfaError(
            f"{caller}: wavelengths {wl!r}; expected a strictly increasing (nw,) axis in "
            "Angstrom relative to the line centre"
        )
    if model == "wfa" and qu_form == "second_derivative" and wl.shape[0] < 3:
        raise HashwfaError(f"{caller}: model 'wfa' with qu_form 'second_derivative' needs >= 3 wavelengths")
    return noise, line, psf_fwhm, wl


def _observe(intrinsic: FieldMaps, atm_intrinsic: Dict[str, np.ndarray], wl: np.ndarray, line: SpectralLine,
             model: str, pattern: str, qu_form: str, psf_fwhm: float,
             instrument_fwhm: float = INSTRUMENT_FWHM) -> Tuple[np.ndarray, FieldMaps, Dict[str, np.ndarray]]:
    """What the telescope sees of an intrinsic field and line maps, without noise.

    Returns ``(stokes (ny, nx, 4, nw), truth, line maps)``: the truth and the
    line maps are the PSF-weighted ones (see the module docstring).
    """
    # The truth: the PSF-weighted B_los, B_Q, B_U (B_t and azimuth follow from B_Q, B_U).
    blurred = _psf(np.stack([intrinsic.blos, intrinsic.bq, intrinsic.bu], axis=-1), psf_fwhm)
    truth = FieldMaps.from_bqbu(blos=blurred[..., 0], bq=blurred[..., 1], bu=blurred[..., 2])
    names = ("depth", "width", "shift")
    atm_blurred = _psf(np.stack([atm_intrinsic[k] for k in names], axis=-1), psf_fwhm)
    atm = {k: atm_blurred[..., i] for i, k in enumerate(names)}

    def absorption_of(maps: Dict[str, np.ndarray]):
        depth, width, shift = (maps[k][..., None] for k in names)
        return lambda dl: depth * np.exp(-(((dl - shift) / width) ** 2))

    if model == "milne_eddington":
        me = _me_atmosphere(atm_intrinsic, line.center)
        b = np.hypot(intrinsic.blos, intrinsic.bt)
        inclination = np.arctan2(intrinsic.bt, intrinsic.blos)
        sharp = np.stack(milne_eddington_stokes(
            wl, line, b, inclination, intrinsic.azimuth, me["doppler_width"], me["eta0"], me["damping"],
            me["velocity"], 1.0 - me["s1"], me["s1"], instrument_fwhm=instrument_fwhm, pattern=pattern), axis=2)
        stokes = _psf(sharp, psf_fwhm)
        names_me = [k for k, _, _ in _ME_MAPS]
        me_blurred = _psf(np.stack([me[k] for k in names_me], axis=-1), psf_fwhm)
        atm.update({k: me_blurred[..., i] for i, k in enumerate(names_me)})
    elif model == "zeeman":
        # Per-pixel profiles of the intrinsic atmosphere, then the telescope blurs the images.
        b = np.hypot(intrinsic.blos, intrinsic.bt)
        inclination = np.arctan2(intrinsic.bt, intrinsic.blos)
        sharp = np.stack(zeeman_stokes(absorption_of(atm_intrinsic), wl, line, b, inclination, intrinsic.azimuth,
                                       pattern=pattern), axis=2)  # (ny, nx, 4, nw)
        stokes = _psf(sharp, psf_fwhm)
    else:
        # Exact WFA profiles of the blurred (true) field and line maps.
        stokes_i = 1.0 - absorption_of(atm)(np.broadcast_to(wl, atm["depth"].shape + wl.shape))
        dI = intensity_derivative(stokes_i, wl)
        d2I = intensity_second_derivative(stokes_i, wl) if qu_form == "second_derivative" else None
        stokes_q, stokes_u, stokes_v = forward_stokes(dI, wl, line, blos=truth.blos, bq=truth.bq, bu=truth.bu,
                                                      qu_form=qu_form, d2I_dlambda2=d2I)
        stokes = np.stack([stokes_i, stokes_q, stokes_u, stokes_v], axis=2)
    return stokes, truth, atm


# ---------------------------------------------------------------------- public

def output_paths(directory: Union[str, Path], overwrite: bool) -> Dict[str, Path]:
    """``{"stokes", "wavelengths", "truth"}`` -> ``directory/<name>.fits``, the directory created.

    Raises:
        HashwfaError: a file exists and ``overwrite`` is False.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.fits" for name in ("stokes", "wavelengths", "truth")}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise HashwfaError(f"{path}: file exists; pass overwrite=True or choose another directory")
    return paths

def default_active(active_indices: Optional[Sequence[int]], wavelengths: Optional[Sequence[float]]
                   ) -> Optional[Sequence[int]]:
    """The synthetic data's active indices: those given, else :data:`CRISP_ACTIVE` on the
    default CRISP grid (``wavelengths`` None), else None (every wavelength)."""
    if active_indices is not None:
        return active_indices
    return CRISP_ACTIVE if wavelengths is None else None


def synthetic_plage_bytes(ny: int, nx: int, nw: int) -> int:
    """Lower bound of the bytes :func:`synthetic_plage` holds at once: two float64 cubes.

    Every model holds the profiles and their blurred (or stacked) copy of one
    cube's size together, most a third array too (tests/test_memory.py checks
    the bound against the measured peak).
    """
    return 2 * ny * nx * 4 * nw * 8


def synthetic_plage(
    ny: int = 200,
    nx: int = 178,
    seed: int = 0,
    noise: float = 1e-3,
    model: str = "zeeman",
    line: Union[str, SpectralLine] = "5173",
    wavelengths: Optional[Sequence[float]] = None,
    active_indices: Optional[Sequence[int]] = None,
    pattern: str = "full",
    qu_form: str = DEFAULT_QU_FORM,
    psf_fwhm: Optional[float] = None,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    instrument_fwhm: float = INSTRUMENT_FWHM,
    derivative: str = DEFAULT_DERIVATIVE,
    derivative_qu: Optional[str] = None,
) -> SyntheticPlage:
    """Make a synthetic plage observation and its true field.

    Args:
        ny, nx: image size in pixels (>= 2 each); 200 x 178 like the reference data.
        seed: integer seed; the result is the same for the same arguments.
        noise: Gaussian noise sigma in units of the continuum (>= 0), added to
            I, Q, U, V after the PSF; 1e-3 is a typical CRISP level.
        model: ``"zeeman"`` (full Zeeman pattern, not the WFA), ``"wfa"``
            (the WFA forward model exactly) or ``"milne_eddington"`` (the
            Milne-Eddington solution through a filtergraph); see the module
            docstring.
        line: the line (name or :class:`SpectralLine`); the intrinsic field
            and line maps do not depend on it, the default PSF does (through
            the diffraction limit).
        wavelengths: ``(nw,)`` Angstrom from line centre; default the CRISP
            grid -0.24..+0.24 A in 0.04 A steps.
        active_indices: the wavelength indices to fit; None (the default):
            :data:`CRISP_ACTIVE` (5, 6, 7, the reference study's) on the default
            CRISP grid, every wavelength on a given ``wavelengths`` grid.
        pattern: Zeeman pattern for ``model="zeeman"`` and
            ``"milne_eddington"``: ``"full"`` (the
            levels' anomalous splitting) or ``"triplet"`` (effective triplet).
        qu_form: Q/U form of ``model="wfa"``: ``"second_derivative"``
            (default) or ``"wing"`` (the reference report's formula); see
            :mod:`hashwfa.wfa.physics.weak_field`. Not used by ``"zeeman"``.
        psf_fwhm: FWHM [px] of the Gaussian PSF; None: the SST/CRISP value
            at the line (:func:`psf_fwhm_pixels`, 3.43 px at 5173 A); 0: no
            PSF (truth = intrinsic field).
        weights: loss weights of Stokes I, Q, U, V carried by the observation
            (they do not change the data).
        instrument_fwhm: FWHM [mA] of the Gaussian transmission profile of
            ``model="milne_eddington"`` (0: none); not used by the others.
        derivative, derivative_qu: the observation's derivatives
            (:class:`~hashwfa.wfa.observation.observation.Observation`); they do not change
            the data (``model="wfa"`` always uses the three-point one).

    Returns:
        :class:`SyntheticPlage` (observation in continuum units, truth, line
        maps, parameters, intrinsic field).

    Raises:
        HashwfaError: for a bad size, seed, noise level, model, pattern,
            qu_form, derivative, PSF width, instrument FWHM or wavelength axis.
    """
    check_derivative(derivative, "synthetic_plage: derivative")
    if derivative_qu is not None:
        check_derivative(derivative_qu, "synthetic_plage: derivative_qu")
    noise, line, psf_fwhm, wl = _checked_settings("synthetic_plage", ny, nx, seed, noise, model, pattern,
                                                 qu_form, line, psf_fwhm, wavelengths, instrument_fwhm)
    check_fits_in_memory(
        synthetic_plage_bytes(int(ny), int(nx), wl.shape[0]),
        f"synthetic_plage: the cube {ny} x {nx} x 4 x {wl.shape[0]}",
        "make ny and nx smaller (data.synthetic.ny, data.synthetic.nx in a config)",
    )
    rng_field, rng_atm, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3))
    intrinsic, envelope, conc = _make_field(rng_field, int(ny), int(nx))
    atm_intrinsic = _make_atmosphere(rng_atm, envelope, conc, line.center)
    stokes, truth, atm = _observe(intrinsic, atm_intrinsic, wl, line, model, pattern, qu_form, psf_fwhm,
                                  float(instrument_fwhm))
    if noise > 0:
        stokes = stokes + noise * rng_noise.standard_normal(stokes.shape)

    params = {"ny": int(ny), "nx": int(nx), "seed": int(seed), "noise": noise, "model": model,
              "line": line.name, "pattern": pattern, "qu_form": qu_form, "psf_fwhm": psf_fwhm,
              "pixel_scale": PIXEL_SCALE, "instrument_fwhm": float(instrument_fwhm)}
    obs = Observation(stokes, wl, line=line, active_indices=default_active(active_indices, wavelengths), weights=weights,
                      source=f"synthetic plage (seed={int(seed)}, model={model}, noise={noise:g})", unit="Ic",
                      derivative=derivative, derivative_qu=derivative_qu,
                      map_cards=synthetic_map_cards(int(ny), int(nx)))
    return SyntheticPlage(observation=obs, truth=truth, atmosphere=atm, parameters=params, intrinsic=intrinsic)
