#!/usr/bin/env python
"""Time series on synthetic data: one joint field over (t, y, x) against
independent per-frame fields and the pixel-wise WFA, errors against the truth.

For each ``--frames-per-cell`` value a joint fit; one independent fit (one
field per frame); the pixel-wise WFA per frame. The data is the synthetic
series (:func:`hashwfa.wfa.synthetic_series.synthetic_series`): frame 0 is the
synthetic plage, advected by ``--flow`` pixels per frame, azimuths turning at
``--azimuth-rate`` degrees per frame rms, fresh noise in every frame. The
solver settings come from ``--config`` (default configs/v1.json: the seed
protocol), with the batch raised to the whole series so that every step sees
all (t, y, x) points as the seed protocol does for one frame.

    python scripts/bench_series.py --nt 8 --ny 96 --nx 96 --set encoding.max_resolution=16 \
        --frames-per-cell 2,8,32 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from hashwfa.config import load_config
from hashwfa.results import error_metrics
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.wfa.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic_series import synthetic_series

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "v1.json"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as hashwfa-train --set")
    parser.add_argument("--nt", type=int, default=8)
    parser.add_argument("--ny", type=int, default=200)
    parser.add_argument("--nx", type=int, default=178)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=1e-3)
    parser.add_argument("--flow", default="0.25,0.5", help="vy,vx in pixels per frame")
    parser.add_argument("--azimuth-rate", type=float, default=2.0)
    parser.add_argument("--frames-per-cell", default="2,4,8,16")
    parser.add_argument("--no-independent", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config, ["training.device=cpu", "encoding.backend=torch", *args.set])
    flow = tuple(float(v) for v in args.flow.split(","))
    series = synthetic_series(nt=args.nt, ny=args.ny, nx=args.nx, seed=args.seed, noise=args.noise, flow=flow,
                              azimuth_rate=args.azimuth_rate)
    obs = series.observation()
    truth = series.truth
    rows = {}

    def record(name, maps, seconds):
        m = error_metrics(maps, truth)
        rows[name] = {"blos_rmse": m["blos_rmse"], "bt_rmse": m["bt_rmse"],
                      "azimuth_mae_deg": m["azimuth_mae"] * 180.0 / 3.141592653589793, "time_s": seconds}
        print(f"{name:28s} B_los {m['blos_rmse']:7.2f} G  B_t {m['bt_rmse']:7.2f} G  "
              f"azimuth {rows[name]['azimuth_mae_deg']:6.2f} deg  {seconds:8.1f} s", flush=True)

    t0 = time.perf_counter()
    record("pixel-wise WFA", pixel_wfa(obs), time.perf_counter() - t0)
    base = cfg.solver
    if not args.no_independent:
        t0 = time.perf_counter()
        result = IndependentFrames(obs, base, progress=False).run()
        record("independent fields", result.maps, time.perf_counter() - t0)
    for fpc in (float(v) for v in args.frames_per_cell.split(",")):
        training = dataclasses.replace(base.training, frames_per_cell=fpc, batch_size=max(base.training.batch_size,
                                                                                            obs.n_valid))
        t0 = time.perf_counter()
        result = TwoPhaseSolver(obs, dataclasses.replace(base, training=training), progress=False).run()
        record(f"joint, {fpc:g} frames/cell", result.maps, time.perf_counter() - t0)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
