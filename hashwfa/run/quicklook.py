"""The quick-look PNG of a run: maps, pixel-wise and regularised WFA maps, loss curves, errors.

For a time series (maps ``(nt, ny, nx)``) it shows one chosen frame and adds
a row with the time evolution of a few summary numbers: mean |B_los|, mean
B_t, and against the truth the B_los RMS and azimuth mean absolute errors
per frame, for the field and the pixel-wise WFA.

Units a reader of solar maps expects: the map axes in arcsec (helioprojective
x, y) when the maps' header has a helioprojective WCS that is not nominal (see
:mod:`hashwfa.run.map_header`), else in pixels; the azimuth in degrees, 0..180,
counted from +x towards +y of the image; a series' times as UT clock times
when the header has ``DATEREF``; the observation date in the title.

Uses matplotlib's object-oriented API on an Agg canvas (no pyplot, no global
state, no display needed).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from hashwfa.host.atomic import atomic_path
from hashwfa.errors import HashwfaError
from hashwfa.run.map_header import NOMINAL_WCSNAME
from hashwfa.wfa.physics.maps import AZIMUTH_SIGMA_CAP, FieldMaps, FieldSigmas
from hashwfa.wfa.physics.weak_field import azimuth_difference

__all__ = ["write_quicklook"]


def _limits(*maps: np.ndarray, symmetric: bool) -> tuple:
    # Robust limits shared by a row, so that the field and the WFA compare by eye.
    values = np.concatenate([np.asarray(m, dtype=float).ravel() for m in maps])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (-1.0, 1.0) if symmetric else (0.0, 1.0)
    if symmetric:
        v = float(np.percentile(np.abs(values), 99.5)) or 1.0
        return -v, v
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _show(fig: Figure, ax: Any, data: np.ndarray, title: str, cmap: str, vmin: float, vmax: float, unit: str) -> None:
    im = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(unit, fontsize=8)


#: How the azimuth panels say what the angle is.
AZIMUTH_LABEL = "azimuth [deg from +x towards +y]"


def sky_extent(header: Optional[Mapping[str, Any]], ny: int, nx: int) -> Optional[Tuple[float, float, float, float]]:
    """``(left, right, bottom, top)`` [arcsec] of maps ``(ny, nx)`` under the helioprojective WCS in
    ``header`` (keyword -> value; pixel edges, from the pixel scale at pixel (1, 1)), or None when the
    header has no such WCS or only the nominal one (then the axes count pixels)."""
    if not header or str(header.get("WCSNAME", "")) == NOMINAL_WCSNAME:
        return None
    if not (str(header.get("CTYPE1", "")).startswith("HPLN") and str(header.get("CTYPE2", "")).startswith("HPLT")):
        return None
    from astropy.io import fits
    from astropy.wcs import WCS

    cards = fits.Header()
    cards["NAXIS"], cards["NAXIS1"], cards["NAXIS2"] = 2, nx, ny
    for key, value in header.items():
        if key[:5] in ("CTYPE", "CUNIT", "CRPIX", "CRVAL", "CDELT") and key[5:] in ("1", "2") \
                or key[:2] in ("PC", "CD") and key[2:] in ("1_1", "1_2", "2_1", "2_2"):
            cards[key] = value
    try:
        # 0-based pixel (0, 0), one step along x, one along y; wcslib returns degrees.
        world = WCS(cards).wcs_pix2world(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 0)
    except Exception:  # an input WCS astropy cannot read: the maps are still drawn, in pixels
        return None
    arcsec = (np.mod(world + 180.0, 360.0) - 180.0) * 3600.0
    x0, y0 = arcsec[0]
    dx, dy = arcsec[1, 0] - x0, arcsec[2, 1] - y0
    if not (np.isfinite([x0, y0, dx, dy]).all() and dx != 0 and dy != 0):
        return None
    return (x0 - dx / 2, x0 + (nx - 0.5) * dx, y0 - dy / 2, y0 + (ny - 0.5) * dy)


def _sky_axes(ax: Any, extent: Optional[Tuple[float, float, float, float]]) -> None:
    """Put the map in ``ax`` on arcsec axes (``extent``), or label its pixel axes."""
    if extent is None:
        ax.set_xlabel("x [px]", fontsize=7)
        ax.set_ylabel("y [px]", fontsize=7)
        return
    for image in ax.get_images():
        image.set_extent(extent)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.xaxis.set_major_locator(MaxNLocator(4))  # _show took the pixel ticks away
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("helioprojective x [arcsec]", fontsize=7)
    ax.set_ylabel("helioprojective y [arcsec]", fontsize=7)


def _reference_time(header: Optional[Mapping[str, Any]]) -> Optional[datetime.datetime]:
    """``DATEREF`` of the header as a datetime (UTC), None when absent or not ISO 8601."""
    try:
        return datetime.datetime.fromisoformat(str(header["DATEREF"]).strip()) if header else None
    except (KeyError, ValueError):
        return None


def _clock(reference: Optional[datetime.datetime]) -> Callable[[float], str]:
    """Seconds since ``reference`` as an UT clock time ``HH:MM:SS``, or as seconds without a reference."""
    if reference is None:
        return lambda seconds: f"{seconds:.4g} s"
    return lambda seconds: (reference + datetime.timedelta(seconds=float(seconds))).strftime("%H:%M:%S UT")


def _observed(header: Optional[Mapping[str, Any]]) -> str:
    """"observed <date>" from DATE-OBS (or DATE-AVG, DATE-BEG), "" when the header has no date."""
    for key in ("DATE-OBS", "DATE-AVG", "DATE-BEG"):
        if header and key in header:
            return f"observed {str(header[key]).replace('T', ' ')[:19]} UT"
    return ""


def _frame(maps: Any, t: int) -> Any:
    """Frame ``t`` of ``(nt, ny, nx)`` :class:`FieldMaps` or :class:`FieldSigmas`."""
    return type(maps)(**{name: value[t] for name, value in maps.as_dict().items()})


def _time_evolution(fig: Figure, axes: Any, maps: FieldMaps, wfa: FieldMaps, truth: Optional[FieldMaps],
                    times: np.ndarray, frame: int, reference: Optional[datetime.datetime] = None) -> None:
    """One row of per-frame summary numbers against time, the shown frame marked."""
    def per_frame(values: np.ndarray) -> np.ndarray:
        return np.nanmean(values.reshape(values.shape[0], -1), axis=1)

    curves = [("mean |B_los| [G]", lambda m: per_frame(np.abs(m.blos))),
              ("mean B_t [G]", lambda m: per_frame(m.bt))]
    if truth is not None:
        curves += [("B_los RMS error [G]", lambda m: np.sqrt(per_frame((m.blos - truth.blos) ** 2))),
                   ("azimuth mean abs. error [deg]",
                    lambda m: np.degrees(per_frame(azimuth_difference(m.azimuth, truth.azimuth))))]
    for ax, (label, summary) in zip(axes, curves):
        ax.plot(times, summary(maps), "o-", color="C0", label="neural field", markersize=3)
        ax.plot(times, summary(wfa), "s--", color="C2", label="pixel-wise WFA", markersize=3)
        if truth is not None and "error" not in label:
            ax.plot(times, summary(truth), "-", color="k", label="truth", linewidth=1)
        ax.axvline(times[frame], color="0.6", linewidth=0.8)
        if reference is None:
            ax.set_xlabel("time [s]")
        else:
            clock = _clock(reference)
            ax.xaxis.set_major_locator(MaxNLocator(4))  # HH:MM:SS labels are wide
            ax.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds)[:8]))
            ax.tick_params(axis="x", labelsize=7)
            ax.set_xlabel(f"time [UT, {reference:%Y-%m-%d}]")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[len(curves):]:
        ax.set_axis_off()


def write_quicklook(
    path: Union[str, Path],
    maps: FieldMaps,
    wfa: FieldMaps,
    history: Mapping[str, Mapping[str, List[float]]],
    *,
    truth: Optional[FieldMaps] = None,
    sigmas: Optional[FieldSigmas] = None,
    wfa_sigmas: Optional[FieldSigmas] = None,
    regularized: Optional[FieldMaps] = None,
    title: str = "",
    dpi: int = 100,
    times: Optional[np.ndarray] = None,
    frame: Optional[int] = None,
    header: Optional[Mapping[str, Any]] = None,
) -> None:
    """Write the quick-look PNG atomically.

    Rows: the neural field (B_los, B_t, azimuth), the pixel-wise WFA, the
    regularised WFA when given (last column: its B_los error when ``truth``
    is given), when ``truth`` is given the errors of the field against it
    (last column: the pixel-wise WFA's B_los error), and when ``sigmas`` is
    given the field's sigma maps (with the pixel-wise WFA's sigma of B_los in
    the last column when ``wfa_sigmas`` is given). The last column of the
    first two rows shows the loss (and learning rate) per epoch of both
    phases. For a series, the map rows show frame ``frame`` and a last row
    the time evolution (see the module docstring).

    Args:
        maps, wfa, truth: the neural field's, the pixel-wise WFA's and the
            true maps (truth: synthetic data only), (ny, nx) or a series
            (nt, ny, nx).
        sigmas, wfa_sigmas: one-sigma maps of the field and of the
            pixel-wise WFA (:class:`FieldSigmas`), or None; like the maps.
        regularized: the regularised WFA's maps, like the maps, or None.
        history: ``{"blos": {"loss": [...], "lr": [...]}, "bqbu": {...}}``.
        title: the figure's title (version, data, final loss).
        times: ``(nt,)`` frame times [s] of a series (default: frame numbers),
            since ``DATEREF`` when ``header`` has it.
        frame: the frame to show (default the middle one, ``nt // 2``).
        header: the maps' header cards, keyword -> value (their WCS, dates:
            :func:`hashwfa.run.map_header.map_header`), or None: pixel axes, no date.
    """
    observed = _observed(header)
    if observed:
        title = f"{title}; {observed}" if title else observed
    reference = _reference_time(header)
    series = maps.blos.ndim == 3
    if series:
        nt = maps.blos.shape[0]
        frame = nt // 2 if frame is None else int(frame)
        if not 0 <= frame < nt:
            raise HashwfaError(f"quick-look frame {frame} out of range: the series has frames 0..{nt - 1}")
        times = np.arange(nt, dtype=float) if times is None else np.asarray(times, dtype=float)
        all_maps, all_wfa, all_truth = maps, wfa, truth
        maps, wfa = _frame(maps, frame), _frame(wfa, frame)
        truth = None if truth is None else _frame(truth, frame)
        sigmas = None if sigmas is None else _frame(sigmas, frame)
        wfa_sigmas = None if wfa_sigmas is None else _frame(wfa_sigmas, frame)
        regularized = None if regularized is None else _frame(regularized, frame)
        title = f"{title}  [frame {frame} of {nt}, t = {_clock(reference)(times[frame])}]".strip()
    sources = [("neural field", maps), ("pixel-wise WFA", wfa)]
    if regularized is not None:
        sources.append(("regularised WFA", regularized))
    rows = len(sources) + (truth is not None) + (sigmas is not None) + int(series)
    height = 4.2 * rows
    fig = Figure(figsize=(16, height), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 4)
    if title:
        fig.suptitle(title, fontsize=11)
    if series:
        _time_evolution(fig, axes[-1], all_maps, all_wfa, all_truth, times, frame, reference)

    blos_lim = _limits(maps.blos, wfa.blos, symmetric=True)
    bt_lim = _limits(maps.bt, wfa.bt, symmetric=False)
    for row, (label, src) in enumerate(sources):
        _show(fig, axes[row, 0], src.blos, f"{label}: B_los", "RdBu_r", *blos_lim, "G")
        _show(fig, axes[row, 1], src.bt, f"{label}: B_t", "magma", *bt_lim, "G")
        # Azimuth is defined modulo 180 deg: a cyclic colour map shows no false edge at 0/180.
        _show(fig, axes[row, 2], np.degrees(src.azimuth), f"{label}: {AZIMUTH_LABEL}", "twilight", 0.0, 180.0, "deg")

    if truth is not None:
        err: Dict[str, np.ndarray] = {
            "blos": maps.blos - truth.blos,
            "bt": maps.bt - truth.bt,
            "azimuth": azimuth_difference(maps.azimuth, truth.azimuth),
        }
        wfa_blos_err = wfa.blos - truth.blos
        lim = _limits(err["blos"], wfa_blos_err, symmetric=True)
        last = len(sources)

        def rms(d: np.ndarray) -> float:
            return float(np.sqrt(np.nanmean(np.asarray(d) ** 2)))

        _show(fig, axes[last, 0], err["blos"], f"field - true B_los (rms {rms(err['blos']):.3g} G)", "RdBu_r", *lim, "G")
        _show(
            fig, axes[last, 1], err["bt"], f"field - true B_t (rms {rms(err['bt']):.3g} G)", "RdBu_r",
            *_limits(err["bt"], symmetric=True), "G",
        )
        # In degrees, as the benchmark and the main job report the azimuth error.
        az_err_deg = np.degrees(np.abs(err["azimuth"]))
        _show(
            fig, axes[last, 2], az_err_deg, f"|field - true azimuth| mod 180 (rms {rms(az_err_deg):.3g} deg)",
            "viridis", 0.0, 90.0, "deg",
        )
        _show(
            fig, axes[last, 3], wfa_blos_err, f"WFA - true B_los (rms {rms(wfa_blos_err):.3g} G)", "RdBu_r", *lim, "G"
        )
        if regularized is not None:
            reg_err = regularized.blos - truth.blos
            _show(fig, axes[2, 3], reg_err, f"regularised WFA - true B_los (rms {rms(reg_err):.3g} G)",
                  "RdBu_r", *lim, "G")
    if regularized is not None and truth is None:
        axes[2, 3].axis("off")

    if sigmas is not None:
        row = len(sources) + (truth is not None)
        # Sigmas share the colour scale of the field's own sigma (the WFA's is much larger).
        lim = (0.0, _limits(sigmas.blos, symmetric=False)[1])
        _show(fig, axes[row, 0], sigmas.blos, "field: sigma of B_los", "cividis", *lim, "G")
        _show(fig, axes[row, 1], sigmas.bt, "field: sigma of B_t", "cividis",
              0.0, _limits(sigmas.bt, symmetric=False)[1], "G")
        _show(fig, axes[row, 2], np.degrees(sigmas.azimuth), "field: sigma of azimuth", "cividis",
              0.0, float(np.degrees(AZIMUTH_SIGMA_CAP)), "deg")
        if wfa_sigmas is not None:
            _show(fig, axes[row, 3], wfa_sigmas.blos, "pixel-wise WFA: sigma of B_los", "cividis",
                  0.0, _limits(wfa_sigmas.blos, symmetric=False)[1], "G")
        else:
            axes[row, 3].set_axis_off()

    extent = sky_extent(header, *maps.blos.shape)
    for ax in axes[:rows - int(series)].ravel():
        if ax.get_images():
            _sky_axes(ax, extent)

    ax = axes[0, 3]
    offset = 0
    for phase, label, colour in (("blos", "phase 1: B_los (V)", "C0"), ("bqbu", "phase 2: B_Q, B_U (Q, U)", "C1")):
        loss = history.get(phase, {}).get("loss", [])
        ax.semilogy(np.arange(offset, offset + len(loss)), loss, color=colour, label=label)
        offset += len(loss)
    ax.set_xlabel("epoch (both phases)")
    ax.set_ylabel("training loss")
    ax.set_title("loss per epoch", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1, 3]
    offset = 0
    for phase, colour in (("blos", "C0"), ("bqbu", "C1")):
        lr = history.get(phase, {}).get("lr", [])
        ax.semilogy(np.arange(offset, offset + len(lr)), lr, color=colour)
        offset += len(lr)
    ax.set_xlabel("epoch (both phases)")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate per epoch", fontsize=9)

    # Fixed margins in inches instead of a layout engine: the constrained layout measured every
    # tick label of every panel again and took half of the picture's time (BENCHMARKS.md).
    fig.subplots_adjust(left=0.5 / 16, right=1 - 0.75 / 16, bottom=0.5 / height, top=1 - 0.9 / height,
                        wspace=0.55, hspace=0.3)
    with atomic_path(path) as tmp:
        # zlib level 3 instead of Pillow's 6: the noisy maps compress hardly better at 6, and
        # encoding them took half of the figure's save (BENCHMARKS.md).
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 3})
