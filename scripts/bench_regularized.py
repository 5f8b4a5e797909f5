#!/usr/bin/env python
"""The regularised WFA baseline against the truth: pixel-wise, rule-chosen, best on the truth.

For each synthetic case prints B_los RMSE [G], B_t RMSE [G] and azimuth MAE
[deg] (the errors of ``hashwfa-bench``) of the pixel-wise WFA, of the
regularised WFA with the weights chosen by each rule (no truth used), and of
the regularised WFA with the weight per quantity that is best against the
truth (a scan of alpha: B_los RMSE for V, B_t RMSE for Q/U), with the chosen
weights and times: wall and CPU time of the process (on a shared machine the
CPU time is the steadier figure). ``--large N`` also times an N x N synthetic (peak memory: run it under ``ulimit -v``).

Run: ``OMP_NUM_THREADS=1 python scripts/bench_regularized.py [--cases plage,seed1,fe6302] [--large 1000]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from hashwfa.wfa.physics.maps import map_errors
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.regularized import RULES, regularized_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage

#: An unequal wavelength grid for Fe I 6302 [A from line centre] and its active indices.
FE_WAVELENGTHS = np.array([-0.32, -0.2, -0.12, -0.07, -0.03, 0.0, 0.035, 0.08, 0.14, 0.22, 0.32])
CASES = {
    "plage": ("synthetic_plage() defaults (seed 0, noise 1e-3, Mg I 5173, active 5-7)", {}),
    "seed1": ("seed 1, noise 3e-3", {"seed": 1, "noise": 3e-3}),
    "fe6302": ("Fe I 6302, unequal 11-point grid, active 3-7, seed 2, noise 1e-3",
               {"seed": 2, "line": "6302", "wavelengths": FE_WAVELENGTHS, "active_indices": (3, 4, 5, 6, 7)}),
}


class Clock:
    """Wall and process CPU time of a block [s]."""

    def __enter__(self) -> "Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.2f} wall, {self.cpu:.2f} CPU"


def fmt(e):
    return f"{e['blos_rmse']:.1f} | {e['bt_rmse']:.1f} | {e['azimuth_mae']:.1f}"


def run_case(name: str) -> None:
    description, kwargs = CASES[name]
    data = synthetic_plage(**kwargs)
    obs, truth = data.observation, data.truth
    valid = obs.valid.reshape(obs.ny, obs.nx)
    print(f"\n### {name}: {description}, {obs.ny} x {obs.nx}")
    print("| method | B_los RMSE (G) | B_t RMSE (G) | azimuth MAE (deg) | alpha V | alpha Q/U | time (s) |")
    print("|---|---|---|---|---|---|---|")
    with Clock() as t:
        pix = pixel_wfa(obs)
    print(f"| pixel-wise WFA | {fmt(map_errors(pix, truth, valid))} | - | - | {t} |")
    for rule in RULES:
        with Clock() as dt:
            res = regularized_wfa(obs, rule=rule)
        noise = f", sigma V {res.noise_v:.3g}, Q/U {res.noise_qu:.3g}" if res.noise_v else ""
        print(f"| regularised, {rule}{noise} | {fmt(map_errors(res.maps, truth, valid))} | "
              f"{res.alpha_v:.3g} | {res.alpha_qu:.3g} | {dt} |")
    # Best alpha on the truth: scan per quantity.
    grid = 10.0 ** np.arange(-2.0, 3.01, 0.25)
    with Clock() as dt:
        regularized_wfa(obs, alpha=(1.0, 10.0))
    print(f"(one solve at given weights alpha = 1 / 10: {dt})")
    scan = []
    for a in grid:
        res = regularized_wfa(obs, alpha=a)
        scan.append(map_errors(res.maps, truth, valid))
    best_v = int(np.argmin([e["blos_rmse"] for e in scan]))
    best_qu = int(np.argmin([e["bt_rmse"] for e in scan]))
    best_az = int(np.argmin([e["azimuth_mae"] for e in scan]))
    best = {"blos_rmse": scan[best_v]["blos_rmse"], "bt_rmse": scan[best_qu]["bt_rmse"],
            "azimuth_mae": scan[best_qu]["azimuth_mae"]}
    print(f"| regularised, best alpha on the truth (B_los / B_t) | {fmt(best)} | {grid[best_v]:.3g} | "
          f"{grid[best_qu]:.3g} | |")
    print(f"(alpha minimising the azimuth MAE: {grid[best_az]:.3g}, MAE {scan[best_az]['azimuth_mae']:.1f} deg)")


def run_large(n: int) -> None:
    """Time an n x n image: a synthetic of n/2 x n/2 tiled 2 x 2 (a direct n x n synthetic
    needs several times the memory of the inversion)."""
    half = n // 2
    with Clock() as t:
        data = synthetic_plage(ny=half, nx=half, seed=3, model="wfa")
        src = data.observation
        obs = Observation(np.tile(src.stokes, (2, 2, 1, 1)), src.wavelengths, line=src.line,
                          active_indices=src.active_indices, source="tiled synthetic", unit="Ic")
        truth = FieldMaps(**{k: np.tile(v, (2, 2)) for k, v in data.truth.as_dict().items()})
    print(f"\n### {2 * half} x {2 * half} synthetic ({half} x {half}, model 'wfa', noise 1e-3, tiled 2 x 2), "
          f"made in {t}")
    valid = np.ones(truth.shape, bool)
    with Clock() as t:
        pix = pixel_wfa(obs)
    print(f"pixel-wise WFA: {t}, errors {fmt(map_errors(pix, truth, valid))}")
    for kwargs in ({"alpha": (1.0, 10.0)}, {}, {"alpha": (1.0, 10.0), "method": "direct"}):
        with Clock() as dt:
            res = regularized_wfa(obs, **kwargs)
        e = map_errors(res.maps, truth, valid)
        print(f"regularized_wfa({kwargs}): {dt}, method {res.method}, {res.solves} solves, "
              f"alpha {res.alpha_v:.3g} / {res.alpha_qu:.3g}, errors {fmt(e)}, "
              f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--large", type=int, default=0, help="also time an N x N synthetic")
    args = p.parse_args()
    for name in args.cases.split(","):
        run_case(name)
    if args.large:
        run_large(args.large)


if __name__ == "__main__":
    main()
