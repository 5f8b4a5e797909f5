#!/usr/bin/env python
"""Peak host memory of ``hashwfa-train`` on synthetic series read from FITS (docs/RUNNING.md, "How large a series fits").

::

    python scripts/bench_lazy_memory.py write DIR --frames 8 32 128        # the series files (float32 FITS)
    python scripts/bench_lazy_memory.py run DIR --frames 8 32 128 [--checkout PATH] [--nproc N]

``write`` makes the built-in synthetic series (96 x 96 pixels, 13
wavelengths, active 5, 6, 7) with each number of frames and writes it to
``DIR/nt<N>/`` (``stokes.fits``, ``wavelengths.fits``). ``run`` fits each
with ``hashwfa-train``'s ``main`` (3 epochs per phase, ``training.batch_size`` 65536,
no quick-look, the default V1 field) from the checkout ``--checkout``
(default: this one; give another to measure another branch: its
``hashwfa`` is imported), one process or ``torchrun --nproc_per_node N``
(gloo), each rank in its own process, and prints one Markdown row per
series: frames, points, the file's size, the float64 cube's size, the loss
tensors' size (5 x n x 3 float32), each rank's peak resident memory
(``getrusage`` maxrss, which includes the ~0.3 GB of an imported torch) and
the wall time. ``--stages`` also prints, for rank 0, the resident memory
(``VmRSS``) and its peak so far (``VmHWM``) before and after each step that
makes the outputs (freeing the loss, the pixel-wise WFA, the sigma maps, the
regularised WFA, writing ``field.fits``). ``fit`` is what each process runs
(internal).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def write(directory: Path, frames: list, ny: int, nx: int) -> None:
    sys.path.insert(0, str(HERE))
    from hashwfa.wfa.synthetic.series import synthetic_series

    for nt in frames:
        out = directory / f"nt{nt}"
        if (out / "stokes.fits").exists():
            continue
        synthetic_series(nt=nt, ny=ny, nx=nx, seed=0, noise=1e-3).write_fits(out)
        print(f"wrote {out}", file=sys.stderr)


def _status_mb(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process from ``/proc/self/status``, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1e3
    return float("nan")


def _log_stages(report: str) -> None:
    """Wrap the output steps of hashwfa-train so that each logs RSS and peak RSS before and after it."""
    from hashwfa.run import outputs as results
    from hashwfa.cli import train

    def wrap(module, name: str) -> None:  # type: ignore[no-untyped-def]
        inner = getattr(module, name)

        def logged(*args, **kwargs):  # type: ignore[no-untyped-def]
            for when in ("before", "after"):
                if when == "after":
                    value = inner(*args, **kwargs)
                with open(report, "a") as f:
                    f.write(json.dumps({"stage": f"{when} {name}", "rss_mb": _status_mb("VmRSS"),
                                        "hwm_mb": _status_mb("VmHWM")}) + "\n")
            return value

        setattr(module, name, logged)

    for name in ("return_freed_memory", "pixel_wfa", "run_uncertainty", "regularized_wfa", "write_quicklook"):
        wrap(train, name)
    wrap(results, "write_field_fits")


def fit(config: str, out: str, report: str, stages: bool = False) -> None:
    """One rank of a fit: hashwfa-train's main, then this process's peak memory into ``report``."""
    from hashwfa.cli import train

    t0 = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    if stages and rank == 0:
        _log_stages(report)

    def record() -> None:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        with open(report, "a") as f:
            f.write(json.dumps({"rank": rank, "peak_mb": peak_mb, "seconds": time.perf_counter() - t0}) + "\n")

    class ExitRecorded:
        """``os`` for hashwfa-train's main, whose ranks other than 0 leave by ``os._exit``."""

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(os, name)

        @staticmethod
        def _exit(code: int) -> None:
            record()
            os._exit(code)

    train.os = ExitRecorded()  # type: ignore[assignment]
    code = train.main([config, "--out", out, "--quiet", "--overwrite"])
    record()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(directory: Path, frames: list, checkout: Path, nproc: int, stages: bool = False) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(checkout))
    print("| frames | points | file MB | float64 cube MB | loss tensors MB | peak RSS per rank MB | wall s |")
    print("|---|---|---|---|---|---|---|")
    for nt in frames:
        data = directory / f"nt{nt}"
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "series.json"
            config.write_text(json.dumps({
                "data": {"path": str(data / "stokes.fits"), "wavelengths": str(data / "wavelengths.fits"),
                         "active_indices": [5, 6, 7]},
                "training": {"epochs_per_phase": 3, "batch_size": 65536, "device": "cpu"},
                "output": {"quicklook": False},
            }))
            report = Path(tmp) / "report.jsonl"
            args = [str(Path(__file__).resolve()), "fit", str(config), str(Path(tmp) / "out"), str(report)]
            args += ["--stages"] if stages else []
            launcher = [sys.executable] if nproc == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            t0 = time.perf_counter()
            subprocess.run(launcher + args, env=env, cwd=str(checkout), check=True)
            wall = time.perf_counter() - t0
            lines = [json.loads(line) for line in report.read_text().splitlines()]
            ranks = sorted((r for r in lines if "rank" in r), key=lambda r: r["rank"])
            steps = [r for r in lines if "stage" in r]
        points = nt * 96 * 96
        size = (data / "stokes.fits").stat().st_size / 1e6
        peaks = " / ".join(f"{r['peak_mb']:.0f}" for r in ranks)
        print(f"| {nt} | {points} | {size:.0f} | {points * 52 * 8 / 1e6:.0f} | {points * 5 * 3 * 4 / 1e6:.0f} | "
              f"{peaks} | {wall:.0f} |", flush=True)
        for step in steps:
            print(f"    rank 0 {step['stage']}: RSS {step['rss_mb']:.0f} MB, peak so far {step['hwm_mb']:.0f} MB",
                  flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("directory", type=Path)
    w.add_argument("--frames", type=int, nargs="+", default=[8, 32, 128])
    w.add_argument("--ny", type=int, default=96)
    w.add_argument("--nx", type=int, default=96)
    r = sub.add_parser("run")
    r.add_argument("directory", type=Path)
    r.add_argument("--frames", type=int, nargs="+", default=[8, 32, 128])
    r.add_argument("--checkout", type=Path, default=HERE)
    r.add_argument("--nproc", type=int, default=1)
    r.add_argument("--stages", action="store_true", help="also print rank 0's memory around each output step")
    f = sub.add_parser("fit")
    f.add_argument("config")
    f.add_argument("out")
    f.add_argument("report")
    f.add_argument("--stages", action="store_true")
    a = p.parse_args()
    if a.command == "write":
        write(a.directory, a.frames, a.ny, a.nx)
    elif a.command == "run":
        run(a.directory, a.frames, a.checkout.resolve(), a.nproc, a.stages)
    else:
        fit(a.config, a.out, a.report, a.stages)


if __name__ == "__main__":
    main()
