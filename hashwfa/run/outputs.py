"""Writing (and reading back) a run's files, atomically.

An output directory holds:

``field.fits``      the maps: primary HDU with the provenance header (and the
                    resolved config as HISTORY cards), image extensions
                    BLOS, BQ, BU, BTRANS, AZIMUTH (the neural field; BUNIT
                    G, G2, G2, G, rad), the same with WFA_ (the pixel-wise
                    WFA), REG_ (the spatially regularised WFA, its weights
                    in the primary header: :func:`regularized_cards`) and,
                    for synthetic data, TRUE_ (the truth), each (ny, nx)
                    float32; VALID (1 = pixel used in the fit). Every map
                    has the Level-2 header of :mod:`hashwfa.run.map_header`
                    (WCS, dates, observer, line; a series' time axis), so
                    SunPy, astropy and ndcube open it with its coordinates
``history.json``    loss and learning rate per epoch and phase, final loss,
                    timings, errors against the truth when known
``config.json``     the resolved config (plain JSON; a valid config file)
``model.pt``        both fields' state_dicts + what rebuilds them
                    (:func:`load_model`)
``quicklook.png``   see :mod:`hashwfa.run.quicklook`
``checkpoint.pt``   only while a run is unfinished: what ``--resume`` reads
``run.log``         timestamped: the config, the data, the line, the active
                    wavelengths, the noise, notes, warnings, the phases
                    (:class:`hashwfa.run.run_log.RunLog`)

Every file is written to a temporary file in the same directory and moved
into place with :func:`os.replace`, so an interrupt never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from astropy.io import fits

from hashwfa.encodings.registry import REGISTRY
from hashwfa.host.atomic import atomic_path, make_directory
from hashwfa.errors import HashwfaError, OutputWriteError
from hashwfa.schema import flatten
from hashwfa.training.model import fields_from_bundle
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas, empty_image
from hashwfa.wfa.observation.fits_files import provenance_cards
from hashwfa.wfa.observation.stokes_fits import DATE_KEYS, times_table
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.baselines.regularized import RegularizedResult

__all__ = [
    "FIELD_FITS",
    "HISTORY_JSON",
    "CONFIG_JSON",
    "MODEL_PT",
    "QUICKLOOK_PNG",
    "CHECKPOINT_PT",
    "RUN_LOG",
    "OUTPUT_FILES",
    "write_json",
    "read_json",
    "save_torch",
    "load_checkpoint",
    "load_model",
    "write_field_fits",
    "header_text",
    "regularized_cards",
    "fit_cards",
    "history_record",
    "RunProducts",
]

FIELD_FITS = "field.fits"
HISTORY_JSON = "history.json"
CONFIG_JSON = "config.json"
MODEL_PT = "model.pt"
QUICKLOOK_PNG = "quicklook.png"
CHECKPOINT_PT = "checkpoint.pt"
RUN_LOG = "run.log"
#: The files a run writes (the checkpoint only exists while it is unfinished).
OUTPUT_FILES = (FIELD_FITS, HISTORY_JSON, CONFIG_JSON, MODEL_PT, QUICKLOOK_PNG, CHECKPOINT_PT, RUN_LOG)

def header_text(text: str) -> str:
    """``text`` made fit for a FITS header: printable ASCII, every other character escaped.

    FITS allows only ASCII 32..126 in a card. A character outside it (``é``
    in a data path, a newline) becomes ``\\uXXXX`` (``\\UXXXXXXXX`` above
    U+FFFF), as in a JSON or Python string; a backslash stays as it is. The
    unescaped text is in ``config.json`` and ``history.json`` (UTF-8).
    """
    return "".join(c if " " <= c <= "~" else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
                   for c in text)


def _header_value(value: Any) -> Any:
    """A card's value or ``(value, comment)`` with every string passed through :func:`header_text`."""
    if isinstance(value, tuple):
        return tuple(_header_value(v) for v in value)
    return header_text(value) if isinstance(value, str) else value


def _strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None``: strict JSON has no NaN or Infinity."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    return obj


def write_json(path: Union[str, Path], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON, atomically (non-finite floats become ``null``)."""
    text = json.dumps(_strict_json(obj), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: Union[str, Path]) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_torch(path: Union[str, Path], obj: Any) -> None:
    """:func:`torch.save` ``obj`` atomically (model bundles, checkpoints)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            # torch's zip writer reports a full disk or a vanished directory as a
            # RuntimeError without the cause ("[enforce fail at inline_container.cc:672]
            # . unexpected pos ..."): name the file and the likely causes instead.
            raise OutputWriteError(
                f"cannot write '{path}': the write failed (full disk, quota, or the directory gone; "
                f"torch: {_first_line(exc)}). Fix: free disk space in '{Path(path).parent}' "
                "(or choose another --out) and continue with --resume.") from exc


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message (torch's messages run over many lines)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


# Sentences of torch's refusal of a pickled object that advise loading it anyway.
_UNSAFE_ADVICE = ("weights_only", "Weights only load failed", "will likely succeed", "trusted source",
                  "Check the documentation", "allowlist", "add_safe_globals", "safe_globals")


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in one line, without torch's advice
    to load the file with ``weights_only=False`` (which could run any code the file holds)."""
    text = str(exc)
    if "weights_only" in text or "Weights only" in text:
        kept = [line.strip() for line in text.splitlines()
                if line.strip() and not any(words in line for words in _UNSAFE_ADVICE)]
        detail = f" ({'; '.join(kept)})" if kept else ""
        return (f"it holds Python objects other than tensors and plain data{detail}; hashwfa never loads "
                "such a file, as loading it could run any code it holds")
    return f"{type(exc).__name__}: {_first_line(exc)}"


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint onto the CPU (the solver moves it to its device).

    Raises:
        HashwfaError: the file is not a readable checkpoint.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HashwfaError(
            f"cannot read the checkpoint '{path}' ({_load_failure(exc)}). "
            "Fix: start the run again with --overwrite."
        ) from None


def load_model(path: Union[str, Path], backend: str = "torch", device: str = "cpu") -> Dict[str, Any]:
    """Rebuild the trained fields from ``model.pt``, on either backend.

    Returns:
        ``{"blos": NeuralField, "bqbu": NeuralField, "scales": {...}, "config": {...}}``;
        ``fields["blos"](x) * scales["blos"]`` is B_los in gauss at
        coordinates ``x`` (N, 2) in [-1, 1] (columns y, x), or (N, 3)
        (columns t, y, x) for a series fitted jointly. A series fitted frame
        by frame (``training.frames = "independent"``) gives
        ``{"frames": [one such dict per frame]}``.
    """
    path = Path(path)
    if not path.is_file():
        raise HashwfaError(f"no model file '{path}'. Fix: give the model.pt of a finished hashwfa-train run.")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and EOF errors all mean "not a model file"
        raise HashwfaError(
            f"'{path}' is not a readable hashwfa model ({_load_failure(exc)}). "
            "Fix: give the model.pt of a finished hashwfa-train run."
        ) from None
    if isinstance(bundle, dict) and isinstance(bundle.get("frames"), list):
        return {"frames": [_fields_of(frame, path, backend, device) for frame in bundle["frames"]]}
    return _fields_of(bundle, path, backend, device)


def _fields_of(bundle: Any, path: Path, backend: str, device: str) -> Dict[str, Any]:
    """The fields, scales and config of one model bundle (see :func:`load_model`)."""
    missing = [k for k in ("fields", "scales", "config") if not isinstance(bundle, dict) or k not in bundle]
    if missing:
        raise HashwfaError(f"'{path}' is not a hashwfa model: it lacks {', '.join(missing)}.")
    try:
        fields = fields_from_bundle(bundle, backend=backend, device=device)
    except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise HashwfaError(f"'{path}' holds a damaged hashwfa model ({type(exc).__name__}: {exc}).") from None
    return {**fields, "scales": dict(bundle["scales"]), "config": bundle["config"]}


def active_wavelengths_text(observation: Any) -> str:
    """The fit's wavelengths as text: offsets from the line centre [A], comma-separated, e.g. ``"-0.04,0,0.04"``."""
    return ",".join(f"{w:.4g}" for w in observation.active_wavelengths)


def fit_cards(cfg: Any, result: Any, observation: Any, description: str, world_size: int,
              penalties: Mapping[str, Any]) -> Dict[str, Any]:
    """The primary header cards saying how the maps were made: keyword -> (value, comment).

    Args:
        cfg: the run's :class:`~hashwfa.config.run_config.RunConfig`.
        result: the solver's :class:`~hashwfa.training.result.SolverResult`.
        observation: the fitted :class:`~hashwfa.wfa.observation.observation.Observation`.
        description: where the data came from (one line; DATASRC).
        world_size: processes of the fit.
        penalties: phase -> :class:`~hashwfa.training.penalty.PenaltyWeights` of the fit's smoothness terms.
    """
    enc = cfg.encoding
    return {
        "ENCVER": (enc.version, "hashwfa encoding version V0..V6"),
        "BACKEND": (result.backend, "grid backend used"),
        "DEVICE": (result.device, "torch device used"),
        "SEED": (cfg.training.seed, "training.seed"),
        "FINLOSS": (result.final_loss, "final loss, V+Q+U, reference protocol"),
        "LINE": (observation.line.name, "spectral line"),
        "ISCALE": (observation.intensity_scale, "the fit read the Stokes cube divided by this"),
        "DERIV": (observation.derivative, "dI/dlambda (V): physics.derivative"),
        "DERIVQU": (observation.derivative_qu, "d2I/dlambda2 (Q, U): physics.derivative_qu"),
        "NACTIVE": (len(observation.active_indices), "wavelengths fitted (data.active_indices)"),
        "ACTIVE": ",".join(str(i) for i in observation.active_indices),  # may be long: no comment
        "ACTIVEWL": active_wavelengths_text(observation),  # A from the line centre; may be long
        "DATASRC": description,  # may be long: no comment
        "NLEVELS": (enc.n_levels, "encoding.n_levels"),
        "MAXRES": (enc.max_resolution, "encoding.max_resolution"),
        "EPOCHS": (cfg.training.epochs_per_phase, "training.epochs_per_phase"),
        "WORLDSZ": (world_size, "processes (torch.distributed ranks) of the fit"),
        **{f"MAXRES{k}": (cfg.solver.field_encoding(p).max_resolution, f"max_resolution of the {p} field")
           for p, k in (("blos", "V"), ("bqbu", "QU"))},
        **{f"PLNRES{k}": (e.plane_resolution or e.max_resolution, f"V6 plane_resolution of the {p} field")
           for p, k in (("blos", "V"), ("bqbu", "QU"))
           for e in (cfg.solver.field_encoding(p),) if REGISTRY[e.version].plane},
        **{f"PEN{k}{c}": (getattr(penalties[p], a), f"regularization {p}: {a}")
           for p, k in (("blos", "V"), ("bqbu", "QU")) if p in penalties
           for c, a in (("G2", "squared_gradient"), ("TV", "total_variation"), ("EPS", "tv_eps"))},
    }


def history_record(result: Any, metrics: Mapping[str, float], reg: Optional[RegularizedResult], description: str,
                   intensity_scale: float, uncertainty: Mapping[str, Any], penalties: Mapping[str, Any],
                   world_size: int) -> Dict[str, Any]:
    """The content of ``history.json``: losses and learning rates per phase and epoch, timings,
    errors against the truth (G, G, deg; None for real data), the regularised WFA's weights, the
    sigma maps' summary and the smoothness weights."""
    return {
        "final_loss": result.final_loss,
        "phases": result.history,
        "timings_s": result.timings,
        "errors_vs_truth": dict(metrics) or None,
        "regularized_wfa": None if reg is None else {
            "alpha_v": reg.alpha_v, "alpha_qu": reg.alpha_qu, "rule_v": reg.rule_v, "rule_qu": reg.rule_qu,
            "noise_v": reg.noise_v, "noise_qu": reg.noise_qu, "noise_estimated": reg.noise_estimated,
            "method": reg.method},
        "device": result.device,
        "backend": result.backend,
        "data": description,
        "intensity_scale": intensity_scale,
        "uncertainty": dict(uncertainty),
        "regularization": {p: w.as_dict() for p, w in penalties.items()},
        "world_size": world_size,
    }


def regularized_cards(reg: RegularizedResult) -> Dict[str, Any]:
    """Header cards describing the regularised WFA: keyword -> (value, comment).

    ``REGALPV``/``REGALPQU``: the relative smoothness weights of B_los and of
    B_Q, B_U; ``REGRULV``/``REGRULQU``: how each was chosen (discrepancy,
    gcv, given); ``REGSIGV``/``REGSIGQU``: the noise sigma the discrepancy
    rule used (only when it did); ``REGSIGES``: whether it was estimated;
    ``REGMETH``: the sparse solver.
    """
    cards: Dict[str, Any] = {
        "REGALPV": (reg.alpha_v, "reg. WFA weight of B_los (relative)"),
        "REGALPQU": (reg.alpha_qu, "reg. WFA weight of B_Q, B_U (relative)"),
        "REGRULV": (reg.rule_v, "how REGALPV was chosen"),
        "REGRULQU": (reg.rule_qu, "how REGALPQU was chosen"),
        "REGMETH": (reg.method, "reg. WFA sparse solver"),
    }
    if reg.noise_v is not None:
        cards["REGSIGV"] = (reg.noise_v, "V noise sigma of the rule [intensity]")
    if reg.noise_qu is not None:
        cards["REGSIGQU"] = (reg.noise_qu, "Q, U noise sigma of the rule [intensity]")
    if reg.noise_v is not None or reg.noise_qu is not None:
        cards["REGSIGES"] = (reg.noise_estimated, "noise sigma estimated from the data")
    return cards


def write_field_fits(
    path: Union[str, Path],
    maps: FieldMaps,
    wfa: FieldMaps,
    *,
    provenance: Mapping[str, Any],
    config: Mapping[str, Any],
    valid: Optional[np.ndarray] = None,
    truth: Optional[FieldMaps] = None,
    sigmas: Optional[FieldSigmas] = None,
    wfa_sigmas: Optional[FieldSigmas] = None,
    noise: Optional[StokesNoise] = None,
    regularized: Optional[RegularizedResult] = None,
    weak_field: Optional[np.ndarray] = None,
    times: Optional[np.ndarray] = None,
    map_cards: Sequence[Tuple[str, Any, str]] = (),
    notes: Sequence[str] = (),
    tables: Sequence[fits.BinTableHDU] = (),
) -> None:
    """Write ``field.fits`` atomically, one map and one frame at a time.

    The extensions are written first with their headers and zero data (no
    memory), then each map is converted to float32 (VALID to uint8) one
    frame (ny, nx) at a time and written into its place: the file is the
    same, byte for byte, as one ``HDUList.writeto`` of float32 copies, while
    this holds one frame's copy instead of every map's. The maps may be any
    arrays indexable by frame (in memory, or memory maps of scratch files).

    Args:
        maps: the neural field's maps, (ny, nx), or (nt, ny, nx) for a time
            series (time along the first numpy axis, FITS axis 3).
        wfa: the pixel-wise WFA maps (written as ``WFA_*``).
        regularized: the regularised WFA (maps written as ``REG_*``, its
            weights as header cards, :func:`regularized_cards`) or None.
        provenance: header keywords -> value or (value, comment), e.g.
            ``{"ENCVER": (1, "...")}`` (keys of at most 8 characters).
        config: the resolved config (plain JSON), written as HISTORY cards
            ``key.path = value``, one per key.
        valid: bool like the maps, pixels used in the fit (written as VALID).
        weak_field: like the maps, the Zeeman splitting of the field's |B| over the line's width
            (:mod:`hashwfa.wfa.physics.validity`; written as WEAKFLD) or None.
        truth: the true maps (synthetic data, written as ``TRUE_*``) or None.
        sigmas: one-sigma maps of the neural field (``SIGMA_*``) or None.
        wfa_sigmas: one-sigma maps of the pixel-wise WFA (``WFA_SIGMA_*``) or None.
        noise: the Stokes noise the sigmas assume (header ``NOISE_I`` .. ``NOISE_V``,
            ``NOISEMTH``) or None.
        times: ``(nt,)`` frame times [s] of a series, written as a ``TIMES``
            table (column ``TIME``); None when unknown or for one frame.
        map_cards: ``(keyword, value, comment)`` cards for every map's
            header: the input's (its spatial WCS for FITS axes 1 = x and 2 =
            y, DATEREF and other dates), or the Level-2 header that
            :func:`hashwfa.run.map_header.map_header` makes of them (WCS,
            observer, line, time axis); dates also into the primary header.
        notes: sentences on what the reader assumed or left out (e.g. SST
            cavity maps), written as COMMENT cards of the primary header.
        tables: binary tables the map cards refer to (the ``WCS-TAB`` of a
            tabulated time axis), appended after ``TIMES``.
    """
    primary = fits.PrimaryHDU()
    header = primary.header
    # Every string that reaches a card goes through header_text: a data path
    # with a non-ASCII character must not fail the write after the whole fit.
    for key, value, comment in provenance_cards():
        header[key] = (value, comment)
    for key, value in provenance.items():
        header[key] = _header_value(value)
    if noise is not None:
        for key, value in noise.header_cards().items():
            header[key] = _header_value(value)
    if regularized is not None:
        for key, value in regularized_cards(regularized).items():
            header[key] = _header_value(value)
    header.add_comment("Maps: BLOS, BQ, BU, BTRANS, AZIMUTH = neural field; WFA_* = pixel-wise")
    header.add_comment("weak-field approximation; REG_* = spatially regularised WFA (weights")
    header.add_comment("REGALPV, REGALPQU); TRUE_* = the truth (synthetic data only).")
    series = maps.blos.ndim == 3
    if series:
        header["HWAXES"] = ("T,Y,X", "numpy order of the maps (FITS NAXIS3..1)")
        header.add_comment("Time series: maps (nt, ny, nx), frame along FITS axis 3; frame times [s]")
        header.add_comment("in the TIMES table (since DATEREF when given), and as the maps' time axis")
        header.add_comment("(CTYPE3) when they have one.")
    map_cards = [(key, *_header_value((value, comment))) for key, value, comment in map_cards]
    for key, value, comment in map_cards:
        if key in DATE_KEYS:
            header[key] = (value, comment)
    for note in notes:
        header.add_comment(header_text(note))
    header.add_history("Resolved config (also in config.json), one key per card:")
    for key, value in flatten(config).items():
        header.add_history(header_text(f"{key} = {json.dumps(value)}"))

    # Every extension is written with its header and zeros (a view that takes no
    # memory), then its data are filled in frame by frame from the float64 maps:
    # no float32 copy of the whole series is ever made. The zeros reserve the
    # file's blocks, so a full disk fails the first write (OutputWriteError) and
    # not the filling.
    hdus: list = [primary]
    sources: list = []  # (extension index, the map: an array (ny, nx) or (nt, ny, nx))
    for group, prefix in ((maps, ""), (wfa, "WFA_"), (sigmas, ""), (wfa_sigmas, "WFA_"),
                          (None if regularized is None else regularized.maps, "REG_"), (truth, "TRUE_")):
        if group is None:
            continue
        for hdu, array in zip(group.to_hdus(prefix, empty=True), group.as_dict().values()):
            sources.append((len(hdus), array))
            hdus.append(hdu)
    if valid is not None:
        hdu = fits.ImageHDU(empty_image(np.shape(valid), np.uint8), name="VALID")
        hdu.header["BUNIT"] = ("", "1 = pixel used in the fit (mask and finite)")
        sources.append((len(hdus), valid))
        hdus.append(hdu)
    if weak_field is not None:
        hdu = fits.ImageHDU(empty_image(np.shape(weak_field), np.float32), name="WEAKFLD")
        hdu.header["BUNIT"] = ("", "Zeeman splitting of |B| / line width from I")
        hdu.header.add_comment("WFA holds where WEAKFLD << 1 (hashwfa.wfa.physics.validity)")
        sources.append((len(hdus), weak_field))
        hdus.append(hdu)
    for hdu in hdus[1:]:
        for key, value, comment in map_cards:
            hdu.header[key] = (value, comment)
    if series and times is not None:
        hdus.append(times_table(times))
    hdus.extend(tables)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)  # atomic_path created it, empty
        _fill_images(tmp, sources)


def _fill_images(path: Path, sources: Sequence[Tuple[int, np.ndarray]]) -> None:
    """Write each map into the data of its extension (written as zeros) of the FITS file ``path``, frame by frame.

    ``sources``: (extension index, map) pairs; each map is converted to its
    extension's type (float32 or uint8, big-endian) one frame (ny, nx) at a
    time and written in place (plain writes, not a memory map, so that the
    file's pages do not count in this process's memory).
    """
    with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
        places = [(hdul.fileinfo(index)["datLoc"], hdul[index].header["BITPIX"]) for index, _ in sources]
    with open(path, "r+b") as f:
        for (offset, bitpix), (_, array) in zip(places, sources):
            dtype = np.dtype({-32: ">f4", 8: "u1"}[bitpix])
            frames = array if np.ndim(array) == 3 else [array]
            f.seek(offset)
            for frame in frames:
                f.write(np.asarray(frame).astype(dtype).tobytes())


@dataclass
class RunProducts:
    """A finished run's results in memory: what ``field.fits``, ``history.json`` and ``model.pt`` hold.

    Attributes:
        maps, wfa: the neural field's and the pixel-wise WFA's maps, ``(ny, nx)``
            or ``(nt, ny, nx)`` (G, G^2, G^2, G, rad).
        regularized: the regularised WFA, or None when the data cannot give it.
        sigmas, wfa_sigmas: one-sigma maps of the field (with ``output.sigmas``)
            and of the pixel-wise WFA, or None.
        noise: the Stokes noise the sigmas assume, or None.
        valid: bool like the maps, the pixels used in the fit.
        truth: the true maps of synthetic data, or None.
        weak_field: the WEAKFLD map (:mod:`hashwfa.wfa.physics.validity`), or None.
        times: ``(nt,)`` frame times [s] of a series, or None.
        map_cards: FITS cards of every map's Level-2 header (:mod:`hashwfa.run.map_header`:
            the spatial WCS, dates, observer, line, a series' time axis).
        notes: what the data's reader and the header assumed or left out, one sentence each.
        tables: extra table extensions the maps' WCS refers to (a series' ``-TAB`` time axis).
        provenance: ``field.fits``'s primary header keywords.
        config: the resolved config (plain JSON).
        history: the ``history.json`` record.
        model: the ``model.pt`` bundle (both fields' state_dicts and what rebuilds them).
    """

    maps: FieldMaps
    wfa: FieldMaps
    regularized: Optional[RegularizedResult]
    sigmas: Optional[FieldSigmas]
    wfa_sigmas: Optional[FieldSigmas]
    noise: Optional[StokesNoise]
    valid: np.ndarray
    truth: Optional[FieldMaps]
    weak_field: Optional[np.ndarray]
    times: Optional[np.ndarray]
    map_cards: Tuple[Tuple[str, Any, str], ...]
    notes: List[str]
    tables: List[Any]
    provenance: Dict[str, Any]
    config: Dict[str, Any]
    history: Dict[str, Any]
    model: Dict[str, Any]

    def write_field_fits(self, path: Union[str, Path]) -> None:
        """Write ``field.fits`` (:func:`hashwfa.run.outputs.write_field_fits`) to ``path``, atomically."""
        write_field_fits(
            path, self.maps, self.wfa, provenance=self.provenance, config=self.config, valid=self.valid,
            truth=self.truth, sigmas=self.sigmas, wfa_sigmas=self.wfa_sigmas, noise=self.noise,
            regularized=self.regularized, weak_field=self.weak_field, times=self.times,
            map_cards=self.map_cards, notes=self.notes, tables=self.tables,
        )

    def write(self, out_dir: Union[str, Path]) -> None:
        """Write ``field.fits``, ``history.json``, ``config.json`` and ``model.pt`` into ``out_dir``."""
        out = make_directory(Path(out_dir))
        self.write_field_fits(out / FIELD_FITS)
        write_json(out / HISTORY_JSON, self.history)
        write_json(out / CONFIG_JSON, self.config)
        save_torch(out / MODEL_PT, self.model)
