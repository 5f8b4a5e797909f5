"""Research record for issue 12 (quality sweep); not part of the package.

Trains V1-style neural fields on a synthetic plage with experimental levers
layered on :class:`hashwfa.wfa.solver.TwoPhaseSolver` by subclassing (the
solver itself is not modified):

- explicit regularisation of each field's map on the pixel grid (squared
  gradient and total variation, :mod:`hashwfa.wfa.regularization`), with
  dimensionless weights relative to the data term (see ``Weights``);
- per-group learning rates (grid tables vs MLP), Adam betas/eps;
- per-field encoding overrides;
- a warm start: fit each field to a baseline map before the WFA loss.

Baselines: the pixel-wise WFA and a plain regularised WFA (graph Laplacian,
weight by the discrepancy principle with a noise level estimated from the
data's far wings), written here only to measure against; the production one
lives on branch regwfa.

Usage (one run, JSON line appended to the TSV log)::

    OMP_NUM_THREADS=1 python scripts/research_quality.py --case plage \
        --recipe '{"reg": {"blos": {"grad2": 1.0}}}' --tag test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashwfa.results import error_metrics  # noqa: E402
from hashwfa.wfa.fields import FieldMaps  # noqa: E402
from hashwfa.wfa.physics import wfa_coefficients  # noqa: E402
from hashwfa.wfa.pixelwise import pixel_wfa  # noqa: E402
from hashwfa.wfa.regularization import squared_gradient, total_variation  # noqa: E402
from hashwfa.encodings import static_coordinates  # noqa: E402
from hashwfa.training import PHASES, SolverConfig, TrainingConfig, TwoPhaseSolver, build_field  # noqa: E402
from hashwfa.training.gradients import normalise_gradients  # noqa: E402
from hashwfa.wfa.synthetic import synthetic_plage  # noqa: E402

LOG = Path("/work/notes/quality_runs.tsv")


# ----------------------------------------------------------------------- cases

def make_case(name: str):
    """(observation, truth, description) of a named synthetic case."""
    if name == "plage":
        p = synthetic_plage()
    elif name == "seed1_n3":
        p = synthetic_plage(seed=1, noise=3e-3)
    elif name == "seed2":
        p = synthetic_plage(seed=2)
    elif name == "fe6302":
        # Fe I 6302.5 on an unequal grid: fine near the core, coarser in the wings.
        wl = np.array([-0.30, -0.20, -0.14, -0.09, -0.05, -0.02, 0.0, 0.02, 0.05, 0.09, 0.14, 0.20, 0.30])
        p = synthetic_plage(line="6302", wavelengths=wl, active_indices=(4, 5, 6, 7, 8))
    elif name == "allwl":
        p = synthetic_plage(active_indices=tuple(range(13)))
    else:
        raise SystemExit(f"unknown case {name}")
    return p.observation, p.truth


# ------------------------------------------------------------- noise, baselines

def estimate_noise(obs) -> float:
    """Noise sigma of Q, U, V from their images' finest spatial scales; no truth used.

    Immerkaer's estimator: the 3x3 kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] removes
    any locally quadratic image, so on PSF-blurred (oversampled) data what is
    left is noise, of standard deviation 6 sigma; robust (MAD) over the Q, U, V
    images at the active wavelengths.
    """
    st = obs.stokes[:, :, 1:4, :][..., list(obs.active_indices)]
    k = (st[:-2, :-2] - 2 * st[:-2, 1:-1] + st[:-2, 2:]
         - 2 * st[1:-1, :-2] + 4 * st[1:-1, 1:-1] - 2 * st[1:-1, 2:]
         + st[2:, :-2] - 2 * st[2:, 1:-1] + st[2:, 2:])
    v = obs.valid.reshape(obs.ny, obs.nx)
    ok = v[:-2, :-2] & v[:-2, 2:] & v[2:, :-2] & v[2:, 2:] & v[1:-1, 1:-1]
    vals = k[ok].reshape(-1)
    return float(1.4826 * np.median(np.abs(vals - np.median(vals))) / 6.0)


def _laplacian(ny: int, nx: int, valid: np.ndarray) -> sp.csr_matrix:
    idx = np.arange(ny * nx).reshape(ny, nx)
    v = valid.reshape(ny, nx)
    rows, cols = [], []
    for a, b, ok in ((idx[:, :-1], idx[:, 1:], v[:, :-1] & v[:, 1:]), (idx[:-1, :], idx[1:, :], v[:-1, :] & v[1:, :])):
        rows.append(a[ok]); cols.append(b[ok])
    r = np.concatenate(rows); c = np.concatenate(cols)
    n = ny * nx
    w = sp.coo_matrix((np.ones(r.size), (r, c)), shape=(n, n))
    w = (w + w.T).tocsr()
    return (sp.diags(np.asarray(w.sum(axis=1)).ravel()) - w).tocsr()


def regularized_wfa(obs, noise: float) -> Dict[str, Any]:
    """Laplacian-regularised WFA, weight per quantity by the discrepancy principle."""
    inputs = obs.wfa_inputs()
    cv, cqu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, obs.line, 0.035,
                               qu_form="second_derivative", d2I_dlambda2=inputs.d2I_dlambda2)
    n = obs.ny * obs.nx
    index = inputs.index
    L = _laplacian(obs.ny, obs.nx, obs.valid)
    L = L[index][:, index]
    A = cv.shape[1]

    def solve(coef, datas):
        d = np.sum(coef * coef, axis=1)
        med = np.median(d)
        target = noise ** 2 * len(datas) * coef.shape[0] * A

        def at(alpha):
            M = (sp.diags(d) + alpha * med * L).tocsc()
            lu = spla.splu(M)
            sols = [lu.solve(np.sum(coef * y, axis=1)) for y in datas]
            rss = sum(float(np.sum((y - coef * s[:, None]) ** 2)) for y, s in zip(datas, sols))
            return sols, rss

        lo, hi = -4.0, 4.0
        for _ in range(22):
            mid = 0.5 * (lo + hi)
            _, rss = at(10 ** mid)
            if rss > target:
                hi = mid
            else:
                lo = mid
        alpha = 10 ** (0.5 * (lo + hi))
        sols, rss = at(alpha)
        return alpha, sols

    a_v, (blos,) = solve(cv, [inputs.v])
    a_qu, (bq, bu) = solve(cqu, [inputs.q, inputs.u])

    def to_map(x):
        out = np.full(n, np.nan); out[index] = x
        return out.reshape(obs.ny, obs.nx)

    maps = FieldMaps.from_bqbu(to_map(blos), to_map(bq), to_map(bu))
    return {"maps": maps, "alpha_v": a_v, "alpha_qu": a_qu,
            "median_dv": float(np.median(np.mean(cv * cv, axis=1))),
            "median_dqu": float(np.median(np.mean(cqu * cqu, axis=1)))}


def metrics_row(maps, truth, valid) -> Dict[str, float]:
    m = error_metrics(maps, truth, valid)
    return {"blos": m["blos_rmse"], "bt": m["bt_rmse"], "az": np.degrees(m["azimuth_mae"])}


# ------------------------------------------------------------------ the solver

class ResearchSolver(TwoPhaseSolver):
    """TwoPhaseSolver with the experimental levers of a ``recipe`` dict.

    recipe keys (all optional):
      reg: {"blos"|"bqbu": {"grad2": a, "tv": b, "tv_eps": e}}: weights
           relative to the data term: grad2 weight = a * median_p mean_a c^2
           (the regularised WFA's alpha), TV weight = b * median mean_a c^2 *
           sigma_B, sigma_B = noise / sqrt(median sum_a c^2) (the pixel-wise
           noise of the quantity); tv_eps in units of sigma_B.
      lr_grid, lr_mlp: per-group learning rates (default training.lr);
      betas, eps: Adam's;
      epochs: {"blos": n, "bqbu": n};
      encoding_blos, encoding_bqbu: dict overriding encoding keys per field;
      warm: {"target": "reg"|"pixel", "epochs": n}.
    """

    def __init__(self, observation, config: SolverConfig, recipe: Dict[str, Any], baseline=None, noise=None,
                 auto_alpha=None):
        super().__init__(observation, config, progress=False)
        self.auto_alpha = auto_alpha or {}
        self.recipe = recipe
        train = config.training
        # Per-field encodings.
        for phase in PHASES:
            over = recipe.get(f"encoding_{phase}")
            if over:
                enc = dataclasses.replace(config.encoding, **over)
                cfg = dataclasses.replace(config, encoding=enc)
                self.fields[phase] = build_field(cfg, phase, backend="torch", device=self.device)
        fused = {"fused": True}
        for phase in PHASES:
            net = self.fields[phase]
            grid = [p for n, p in net.named_parameters() if n.startswith("encoding.")]
            mlp = [p for n, p in net.named_parameters() if not n.startswith("encoding.")]
            groups = [{"params": grid, "lr": recipe.get("lr_grid", train.lr)},
                      {"params": mlp, "lr": recipe.get("lr_mlp", train.lr)}]
            self.optimizers[phase] = torch.optim.Adam(
                groups, betas=tuple(recipe.get("betas", (0.9, 0.999))), eps=recipe.get("eps", 1e-8), **fused)
            self.schedulers[phase] = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizers[phase], mode="min", factor=train.plateau_factor, patience=train.plateau_patience)
        obs = observation
        self.shape = (obs.ny, obs.nx)
        self.mask = torch.zeros(obs.ny * obs.nx, dtype=torch.bool)
        self.mask[self.loss.valid_index] = True
        self.mask = self.mask.reshape(self.shape)
        # Regularisation weights in absolute units.
        cv = self.loss.coef_v
        cqu = self.loss.coef_qu
        noise = noise if noise is not None else estimate_noise(obs)
        self.reg = {}
        for phase, coef in (("blos", cv), ("bqbu", cqu)):
            r = recipe.get("reg", {}).get(phase)
            if not r:
                continue
            dmean = float(torch.median(torch.mean(coef * coef, dim=1)))
            dsum = float(torch.median(torch.sum(coef * coef, dim=1)))
            sigma_b = noise / np.sqrt(dsum)
            w = self.loss.weights[3] if phase == "blos" else self.loss.weights[1]
            g2 = r.get("grad2", 0.0)
            if isinstance(g2, str):  # "auto" or "auto*F": the discrepancy-principle alpha of the linear problem
                factor = float(g2.split("*")[1]) if "*" in g2 else 1.0
                g2 = factor * self.auto_alpha[phase]
            tv = r.get("tv", 0.0)
            if isinstance(tv, str):  # "auto*F": F times the discrepancy alpha of the linear problem
                tv = float(tv.split("*")[1]) * self.auto_alpha[phase]
            self.reg[phase] = {
                "grad2": g2 * dmean * w,
                "tv": tv * dmean * w * sigma_b,
                "tv_eps": r.get("tv_eps", 0.1) * sigma_b,
            }
        self.baseline = baseline
        self.warm = recipe.get("warm")
        self._warming = False

    def _map(self, values: torch.Tensor) -> torch.Tensor:
        width = values.shape[1]
        full = torch.zeros(self.shape[0] * self.shape[1], width, dtype=values.dtype, device=values.device)
        full = full.index_copy(0, self.loss.valid_index, values)
        return full.reshape(self.shape[0], self.shape[1], width)

    def _step(self, phase, coords, index):
        net = self.fields[phase]
        optimizer = self.optimizers[phase]
        optimizer.zero_grad(set_to_none=True)
        out = net(coords) * self.scales[phase]
        if self._warming:
            target = self._warm_target[phase]
            loss = torch.mean(torch.square(out - target)) / self._warm_norm[phase]
        else:
            if phase == "blos":
                loss = self.loss(blos=out[:, 0], phase="blos", index=index)
            else:
                loss = self.loss(bqbu=out, phase="bqbu", index=index)
            r = self.reg.get(phase)
            if r:
                m = self._map(out)
                if r["grad2"]:
                    loss = loss + r["grad2"] * squared_gradient(m, self.mask)
                if r["tv"]:
                    loss = loss + r["tv"] * total_variation(m, self.mask, r["tv_eps"])
        loss.backward()
        if self.config.training.grad_normalization:
            normalise_gradients(net.parameters())
        optimizer.step()
        return loss.detach()

    def run(self, **kw):
        epochs = self.recipe.get("epochs")
        t0 = time.perf_counter()
        default_epochs = self.config.training.epochs_per_phase
        for phase in PHASES:
            n = (epochs or {}).get(phase, default_epochs)
            if self.warm:
                self._warm_start(phase)
            self.config = dataclasses.replace(
                self.config, training=dataclasses.replace(self.config.training, epochs_per_phase=n))
            self.epoch = 0
            self._train_phase(phase, None, None)
            self.phase_index += 1
        self.timings["total"] = time.perf_counter() - t0
        return self.evaluate()

    def _warm_start(self, phase):
        t0 = time.perf_counter()
        maps = self.baseline
        idx = self.loss.valid_index
        if phase == "blos":
            tgt = torch.as_tensor(maps.blos.reshape(-1), dtype=torch.float32)[idx][:, None]
        else:
            tgt = torch.stack([torch.as_tensor(maps.bq.reshape(-1), dtype=torch.float32)[idx],
                               torch.as_tensor(maps.bu.reshape(-1), dtype=torch.float32)[idx]], 1)
        self._warm_target = {phase: tgt}
        self._warm_norm = {phase: float(torch.mean(tgt * tgt))}
        self._warming = True
        opt = self.optimizers[phase]
        saved = [dict(g) for g in opt.param_groups]
        with static_coordinates():
            for _ in range(self.warm["epochs"]):
                self._step(phase, self.coords, None)
        self._warming = False
        # Fresh optimiser moments for the WFA loss (the warm fit's are for another objective).
        opt.state.clear()
        for g, s in zip(opt.param_groups, saved):
            g["lr"] = s["lr"]
        self.timings[phase] += time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="plage")
    ap.add_argument("--recipe", default="{}")
    ap.add_argument("--config", default="{}", help="JSON overriding encoding/network/training keys")
    ap.add_argument("--tag", default="")
    ap.add_argument("--baselines", action="store_true")
    ap.add_argument("--save", default=None, help="npz of the maps")
    args = ap.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    obs, truth = make_case(args.case)
    valid = obs.valid.reshape(obs.ny, obs.nx)
    noise = estimate_noise(obs)
    recipe = json.loads(args.recipe)
    over = json.loads(args.config)
    base = SolverConfig(training=TrainingConfig(device="cpu"))
    cfg = SolverConfig(
        encoding=dataclasses.replace(base.encoding, **over.get("encoding", {})),
        network=dataclasses.replace(base.network, **over.get("network", {})),
        training=dataclasses.replace(base.training, **over.get("training", {})),
    )
    baseline = None
    auto_alpha = None
    if args.baselines or recipe.get("warm") or "auto" in args.recipe:
        t0 = time.perf_counter()
        cache = Path(f"/tmp/quality_reg_{args.case}.pt")
        if cache.exists() and not args.baselines:
            reg = torch.load(cache, weights_only=False)
        else:
            reg = regularized_wfa(obs, noise)
            torch.save(reg, cache)
        treg = time.perf_counter() - t0
        pix = pixel_wfa(obs)
        if args.baselines:
            print(json.dumps({"case": args.case, "noise_est": noise,
                              "pixel": metrics_row(pix, truth, valid), "reg": metrics_row(reg["maps"], truth, valid),
                              "alpha_v": reg["alpha_v"], "alpha_qu": reg["alpha_qu"], "reg_time": treg}))
        w = recipe.get("warm") or {}
        baseline = reg["maps"] if w.get("target", "reg") == "reg" else pix
        auto_alpha = {"blos": reg["alpha_v"], "bqbu": reg["alpha_qu"]}
    t0 = time.perf_counter()
    solver = ResearchSolver(obs, cfg, recipe, baseline=baseline, noise=noise, auto_alpha=auto_alpha)
    res = solver.run()
    total = time.perf_counter() - t0
    train_time = solver.timings["blos"] + solver.timings["bqbu"]
    row = metrics_row(res.maps, truth, valid)
    out = {"tag": args.tag, "case": args.case, **{k: round(v, 2) for k, v in row.items()},
           "train_s": round(train_time, 2), "total_s": round(total, 2),
           "threads": torch.get_num_threads(), "recipe": recipe, "config": over,
           "obj": {p: (res.history[p]["loss"][-1] if res.history[p]["loss"] else None) for p in PHASES}}
    print(json.dumps(out))
    new = not LOG.exists()
    with LOG.open("a") as f:
        if new:
            f.write("time\ttag\tcase\tblos\tbt\taz\ttrain_s\tthreads\trecipe\tconfig\n")
        f.write(f"{time.strftime('%H:%M:%S')}\t{args.tag}\t{args.case}\t{row['blos']:.2f}\t{row['bt']:.2f}\t"
                f"{row['az']:.2f}\t{train_time:.2f}\t{torch.get_num_threads()}\t{json.dumps(recipe)}\t{json.dumps(over)}\t{json.dumps(out['obj'])}\n")
    if args.save:
        extra = {}
        if baseline is not None:
            pix = pixel_wfa(obs)
            extra = dict(pblos=pix.blos, pbt=pix.bt, paz=pix.azimuth,
                         rblos=reg["maps"].blos, rbt=reg["maps"].bt, raz=reg["maps"].azimuth)
        np.savez_compressed(args.save, blos=res.maps.blos, bt=res.maps.bt, az=res.maps.azimuth,
                            tblos=truth.blos, tbt=truth.bt, taz=truth.azimuth, **extra)




def step_time_ratio(recipe: Dict[str, Any], repeats: int = 7, steps: int = 10) -> Dict[str, float]:
    """Per-step cost of ``recipe`` relative to V1, interleaved in one process.

    On a shared machine wall times of whole runs vary several-fold with the
    other load; blocks of ``steps`` training steps of V1 and of the recipe,
    alternated ``repeats`` times, see the same load, so the ratio of their
    medians is what the recipe costs. Returns medians in seconds per step.
    """
    obs, _ = make_case("plage")
    noise = estimate_noise(obs)
    reg = torch.load(Path("/tmp/quality_reg_plage.pt"), weights_only=False)
    alpha = {"blos": reg["alpha_v"], "bqbu": reg["alpha_qu"]}
    cfg = SolverConfig(training=TrainingConfig(device="cpu"))
    solvers = {"v1": ResearchSolver(obs, cfg, {}, noise=noise, auto_alpha=alpha),
               "recipe": ResearchSolver(obs, cfg, recipe, noise=noise, auto_alpha=alpha)}
    times: Dict[str, list] = {k: [] for k in solvers}
    for _ in range(repeats):
        for name, s in solvers.items():
            t0 = time.perf_counter()
            for phase in PHASES:
                with static_coordinates():
                    for _ in range(steps):
                        s._step(phase, s.coords, None)
            times[name].append((time.perf_counter() - t0) / (2 * steps))
    med = {k: float(np.median(v)) for k, v in times.items()}
    med["ratio"] = med["recipe"] / med["v1"]
    return med


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--step-time":
        torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(step_time_ratio(json.loads(sys.argv[2]))))
    else:
        main()
