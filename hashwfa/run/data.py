"""The data a run's config names: FITS files, an SST pipeline cube, or the synthetic plage or
series, as an :class:`~hashwfa.wfa.observation.observation.Observation` with its truth (synthetic
data) and the given noise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from astropy.io import fits

from hashwfa import schema
from hashwfa.config.run_config import DEFAULT_LINE, RunConfig, SyntheticConfig
from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.noise import StokesNoise, given_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.lines import LINES
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.synthetic.plage import CRISP_WAVELENGTHS, synthetic_plage
from hashwfa.wfa.synthetic.series import synthetic_series

__all__ = ["LoadedData", "load_data", "load_array"]


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
        label: the data in a few words for a figure's title (file names
            without their directories); "" means the description.
    """

    observation: Observation
    truth: Optional[FieldMaps]
    description: str
    noise: Optional[StokesNoise] = None
    label: str = ""


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
        label = f"SST cube {Path(data.path).name}{frames}"
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
        label = f"FITS {Path(data.path).name}, line {obs.line.name}"
        if config.line is None:  # say where the line came from: it changes B by the Lande factor
            description += " (from the cube's LINE header)" if _has_line_keyword(data.path) else " (the default; no LINE header)"
    else:
        s = data.synthetic or SyntheticConfig()
        grid = CRISP_WAVELENGTHS if s.wavelengths is None else s.wavelengths
        # null = every wavelength (the Python generators' own default is the reference report's three on the CRISP grid).
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
            obs, truth = series.observation(weights=data.weights), series.truth
        else:
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
        label = ""
    return LoadedData(observation=obs, truth=truth, description=description, noise=_config_noise(config, obs),
                      label=label)


def _config_noise(config: RunConfig, obs: Observation) -> Optional[StokesNoise]:
    """The noise ``data.noise`` gives, checked against the observation's wavelengths, or None."""
    noise = config.data.noise
    return None if noise is None else given_noise(schema.to_plain(noise), obs.nw, "config key 'data.noise'")


def load_array(config: RunConfig, stokes: Any, wavelengths: Any, *, mask: Optional[Any] = None,
               times: Optional[Any] = None, unit: str = "", source: str = "array") -> LoadedData:
    """The observation of a Stokes cube in memory, fitted as ``config`` says (``config.data.path`` unused).

    Args:
        config: the validated config; its ``line`` must be set, and its
            ``data.active_indices``, ``data.weights``, ``data.noise`` and the
            ``physics`` derivatives apply.
        stokes: ``(ny, nx, 4, nw)`` or ``(nt, ny, nx, 4, nw)``, as for
            :class:`~hashwfa.wfa.observation.observation.Observation`.
        wavelengths: ``(nw,)`` Angstrom relative to the line centre (or
            absolute Angstrom / nm, converted with a warning).
        mask, times, unit: as for :class:`~hashwfa.wfa.observation.observation.Observation`.
        source: the data's name in messages.
    """
    if config.line is None:
        raise HashwfaError(f"{source}: no line given. Fix: name the observed line, one of "
                           + ", ".join(repr(k) for k in LINES))
    obs = Observation(stokes, wavelengths, line=config.line, active_indices=config.data.active_indices,
                      weights=config.data.weights, mask=mask, source=source, unit=unit, times=times,
                      derivative=config.physics.derivative, derivative_qu=config.physics.derivative_qu)
    shape = "x".join(str(n) for n in obs.stokes.shape)
    description = f"{source} {shape}, line {obs.line.name}"
    return LoadedData(observation=obs, truth=None, description=description, noise=_config_noise(config, obs),
                      label=source)

