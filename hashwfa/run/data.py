"""The data a run's config names: FITS files, an SST pipeline cube, or the synthetic plage or
series, as an :class:`~hashwfa.wfa.observation.observation.Observation` with its truth (synthetic
data) and the given noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from astropy.io import fits

from hashwfa import schema
from hashwfa.config.run_config import DEFAULT_LINE, RunConfig, SyntheticConfig
from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.noise import StokesNoise, given_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.synthetic.plage import CRISP_WAVELENGTHS, synthetic_plage
from hashwfa.wfa.synthetic.series import synthetic_series

__all__ = ["LoadedData", "load_data"]


@dataclass
class LoadedData:
    """The observation a config describes, with the truth when it is known.

    Attributes:
        observation: the :class:`hashwfa.wfa.observation.observation.Observation`.
        truth: for synthetic data, maps ``.blos .bq .bu .bt .azimuth``
            ``(ny, nx)``, or ``(nt, ny, nx)`` for a series (gauss, gauss^2,
            radians); None for real data.
        description: one line saying where the data came from.
        noise: the Stokes noise ``data.noise`` gives (checked against the
            data's wavelengths), or None: estimate it from the data.
    """

    observation: Observation
    truth: Optional[FieldMaps]
    description: str
    noise: Optional[StokesNoise] = None


def _has_line_keyword(path: str) -> bool:
    """Whether the FITS file's primary header has a LINE keyword."""
    return "LINE" in fits.getheader(path)


def load_data(config: RunConfig, valid: Optional[Any] = None, intensity_scale: Optional[float] = None) -> LoadedData:
    """Build the observation of ``config.data`` (FITS files, an SST cube, or the synthetic plage or series).

    A FITS or SST cube is mapped from its file, not read (a lazy
    :class:`~hashwfa.wfa.observation.observation.Observation`). ``valid``: the valid
    pixels as rank 0 of a data-parallel fit found them (the cube is then not
    scanned here), and ``intensity_scale`` the divisor of the cube it found
    (:attr:`~hashwfa.wfa.observation.observation.Observation.intensity_scale`; None:
    derived from the data); both ignored for synthetic data.
    """
    data = config.data
    if data.path is not None and data.wavelengths is None:
        try:
            obs = Observation.from_sst(data.path, line=config.line, active_indices=data.active_indices,
                                       weights=data.weights, valid=valid, intensity_scale=intensity_scale,
                                       derivative=config.physics.derivative,
                                       derivative_qu=config.physics.derivative_qu)
        except HashwfaError as exc:
            raise HashwfaError(f"{exc} (data.wavelengths is null, so data.path was read as an SST pipeline "
                               "cube; for any other FITS cube give data.wavelengths)") from None
        truth = None
        frames = f", {obs.nt} scans" if obs.is_series else ""
        description = f"SST cube {data.path}{frames}"
    elif data.path is not None:
        obs = Observation.from_fits(
            data.path,
            data.wavelengths,
            line=config.line,
            active_indices=data.active_indices,
            weights=data.weights,
            valid=valid,
            intensity_scale=intensity_scale,
            derivative=config.physics.derivative,
            derivative_qu=config.physics.derivative_qu,
        )
        truth = None
        description = f"FITS {data.path} (wavelengths {data.wavelengths}), line {obs.line.name}"
        if config.line is None:  # say where the line came from: it changes B by the Lande factor
            description += " (from the cube's LINE header)" if _has_line_keyword(data.path) else " (the default; no LINE header)"
    else:
        s = data.synthetic or SyntheticConfig()
        grid = CRISP_WAVELENGTHS if s.wavelengths is None else s.wavelengths
        # null = every wavelength (the Python generators' own default is the seed's three on the CRISP grid).
        active = tuple(range(len(grid))) if data.active_indices is None else data.active_indices
        if s.nt > 1:
            series = synthetic_series(
                nt=s.nt, ny=s.ny, nx=s.nx, seed=s.seed, noise=s.noise, model=s.model, line=config.line or DEFAULT_LINE,
                wavelengths=s.wavelengths, active_indices=active, flow=tuple(s.flow), azimuth_rate=s.azimuth_rate,
                cadence=s.cadence, instrument_fwhm=s.instrument_fwhm, derivative=config.physics.derivative,
                derivative_qu=config.physics.derivative_qu,
            )
            description = (f"synthetic series {s.nt}x{s.ny}x{s.nx} (flow {tuple(s.flow)} px/frame, "
                           f"every {s.cadence:g} s), model {s.model!r}, noise {s.noise:g}, seed {s.seed}")
            return LoadedData(observation=series.observation(weights=data.weights), truth=series.truth,
                              description=description)
        plage = synthetic_plage(
            ny=s.ny,
            nx=s.nx,
            seed=s.seed,
            noise=s.noise,
            model=s.model,
            line=config.line or DEFAULT_LINE,
            wavelengths=s.wavelengths,
            active_indices=active,
            weights=data.weights,
            instrument_fwhm=s.instrument_fwhm,
            derivative=config.physics.derivative,
            derivative_qu=config.physics.derivative_qu,
        )
        obs = plage.observation
        truth = plage.truth
        description = f"synthetic plage {s.ny}x{s.nx}, model {s.model!r}, noise {s.noise:g}, seed {s.seed}"
    noise = None if data.noise is None else given_noise(schema.to_plain(data.noise), obs.nw, "config key 'data.noise'")
    return LoadedData(observation=obs, truth=truth, description=description, noise=noise)

