#!/usr/bin/env python
"""Effect of ``training.init_from`` on convergence and accuracy (synthetic plage).

For each start (none, pixelwise, regularized) and each number of epochs per
phase, trains the given version with the reference protocol otherwise and prints
the errors against the truth (B_los / B_t RMSE [G], azimuth MAE [deg]), the
WFA loss of the first and last epoch of each phase, the warm-start fit's
relative error and the CPU time of the training (warm start and baseline map
included).

Run: ``OMP_NUM_THREADS=1 python scripts/bench_warm_start.py [--version 1] [--epochs 50,200] [--init-epochs 100]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from hashwfa.wfa.physics.maps import map_errors
from hashwfa.config.run_config import validate_config
from hashwfa.run.data import load_data
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.solver_config import INITS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--epochs", default="50,200")
    p.add_argument("--init-epochs", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| epochs | init_from | B_los RMSE (G) | B_t RMSE (G) | azimuth MAE (deg) | V loss first / last | "
          "Q,U loss first / last | init fit rel. error (V; Q,U) | CPU (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for epochs in (int(e) for e in args.epochs.split(",")):
        for init in INITS:
            raw = {"encoding": {"version": args.version},
                   "training": {"epochs_per_phase": epochs, "init_from": init, "init_epochs": args.init_epochs,
                                "device": "cpu"}}
            cfg = validate_config(raw, "<bench_warm_start>")
            data = load_data(cfg)
            obs = data.observation
            start = time.process_time()
            res = TwoPhaseSolver(obs, cfg.solver, progress=False).run()
            cpu = time.process_time() - start
            e = map_errors(res.maps, data.truth, obs.valid.reshape(obs.ny, obs.nx))
            h = res.history
            fit = "; ".join(f"{h[p]['init_loss'][0]:.3f}" for p in ("blos", "bqbu")) if init != "none" else "-"
            print(f"| {epochs} | {init} | {e['blos_rmse']:.1f} | {e['bt_rmse']:.1f} | {e['azimuth_mae']:.1f} | "
                  f"{h['blos']['loss'][0]:.2e} / {h['blos']['loss'][-1]:.2e} | "
                  f"{h['bqbu']['loss'][0]:.2e} / {h['bqbu']['loss'][-1]:.2e} | {fit} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
