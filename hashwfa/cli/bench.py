"""``hashwfa-bench``: the reference report's table, regenerated and measured.

::

    hashwfa-bench [--versions 0,1,6] [--config CONFIG] [--set key.path=value ...]
                  [--epochs N] [--device auto|cpu|cuda] [--backend auto|tcnn|torch]
                  [--repeats R] [--json results.json] [--interpolations CatmullRom,BSpline]
                  [--recommended [CONFIG]]

Runs the reference protocol (docs/ARCHITECTURE.md section 6; every key at its default unless
``--config``/``--set`` say otherwise) for each version on the same data and
with the same seed, and prints a markdown table in the reference report's shape:
final loss and time, both relative to V0, plus the errors against the truth
when it is known (the built-in synthetic plage), and rows for the
pixel-wise WFA and the spatially regularised WFA (weights chosen by its
default rule, :mod:`hashwfa.wfa.baselines.regularized`; its time is the solve's wall
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
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from hashwfa import __version__
from hashwfa.config.run_config import apply_overrides, read_json_config, validate_config
from hashwfa.encodings.backend import BACKENDS
from hashwfa.encodings.grid_config import INTERPOLATIONS
from hashwfa.encodings.registry import REGISTRY, VERSION_NUMBERS
from hashwfa.errors import HashwfaError
from hashwfa.host.allocator import keep_freed_memory
from hashwfa.run import outputs
from hashwfa.run.benchmark import PROG, RECOMMENDED, base_config, format_table, machine, run_benchmark
from hashwfa.training.device import DEVICES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=f"Regenerate the reference report's table ({len(VERSION_NUMBERS)} versions, loss, time, errors)."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--versions", default=",".join(str(v) for v in VERSION_NUMBERS), help="comma-separated, e.g. 0,1,6")
    p.add_argument("--config", help="base config (default: every key at its default, the reference protocol)")
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
                extras.append((f"V{v} {interpolation}", f"{REGISTRY[v].report_name}, {interpolation}",
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
        "machine": machine(),
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
        outputs.write_json(args.json, report)
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
