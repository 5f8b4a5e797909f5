#!/usr/bin/env python
"""Time series on synthetic data: one joint field over (t, y, x) against
independent per-frame fields and both classic baselines, errors against the truth.

Rows: the pixel-wise WFA per frame; the spatially regularised WFA
(:func:`hashwfa.wfa.baselines.regularized.regularized_wfa`: each frame smoothed in
space, its weights chosen by the discrepancy rule with the noise estimated
from the data, as the REG maps of ``hashwfa-train``); one independent fit
(one (y, x) field per frame); for each ``--frames-per-cell`` value a joint fit
over (t, y, x). The data is the synthetic series
(:func:`hashwfa.wfa.synthetic.series.synthetic_series`): frame 0 is the
synthetic plage, advected by ``--flow`` pixels per frame, azimuths turning at
``--azimuth-rate`` degrees per frame rms, fresh noise in every frame.

The solver settings come from ``--config`` (default configs/v1.json: the
reference protocol; configs/recommended.json for the recommended configuration,
its ``regularization`` section included) with ``--set`` overrides, on the
CPU with the torch backend; the joint fit's batch is raised to the whole
series so that every step sees all (t, y, x) points as the reference protocol
does for one frame (the smoothness terms need it). Only the solver runs:
no sigma maps (``output.sigmas``), no output files. ``--scale-resolution
S`` multiplies every field's ``max_resolution`` (and V6's
``plane_resolution`` when set) by S, rounded, so that a smaller image keeps
the finest cells' size in pixels (0.5 for 96 px against the reference report's 200).

    python scripts/bench_series.py --nt 8 --ny 96 --nx 96 --set encoding.max_resolution=16 \
        --frames-per-cell 2,8,32 --json out.json
    python scripts/bench_series.py --config configs/recommended.json --nt 8 --ny 96 --nx 96 \
        --scale-resolution 0.5 --frames-per-cell 8 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from hashwfa.config.run_config import load_config
from hashwfa.wfa.physics.maps import map_errors
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.training.solver_config import SolverConfig
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.regularized import regularized_wfa
from hashwfa.wfa.synthetic.series import synthetic_series

REPO = Path(__file__).resolve().parents[1]
#: Names of the rows of the two classic baselines.
PIXELWISE, REGULARIZED, INDEPENDENT = "pixel-wise WFA", "regularised WFA", "independent fields"


def scaled_resolutions(config: SolverConfig, factor: float) -> SolverConfig:
    """``config`` with every field's ``max_resolution`` (and a set ``plane_resolution``) times ``factor``, rounded."""
    if factor == 1.0:
        return config

    def scale(encoding):
        # A per-field override leaves unset keys None: they follow the shared encoding, scaled there.
        changes = {key: max(2, int(round(getattr(encoding, key) * factor)))
                   for key in ("max_resolution", "plane_resolution") if getattr(encoding, key, None)}
        return dataclasses.replace(encoding, **changes)

    changes = {name: scale(getattr(config, name)) for name in ("encoding", "encoding_blos", "encoding_bqbu")}
    return dataclasses.replace(config, **changes)


def penalty_summary(solver: Any) -> Dict[str, Any]:
    """The smoothness weights a solver fixed at setup (``{}`` without regularisation)."""
    weights = getattr(solver, "penalty_weights", {}) or {}
    return {phase: w.as_dict() for phase, w in weights.items()}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "v1.json"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as hashwfa-train --set")
    parser.add_argument("--scale-resolution", type=float, default=1.0,
                        help="multiply every field's max_resolution by this (after --set)")
    parser.add_argument("--nt", type=int, default=8)
    parser.add_argument("--ny", type=int, default=200)
    parser.add_argument("--nx", type=int, default=178)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=1e-3)
    parser.add_argument("--flow", default="0.25,0.5", help="vy,vx in pixels per frame")
    parser.add_argument("--azimuth-rate", type=float, default=2.0)
    parser.add_argument("--frames-per-cell", default="2,4,8,16", help="comma-separated; empty: no joint fit")
    parser.add_argument("--no-independent", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config, ["training.device=cpu", "encoding.backend=torch", "output.sigmas=false",
                                    *args.set])
    base = scaled_resolutions(cfg.solver, args.scale_resolution)
    flow = tuple(float(v) for v in args.flow.split(","))
    series = synthetic_series(nt=args.nt, ny=args.ny, nx=args.nx, seed=args.seed, noise=args.noise, flow=flow,
                              azimuth_rate=args.azimuth_rate)
    obs = series.observation()
    truth = series.truth
    rows: Dict[str, Dict[str, Any]] = {}

    def record(name: str, maps, seconds: float, **extra: Any) -> None:
        m = map_errors(maps, truth)
        rows[name] = {"blos_rmse": m["blos_rmse"], "bt_rmse": m["bt_rmse"],
                      "azimuth_mae_deg": m["azimuth_mae"], "time_s": seconds, **extra}
        print(f"{name:28s} B_los {m['blos_rmse']:7.2f} G  B_t {m['bt_rmse']:7.2f} G  "
              f"azimuth {rows[name]['azimuth_mae_deg']:6.2f} deg  {seconds:8.1f} s", flush=True)

    t0 = time.perf_counter()
    record(PIXELWISE, pixel_wfa(obs), time.perf_counter() - t0)
    t0 = time.perf_counter()
    reg = regularized_wfa(obs, core_cutoff=base.physics.core_cutoff, qu_form=base.physics.qu_form)
    record(REGULARIZED, reg.maps, time.perf_counter() - t0, alpha_v=reg.alpha_v, alpha_qu=reg.alpha_qu)
    if not args.no_independent:
        t0 = time.perf_counter()
        frames = IndependentFrames(obs, base, progress=False)
        result = frames.run()
        record(INDEPENDENT, result.maps, time.perf_counter() - t0,
               penalty=[penalty_summary(s) for s in frames.solvers], timings=dict(result.timings))
    fpcs: List[float] = [float(v) for v in args.frames_per_cell.split(",") if v.strip()]
    for fpc in fpcs:
        training = dataclasses.replace(base.training, frames_per_cell=fpc,
                                       batch_size=max(base.training.batch_size, obs.n_valid))
        t0 = time.perf_counter()
        solver = TwoPhaseSolver(obs, dataclasses.replace(base, training=training), progress=False)
        result = solver.run()
        record(f"joint, {fpc:g} frames/cell", result.maps, time.perf_counter() - t0,
               penalty=penalty_summary(solver), timings=dict(result.timings))

    ratios = {name: {ref: {q: rows[name][q] / rows[ref][q] for q in ("blos_rmse", "bt_rmse", "azimuth_mae_deg")}
                     for ref in (PIXELWISE, REGULARIZED, INDEPENDENT) if ref in rows}
              for name in rows if name.startswith("joint")}
    for name, by_ref in ratios.items():
        for ref, r in by_ref.items():
            print(f"{name} / {ref}: B_los {r['blos_rmse']:.2f}x  B_t {r['bt_rmse']:.2f}x  "
                  f"azimuth {r['azimuth_mae_deg']:.2f}x", flush=True)
    encodings = {p: dataclasses.asdict(base.field_encoding(p)) for p in ("blos", "bqbu")}
    out = {"args": vars(args), "encodings": encodings, "rows": rows, "ratios": ratios}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
