#!/usr/bin/env python
"""Coverage and cost of the sigma maps' bootstrap member: from scratch or from the fit.

For one case (a config plus ``--set`` items, synthetic data with a known
truth), fits the field once, then makes the sigma maps
(:func:`hashwfa.training.bootstrap.run_uncertainty`) with each member setting
given, and prints per setting: the member's wall and process CPU seconds and
the coverage of B_los, B_t and the azimuth at 1 and 2 sigma (the fraction of
pixels with |error| <= sigma, azimuth modulo pi; docs/UNCERTAINTIES.md; bands
0.60-0.76 and 0.90-0.98), over all valid pixels and, for data with the WFA's
model error (``model`` other than ``wfa``), over the pixels where that error
is below half the pixel-wise sigma (for B_los; the selection of
BENCHMARKS.md section 6).

Settings: ``scratch`` (the whole fit again from the member's own seed, the
recipe the coverage was first measured with) and ``fit:F`` (started from the
fitted weights, F x epochs_per_phase epochs; ``fit`` alone: the config's
``uncertainty.member_epochs``, or ``member_epochs_series`` for a series).

Run::

    OMP_NUM_THREADS=1 python scripts/bench_member.py configs/recommended.json \\
        --set data.synthetic.model=wfa --settings scratch fit:0.1 fit:0.25
    # the Fe I 6302 case of BENCHMARKS.md section 6:
    OMP_NUM_THREADS=1 python scripts/bench_member.py configs/recommended.json --set line=6302 \\
        --set data.synthetic.model=wfa --set data.synthetic.seed=1 --set data.synthetic.noise=3e-3 \\
        --settings scratch fit:0.25
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Dict, List

import numpy as np
import torch

# The hashwfa of this checkout, whatever the working directory (python scripts/... puts scripts/ first).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hashwfa.config.run_config import load_config
from hashwfa.run.data import load_data
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.bootstrap import FitStart, run_uncertainty
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas


def coverage(field, truth, sigmas, mask) -> Dict[str, float]:
    """1- and 2-sigma coverage of blos, bt, azimuth over ``mask``."""
    d_az = np.abs((field.azimuth - truth.azimuth + np.pi / 2) % np.pi - np.pi / 2)
    errors = {"blos": np.abs(field.blos - truth.blos), "bt": np.abs(field.bt - truth.bt), "azimuth": d_az}
    out = {}
    for q, e in errors.items():
        s = getattr(sigmas, q)
        m = mask[q] & np.isfinite(s) & np.isfinite(e)
        out[f"{q} 1s"] = float(np.mean(e[m] <= s[m]))
        out[f"{q} 2s"] = float(np.mean(e[m] <= 2 * s[m]))
    return out


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--settings", nargs="+", default=["scratch", "fit:0.25"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.sets)
    data = load_data(cfg)
    obs, truth = data.observation, data.truth
    physics = cfg.solver.physics
    print(f"# {data.description}; {args.config} {' '.join(args.sets)}; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    baselines = Baselines(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form, given_noise=data.noise)
    w0, c0 = time.perf_counter(), time.process_time()
    solver = TwoPhaseSolver(obs, cfg.solver, progress=False, baselines=baselines)
    result = solver.run()
    print(f"# main fit: {time.perf_counter() - w0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
    start = FitStart.of(solver)
    valid = obs.valid.reshape(obs.map_shape)
    masks = {"all": {q: valid for q in ("blos", "bt", "azimuth")}}
    if cfg.data.synthetic is not None and cfg.data.synthetic.model != "wfa":
        # Where the WFA's model error is small: the pixel-wise WFA of the noise-free cube.
        clean = load_data(dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, synthetic=dataclasses.replace(cfg.data.synthetic, noise=0.0))))
        wfa_clean = pixel_wfa(clean.observation, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
        sig_w = pixel_wfa_sigmas(obs, baselines.noise, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
        small = valid & (np.abs(wfa_clean.blos - truth.blos) < 0.5 * sig_w.blos)
        masks["model error < sigma_w/2"] = {"blos": small, "bt": valid, "azimuth": valid}
    rows = []
    for setting in args.settings:
        kind, _, fraction = setting.partition(":")
        settings = dataclasses.replace(cfg.uncertainty, member_start=kind)
        if fraction:  # the fraction of the epochs, for one frame and for a series alike
            settings = dataclasses.replace(settings, member_epochs=float(fraction), member_epochs_series=float(fraction))
        w0, c0 = time.perf_counter(), time.process_time()
        found = run_uncertainty(obs, result.maps, cfg.solver, baselines=baselines, field_sigmas_too=True,
                                settings=settings, progress=False, start=start if kind == "fit" else None)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        for name, mask in masks.items():
            rows.append((setting, name, wall, cpu, coverage(result.maps, truth, found.sigmas, mask)))
    keys = list(rows[0][4])
    print(f"{'member':12s} {'pixels':24s} {'wall s':>7s} {'CPU s':>7s} " + " ".join(f"{k:>10s}" for k in keys))
    for setting, name, wall, cpu, cov in rows:
        print(f"{setting:12s} {name:24s} {wall:7.1f} {cpu:7.1f} " + " ".join(f"{cov[k]:10.3f}" for k in keys))


if __name__ == "__main__":
    main(sys.argv[1:])
