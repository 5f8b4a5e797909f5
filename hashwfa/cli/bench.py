"""``hashwfa-bench``: the seed report's table, regenerated and measured.

::

    hashwfa-bench [--versions 0,1,6] [--config CONFIG] [--set key.path=value ...]
                  [--epochs N] [--device auto|cpu|cuda] [--backend auto|tcnn|torch]
                  [--repeats R] [--json results.json] [--interpolations CatmullRom,BSpline]
                  [--recommended [CONFIG]]

Runs the seed protocol (docs/ARCHITECTURE.md section 6; every key at its default unless
``--config``/``--set`` say otherwise) for each version on the same data and
with the same seed, and prints a markdown table in the seed report's shape:
final loss and time, both relative to V0, plus the errors against the truth
when it is known (the built-in synthetic plage), and rows for the
pixel-wise WFA and the spatially regularised WFA (weights chosen by its
default rule, :mod:`hashwfa.wfa.regularized`; its time is the solve's wall
time, weight search included). A version's time is the whole two-phase
training, from the first step to the evaluated full field (the solver's
``blos + bqbu + evaluate`` timings); with ``--repeats`` the median is
reported. ``--interpolations`` adds each version's row again with other grid
interpolations (e.g. the cubic ``CatmullRom`` and ``BSpline``);
``--recommended`` adds a row ``REC`` for the recommended
configuration (``configs/recommended.json`` or the config given), trained on
the same data. The same results, with the machine, command and date, are
written as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import hashwfa
from hashwfa import results
from hashwfa.config import RunConfig, apply_overrides, load_data, read_json_config, validate_config
from hashwfa.cli.allocator import keep_freed_memory
from hashwfa.encodings.backend import BACKENDS
from hashwfa.encodings.grid_config import INTERPOLATIONS
from hashwfa.encodings.registry import REGISTRY, VERSION_NUMBERS
from hashwfa.errors import HashwfaError
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.divergence import DivergenceError
from hashwfa.training.device import DEVICES
from hashwfa.wfa.fields import FieldMaps
from hashwfa.wfa.loss import WFALoss
from hashwfa.wfa.pixelwise import pixel_wfa
from hashwfa.wfa.regularized import regularized_wfa

__all__ = ["main", "run_benchmark", "BenchRow", "format_table"]

PROG = "hashwfa-bench"
PHASE_TIMINGS = ("blos", "bqbu", "evaluate")
#: The repository's recommended configuration (the row REC of ``--recommended``).
RECOMMENDED = Path(__file__).resolve().parents[2] / "configs" / "recommended.json"


@dataclass
class BenchRow:
    """One line of the table: a version (or a classic baseline, ``version=None``).

    ``seconds`` are the per-repeat training times [s]; ``errors`` holds
    ``blos_rmse`` [G], ``bt_rmse`` [G], ``azimuth_mae`` [deg] when the truth is known.
    ``label`` names a baseline's row (``"WFA"`` when empty).
    """

    version: Optional[int]
    description: str
    final_loss: float
    seconds: List[float] = field(default_factory=list)
    errors: Dict[str, float] = field(default_factory=dict)
    backend: str = ""
    device: str = ""
    label: str = ""

    @property
    def time(self) -> Optional[float]:
        """Median time over the repeats [s], None when not measured (the pixel-wise WFA)."""
        return statistics.median(self.seconds) if self.seconds else None


def errors_against_truth(maps: FieldMaps, truth: FieldMaps, valid: np.ndarray) -> Dict[str, float]:
    """B_los and B_t RMSE [G] and azimuth mean absolute error [deg] over ``valid`` pixels."""
    metrics = results.error_metrics(maps, truth, valid)
    return {
        "blos_rmse": metrics["blos_rmse"],
        "bt_rmse": metrics["bt_rmse"],
        "azimuth_mae": float(np.degrees(metrics["azimuth_mae"])),
    }


def base_config(config_path: Optional[str], overrides: Sequence[str]) -> Dict[str, Any]:
    """The raw config every version starts from: a file, or the defaults, plus ``--set``."""
    raw = read_json_config(config_path) if config_path else {}
    apply_overrides(raw, overrides)
    return raw


def version_config(raw: Dict[str, Any], version: int, source: str, base_dir: Optional[Path]) -> RunConfig:
    """``raw`` with ``encoding.version`` set, validated."""
    raw = json.loads(json.dumps(raw))
    raw.setdefault("encoding", {})["version"] = version
    return validate_config(raw, source, base_dir=base_dir)


def run_benchmark(
    versions: Sequence[int],
    raw: Dict[str, Any],
    *,
    source: str = "<defaults>",
    base_dir: Optional[Path] = None,
    repeats: int = 1,
    progress: bool = False,
    say=print,
    extras: Sequence[Tuple[str, str, RunConfig]] = (),
) -> List[BenchRow]:
    """Train every version ``repeats`` times on the same data; the pixel-wise and regularised WFA last.

    ``extras`` are further configs ``(label, description, config)`` trained
    after the versions on the same data (their own ``data`` section is not
    read), e.g. the recommended configuration (row ``REC``).
    """
    first = version_config(raw, versions[0], source, base_dir)
    data = load_data(first)  # the same observation (and truth) for every version
    obs = data.observation
    valid = obs.valid.reshape(obs.ny, obs.nx)
    say(f"{PROG}: {data.description}; versions {', '.join(f'V{v}' for v in versions)}; {repeats} repeat(s)")
    rows: List[BenchRow] = []
    runs = [(f"V{v}", v, REGISTRY[v].seed_name, version_config(raw, v, source, base_dir)) for v in versions]
    runs += [(label, None, description, cfg) for label, description, cfg in extras]
    for name, version, description, cfg in runs:
        row: Optional[BenchRow] = None
        for repeat in range(repeats):
            solver = TwoPhaseSolver(obs, cfg.solver, progress=progress)
            try:
                result = solver.run()
            except DivergenceError as exc:
                # One diverging version is a result of the benchmark, not a reason to lose the others.
                say(f"  {name} run {repeat + 1}/{repeats}: {exc}")
                row = BenchRow(version=version, description=f"{description} (diverged)", label=name if version is None else "",
                               final_loss=float("nan"), backend=solver.backend, device=str(solver.device))
                break
            seconds = sum(result.timings.get(k, 0.0) for k in PHASE_TIMINGS)
            if row is None:
                row = BenchRow(
                    version=version,
                    description=description,
                    final_loss=result.final_loss,
                    backend=result.backend,
                    device=result.device,
                    label=name if version is None else "",
                )
                if data.truth is not None:
                    row.errors = errors_against_truth(result.maps, data.truth, valid)
            row.seconds.append(seconds)
            say(f"  {name} run {repeat + 1}/{repeats}: {seconds:.2f} s, final loss {result.final_loss:.4e}")
        rows.append(row)
    physics = first.physics  # the same for every version
    wfa = pixel_wfa(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
    loss = WFALoss(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
    row = BenchRow(version=None, description="pixel-wise WFA", final_loss=loss.map_loss(wfa.blos, wfa.bq, wfa.bu))
    if data.truth is not None:
        row.errors = errors_against_truth(wfa, data.truth, valid)
    rows.append(row)
    start = time.perf_counter()
    try:
        reg = regularized_wfa(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
    except HashwfaError as exc:  # e.g. an image too small for the noise estimate
        say(f"  no regularised WFA row: {exc}")
        return rows
    seconds = time.perf_counter() - start
    maps = reg.maps
    row = BenchRow(version=None, label="REG",
                   description=f"regularised WFA (alpha {reg.alpha_v:.3g} / {reg.alpha_qu:.3g}, {reg.rule_v})",
                   final_loss=loss.map_loss(maps.blos, maps.bq, maps.bu), seconds=[seconds])
    if data.truth is not None:
        row.errors = errors_against_truth(maps, data.truth, valid)
    say(f"  regularised WFA: {seconds:.2f} s, weights {reg.alpha_v:.3g} (V), {reg.alpha_qu:.3g} (Q/U)")
    rows.append(row)
    return rows


def _relative(value: Optional[float], reference: Optional[float]) -> str:
    if value is None or reference is None or reference == 0:
        return "-"
    return f"{100.0 * (value / reference - 1.0):+.1f}%"


def format_table(rows: Sequence[BenchRow]) -> str:
    """The seed report's table, plus errors against the truth when known."""
    reference = next((r for r in rows if r.version == 0), None)
    with_truth = any(r.errors for r in rows)
    head = "| Version | Description | Final Loss | vs V0 Loss | Time (s) | vs V0 Time |"
    rule = "|---|---|---|---|---|---|"
    if with_truth:
        head += " B_los RMSE (G) | B_t RMSE (G) | Azimuth MAE (deg) |"
        rule += "---|---|---|"
    lines = [head, rule]
    for r in rows:
        name = f"V{r.version}" if r.version is not None else (r.label or "WFA")
        time_text = f"{r.time:.2f}" if r.time is not None else "-"
        line = (
            f"| {name} | {r.description} | {r.final_loss:.3e} | "
            f"{_relative(r.final_loss, reference.final_loss if reference else None)} | {time_text} | "
            f"{_relative(r.time, reference.time if reference else None)} |"
        )
        if with_truth:
            e = r.errors
            line += f" {e.get('blos_rmse', float('nan')):.1f} | {e.get('bt_rmse', float('nan')):.1f} | {e.get('azimuth_mae', float('nan')):.1f} |"
        lines.append(line)
    return "\n".join(lines)


def _machine() -> Dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hashwfa": hashwfa.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=f"Regenerate the seed report's table ({len(VERSION_NUMBERS)} versions, loss, time, errors)."
    )
    p.add_argument("--versions", default=",".join(str(v) for v in VERSION_NUMBERS), help="comma-separated, e.g. 0,1,6")
    p.add_argument("--config", help="base config (default: every key at its default, the seed protocol)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--data", help="Stokes FITS file instead of the synthetic plage (with --wavelengths)")
    p.add_argument("--wavelengths", help="wavelength FITS file for --data")
    p.add_argument("--epochs", type=int, help="training.epochs_per_phase")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument("--repeats", type=int, default=1, help="runs per version; the median time is reported")
    p.add_argument("--json", default="bench_results.json", help="where to write the results (default bench_results.json)")
    p.add_argument("--progress", action="store_true", help="show the training progress bars")
    p.add_argument("--interpolations", metavar="NAMES",
                   help="comma-separated, e.g. CatmullRom,BSpline: add each version's row again with that "
                        "encoding.interpolation")
    p.add_argument("--recommended", nargs="?", const=str(RECOMMENDED), metavar="CONFIG",
                   help="add a row REC trained with this config (default: configs/recommended.json) on the same "
                        "data, with the same --set, --epochs, --device and --backend")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hashwfa-bench``; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        versions = _parse_versions(args.versions)
        _check_json_target(args)
        if args.repeats < 1:
            raise HashwfaError("--repeats must be at least 1.")
        overrides = list(args.overrides)
        if args.data or args.wavelengths:
            if not (args.data and args.wavelengths):
                raise HashwfaError("--data and --wavelengths go together: the Stokes cube and its wavelength axis.")
            overrides += [f"data.path={Path(args.data).resolve()}", f"data.wavelengths={Path(args.wavelengths).resolve()}"]
        if args.epochs is not None:
            overrides.append(f"training.epochs_per_phase={args.epochs}")
        if args.device:
            overrides.append(f"training.device={args.device}")
        if args.backend:
            overrides.append(f"encoding.backend={args.backend}")
        raw = base_config(args.config, overrides)
        base_dir = Path(args.config).resolve().parent if args.config else None
        extras = []
        for interpolation in [i for i in (args.interpolations or "").split(",") if i.strip()]:
            if interpolation not in INTERPOLATIONS:
                raise HashwfaError(f"--interpolations {args.interpolations!r}: {interpolation!r} is not one of "
                                   f"{', '.join(INTERPOLATIONS)}.")
            for v in versions:  # the version's row again with another interpolation
                cubic = json.loads(json.dumps(raw))
                cubic.setdefault("encoding", {}).update(version=v, interpolation=interpolation)
                extras.append((f"V{v} {interpolation}", f"{REGISTRY[v].seed_name}, {interpolation}",
                               validate_config(cubic, args.config or "<defaults>", base_dir=base_dir)))
        if args.recommended:
            rec_raw = read_json_config(args.recommended)
            rec_raw.pop("data", None)  # trained on the benchmark's data
            rec_raw.setdefault("output", {})["sigmas"] = False
            rec_raw["data"] = raw.get("data", {})
            apply_overrides(rec_raw, [o for o in overrides if not o.startswith("data.")])
            rec = validate_config(rec_raw, args.recommended, base_dir=base_dir)
            extras.append(("REC", f"recommended ({Path(args.recommended).name})", rec))
        rows = run_benchmark(
            versions,
            raw,
            source=args.config or "<defaults>",
            base_dir=base_dir,
            repeats=args.repeats,
            progress=args.progress,
            say=lambda m: print(m, file=sys.stderr),
            extras=extras,
        )
    except HashwfaError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
        print(f"{PROG}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    table = format_table(rows)
    print(table)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
        "machine": _machine(),
        "config": raw,
        "rows": [
            {
                "version": r.version,
                "label": r.label or None,
                "description": r.description,
                "final_loss": r.final_loss,
                "seconds": r.seconds,
                "median_seconds": r.time,
                "errors_vs_truth": r.errors or None,
                "backend": r.backend or None,
                "device": r.device or None,
            }
            for r in rows
        ],
        "table": table,
    }
    try:
        results.write_json(args.json, report)
    except HashwfaError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{PROG}: results written to {args.json}", file=sys.stderr)
    return 0


def _parse_versions(text: str) -> List[int]:
    """``"0,1,6"`` -> ``[0, 1, 6]``; anything else is a :class:`HashwfaError` listing the choices."""
    choices = ",".join(str(v) for v in VERSION_NUMBERS)
    try:
        versions = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        versions = []
    if not versions or any(v not in REGISTRY for v in versions):
        raise HashwfaError(f"--versions {text!r}: give comma-separated version numbers from {choices}, e.g. --versions 0,1,6.")
    return versions


def _check_json_target(args: argparse.Namespace) -> None:
    """Refuse a ``--json`` path that would overwrite an input or cannot be written, before the long run."""
    target = Path(args.json).resolve()
    inputs = {"--config": args.config, "--data": args.data, "--wavelengths": args.wavelengths}
    for flag, value in inputs.items():
        if value and Path(value).resolve() == target:
            raise HashwfaError(f"--json {args.json} is also the {flag} file: writing the results would replace it. Fix: choose another --json.")
    if target.is_dir():
        raise HashwfaError(f"--json {args.json} is a directory. Fix: give a file name, e.g. {Path(args.json) / 'bench_results.json'}.")


if __name__ == "__main__":
    sys.exit(main())
