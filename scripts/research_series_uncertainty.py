#!/usr/bin/env python
"""Research (issue 14, item 5): the neural field's local-risk sigmas on a time series.

``train`` fits the synthetic series (:mod:`hashwfa.wfa.synthetic_series`) as
``hashwfa-train`` does (one joint (t, y, x) field, or one field per frame with
``--frames independent``), then ``--members`` bootstrap members: the same fit,
seed ``training.seed + 1000 k``, on the series plus a fresh draw of the
estimated noise (the redraws of :func:`hashwfa.wfa.field_uncertainty.field_sigmas`).
Every map goes to an .npz. ``analyse`` computes the local-risk sigmas
(:func:`hashwfa.wfa.field_uncertainty.local_risk_sigmas`) for a grid of
windows, spatial and along time, and their coverage against the truth (the
only place the truth is read).

    OMP_NUM_THREADS=1 python scripts/research_series_uncertainty.py train --case A --out /tmp/sunc
    OMP_NUM_THREADS=1 python scripts/research_series_uncertainty.py analyse --out /tmp/sunc
    python scripts/research_series_uncertainty.py fits RUN/field.fits     # coverage of a hashwfa-train run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from hashwfa.config import load_config
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.training.uncertainty import member_seed
from hashwfa.wfa.field_uncertainty import gaussian_smooth, local_risk_sigmas, redraw_noise
from hashwfa.wfa.fields import FieldMaps, FieldSigmas
from hashwfa.wfa.noise import estimate_noise
from hashwfa.wfa.pixelwise import pixel_wfa
from hashwfa.wfa.pixelwise_uncertainty import pixel_wfa_sigmas
from hashwfa.wfa.synthetic_series import synthetic_series

REPO = Path(__file__).resolve().parents[1]
#: BENCHMARKS.md section 10's cases A and B with the WFA's own profiles (model "wfa"); C: B at noise 3e-3.
CASES = {
    "A": dict(seed=0, noise=1e-3, flow=(0.25, 0.5), azimuth_rate=2.0),
    "B": dict(seed=1, noise=1e-3, flow=(0.5, -0.3), azimuth_rate=3.0),
    "C": dict(seed=1, noise=3e-3, flow=(0.5, -0.3), azimuth_rate=3.0),
    # Run after the window along time was fixed: Fe I 6302, seed 2, noise 3e-3.
    "D": dict(seed=2, noise=3e-3, flow=(0.25, 0.5), azimuth_rate=2.0, line="6302"),
    # Fresh, for a blind check of the variants (branch sigcal): seed 3, noise 2e-3, another flow.
    "E": dict(seed=3, noise=2e-3, flow=(0.4, 0.2), azimuth_rate=2.5),
}
QUANTITIES = ("blos", "bq", "bu")


def _solver_config(args, seed: int, n_valid: int):
    cfg = load_config(args.config, ["training.device=cpu", "encoding.backend=torch",
                                    f"encoding.max_resolution={args.max_resolution}",
                                    f"training.frames={args.frames}", *args.set])
    base = cfg.solver
    training = dataclasses.replace(base.training, seed=seed, batch_size=max(base.training.batch_size, n_valid))
    return dataclasses.replace(base, training=training)


def _fit(args, obs, seed: int):
    config = _solver_config(args, seed, obs.n_valid)
    t0 = time.perf_counter()
    solver = IndependentFrames(obs, config, progress=False) if args.frames == "independent" else \
        TwoPhaseSolver(obs, config, progress=False)
    maps = solver.run().maps
    return maps, time.perf_counter() - t0


def _save_maps(store, prefix, maps):
    for q in ("blos", "bq", "bu"):
        store[f"{prefix}_{q}"] = getattr(maps, q)


def train(args) -> None:
    torch.set_num_threads(1)
    case = CASES[args.case]
    series = synthetic_series(nt=args.nt, ny=args.ny, nx=args.nx, model=args.model, **case)
    obs = series.observation()
    noise = estimate_noise(obs)
    seed = 0
    store = {}
    field, t_fit = _fit(args, obs, seed)
    _save_maps(store, "field", field)
    _save_maps(store, "truth", series.truth)
    _save_maps(store, "pix", pixel_wfa(obs))
    sig_w = pixel_wfa_sigmas(obs, noise)
    _save_maps(store, "sigw", sig_w)
    rng = np.random.default_rng(seed)
    times = [t_fit]
    for k in range(1, args.members + 1):
        data = redraw_noise(obs, noise, rng)
        maps, t = _fit(args, data, member_seed(seed, k))
        times.append(t)
        _save_maps(store, f"m{k}", maps)
        _save_maps(store, f"m{k}pix", pixel_wfa(data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.case}_{args.frames}_{args.model}"
    np.savez_compressed(out / f"{name}.npz", **store)
    meta = {"args": vars(args), "noise": noise.per_stokes.tolist(), "times_s": times}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1))
    print(name, "fit + members seconds:", [round(t, 1) for t in times], flush=True)


def _maps(z, prefix) -> FieldMaps:
    return FieldMaps.from_bqbu(z[f"{prefix}_blos"], z[f"{prefix}_bq"], z[f"{prefix}_bu"])


def coverage(field: FieldMaps, truth: FieldMaps, sig: FieldSigmas):
    d_az = np.abs((field.azimuth - truth.azimuth + math.pi / 2) % math.pi - math.pi / 2)
    errors = {"blos": np.abs(field.blos - truth.blos), "bt": np.abs(field.bt - truth.bt), "azimuth": d_az,
              "bq": np.abs(field.bq - truth.bq), "bu": np.abs(field.bu - truth.bu)}
    out = {}
    for q, e in errors.items():
        s = getattr(sig, q)
        out[q] = (float(np.mean(e <= s)), float(np.mean(e <= 2 * s)))
    return out


def _gaussian_propagation(field: FieldMaps, risk_q: np.ndarray, risk_u: np.ndarray, nodes: int = 12):
    """B_t and azimuth sigmas by exact (non-linear) propagation of Gaussian B_Q, B_U errors.

    The root mean square over ``e ~ N(0, diag(risk_q, risk_u))`` of
    ``B_t(f) - B_t(f - e)`` and of the azimuth difference (modulo pi), by a
    ``nodes x nodes`` Gauss-Hermite rule per point, instead of the package's
    linearisation and caps (which it reduces to at high and low signal).
    """
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    gx, gy = (g.ravel() for g in np.meshgrid(x, x, indexing="ij"))
    weight = np.outer(w, w).ravel()
    bq = field.bq[..., None] - np.sqrt(risk_q)[..., None] * gx
    bu = field.bu[..., None] - np.sqrt(risk_u)[..., None] * gy
    d_bt = field.bt[..., None] - (bq * bq + bu * bu) ** 0.25
    d_az = (field.azimuth[..., None] - 0.5 * np.arctan2(bu, bq) + math.pi / 2) % math.pi - math.pi / 2
    return np.sqrt(np.sum(weight * d_bt ** 2, -1)), np.sqrt(np.sum(weight * d_az ** 2, -1))


def _variant_sigmas(field, pix, sigw, members, members_pix, risk, propagation, wv, wq, frames,
                    bt_bias: str = "none") -> FieldSigmas:
    """Research variants of the B_Q, B_U risk and its propagation (BENCHMARKS.md section 6,
    "Time series", branch ``sigcal``); measured, not adopted by the package.

    ``risk``: "max" is the package's ``max(G*SURE, G*var_f)``; "half" floors at half
    the member spread, ``max(G*SURE, G*var_f / 2)`` (``E[(f_1 - f)^2] = 2 var f``);
    "proportional" splits the risk into the fit's variance ``G*var_f / 2`` and a bias^2
    ``max(G*SURE - G*var_f / 2, 0)`` spread over the window in proportion to the field's
    own ``P = B_Q^2 + B_U^2`` (``bias^2(x) = P(x) * that / G*P``: a smoother's bias
    follows the structure's amplitude). ``propagation``: "linear" is the package's
    (linearisation with caps), "gaussian" :func:`_gaussian_propagation`. ``bt_bias``:
    "simex" adds in quadrature to the B_t sigma the window mean of ``B_t(member) - B_t(f)``
    (simulation-extrapolation: the member's data carry twice the noise variance, so its
    excess B_t estimates the field's own noise-induced B_t bias, the rectification of
    ``|B_QU|``). B_los is the package's.
    """
    base = local_risk_sigmas(field, pix, sigw, members, members_pix, smoothing_px=wv, smoothing_qu_px=wq,
                             smoothing_frames=frames)
    if risk == "max" and propagation == "linear" and bt_bias == "none":
        return base
    p = field.bq ** 2 + field.bu ** 2
    r = {"bq": base.bq ** 2, "bu": base.bu ** 2}
    if risk != "max":
        for q in ("bq", "bu"):
            f, w, sw = getattr(field, q), getattr(pix, q), getattr(sigw, q)
            var_f = np.mean([(getattr(m, q) - f) ** 2 for m in members], axis=0)
            cov_fw = np.mean([(getattr(m, q) - f) * (getattr(mw, q) - w) for m, mw in zip(members, members_pix)],
                             axis=0)
            raw = np.where(np.isfinite(w) & np.isfinite(sw), (f - w) ** 2 - sw ** 2 + 2.0 * cov_fw, np.nan)
            s, v = gaussian_smooth(raw, wq, frames), 0.5 * gaussian_smooth(var_f, wq, frames)
            r[q] = np.fmax(s, v) if risk == "half" else v + np.fmax(s - v, 0.0) * p / gaussian_smooth(p, wq, frames)
    if propagation == "gaussian":
        sig_bt, sig_az = _gaussian_propagation(field, r["bq"], r["bu"])
    else:
        bq, bu = field.bq, field.bu
        risk_qu = 0.5 * (r["bq"] + r["bu"])
        with np.errstate(divide="ignore", invalid="ignore"):
            lin_bt = np.sqrt(bq * bq * r["bq"] + bu * bu * r["bu"]) / (2.0 * p ** 0.75)
            lin_az = np.sqrt(bu * bu * r["bq"] + bq * bq * r["bu"]) / (2.0 * p)
        sig_bt = np.fmin(np.where(p > 0, lin_bt, np.inf), risk_qu ** 0.25)
        sig_az = np.where(np.isnan(risk_qu), np.nan,
                          np.fmin(np.where(p > 0, lin_az, np.inf), math.pi / math.sqrt(12.0)))
    if bt_bias == "simex":
        excess = gaussian_smooth(np.mean([m.bt for m in members], axis=0) - field.bt, wq, frames)
        sig_bt = np.sqrt(sig_bt ** 2 + excess ** 2)
    return FieldSigmas(blos=base.blos, bq=np.sqrt(r["bq"]), bu=np.sqrt(r["bu"]), bt=sig_bt, azimuth=sig_az)


def analyse(args) -> None:
    rows = []
    for path in sorted(Path(args.out).glob("*.npz")):
        z = np.load(path)
        field, truth, pix = _maps(z, "field"), _maps(z, "truth"), _maps(z, "pix")
        sigw = FieldSigmas(blos=z["sigw_blos"], bq=z["sigw_bq"], bu=z["sigw_bu"], bt=z["sigw_bq"] * 0,
                           azimuth=z["sigw_bq"] * 0)
        k = 1
        members, members_pix = [], []
        while f"m{k}_blos" in z and k <= args.members:
            members.append(_maps(z, f"m{k}"))
            members_pix.append(_maps(z, f"m{k}pix"))
            k += 1
        rms = {q: float(np.sqrt(np.mean((getattr(field, q) - getattr(truth, q)) ** 2))) for q in ("blos", "bt")}
        print(f"{path.stem}: field rms B_los {rms['blos']:.1f} G, B_t {rms['bt']:.1f} G; {len(members)} member(s)")
        for frames in [float(v) for v in args.frames_windows.split(",")]:
            for wv, wq in [tuple(float(x) for x in w.split("/")) for w in args.windows.split(",")]:
                sig = _variant_sigmas(field, pix, sigw, members, members_pix, args.risk, args.propagation,
                                      wv, wq, frames, args.bt_bias)
                cov = coverage(field, truth, sig)
                rows.append({"run": path.stem, "frames": frames, "window": [wv, wq], "risk": args.risk,
                             "propagation": args.propagation, "bt_bias": args.bt_bias, **cov})
                label = (f"  risk {args.risk}, {args.propagation}, bt bias {args.bt_bias}, "
                         f"window {wv:g}/{wq:g} px, {frames:g} frames: ")
                print(label + "  ".join(
                    f"{q} {c[0]:.3f}/{c[1]:.3f}" for q, c in cov.items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def from_fits(args) -> None:
    """Coverage of the SIGMA_* maps a hashwfa-train run wrote, against TRUE_* of the same field.fits."""
    from astropy.io import fits
    from scipy.special import erfinv

    levels = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.683, 0.7, 0.8, 0.9, 0.954, 0.99)
    for path in args.files:
        field, truth = FieldMaps.from_fits(path), FieldMaps.from_fits(path, "TRUE_")
        with fits.open(path) as hdul:
            sig = FieldSigmas(**{q: np.array(hdul[f"SIGMA_{e}"].data, dtype=np.float64) for q, e in
                                 (("blos", "BLOS"), ("bq", "BQ"), ("bu", "BU"), ("bt", "BTRANS"),
                                  ("azimuth", "AZIMUTH"))})
        cov = coverage(field, truth, sig)
        print(path, "  ".join(f"{q} {c[0]:.3f}/{c[1]:.3f}" for q, c in cov.items()))
        d_az = np.abs((field.azimuth - truth.azimuth + math.pi / 2) % math.pi - math.pi / 2)
        for q, e in (("blos", np.abs(field.blos - truth.blos)), ("bt", np.abs(field.bt - truth.bt)),
                     ("azimuth", d_az)):
            s = getattr(sig, q)
            curve = [float(np.mean(e <= math.sqrt(2.0) * erfinv(p) * s)) for p in levels]
            print(f"  curve {q}: " + " | ".join(f"{c:.3f}" for c in curve))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--case", choices=sorted(CASES), default="A")
    t.add_argument("--model", default="wfa")
    t.add_argument("--frames", choices=("joint", "independent"), default="joint")
    t.add_argument("--nt", type=int, default=8)
    t.add_argument("--ny", type=int, default=96)
    t.add_argument("--nx", type=int, default=96)
    t.add_argument("--members", type=int, default=1)
    t.add_argument("--config", default=str(REPO / "configs" / "v1.json"))
    t.add_argument("--max-resolution", type=int, default=16)
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--out", required=True)
    a = sub.add_parser("analyse")
    a.add_argument("--out", required=True)
    a.add_argument("--members", type=int, default=99)
    a.add_argument("--windows", default="3/6,2/4,4/8")
    a.add_argument("--frames-windows", default="0,0.5,1,2")
    a.add_argument("--json", default=None)
    a.add_argument("--risk", choices=("max", "half", "proportional"), default="max",
                   help="the B_Q, B_U risk: the package's (max) or a research variant (_variant_sigmas)")
    a.add_argument("--propagation", choices=("linear", "gaussian"), default="linear",
                   help="B_Q, B_U risk to B_t, azimuth: the package's (linear) or _gaussian_propagation")
    a.add_argument("--bt-bias", choices=("none", "simex"), default="none",
                   help="add the members' excess B_t (simulation-extrapolation) to the B_t sigma")
    f = sub.add_parser("fits")
    f.add_argument("files", nargs="+")
    args = parser.parse_args()
    {"train": train, "analyse": analyse, "fits": from_fits}[args.command](args)


if __name__ == "__main__":
    main()
