"""The reference report's table: every version trained on the same data, timed, and judged against the
truth when it is known, next to the pixel-wise and the regularised WFA (the job of ``hashwfa-bench``,
:mod:`hashwfa.cli.bench`)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

import hashwfa
from hashwfa.config.run_config import RunConfig, apply_overrides, read_json_config, validate_config
from hashwfa.config.shipped import shipped_config
from hashwfa.encodings.registry import REGISTRY
from hashwfa.errors import HashwfaError
from hashwfa.run.data import load_data
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.divergence import DivergenceError
from hashwfa.training.loss import WFALoss
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.physics.maps import map_errors

__all__ = ["BenchRow", "base_config", "version_config", "run_benchmark", "format_table", "machine"]

PROG = "hashwfa-bench"
PHASE_TIMINGS = ("blos", "bqbu", "evaluate")
#: The recommended configuration as shipped with the package (the row REC of ``--recommended``).
RECOMMENDED = shipped_config("recommended")


@dataclass
class BenchRow:
    """One line of the table: a version (or a classic baseline, ``version=None``).

    ``seconds`` are the per-repeat training times [s]; ``errors`` holds
    :func:`~hashwfa.wfa.physics.maps.map_errors` when the truth is known.
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


#: Without a config file the benchmark runs the reference protocol: these keys, where the package's
#: defaults have moved on from it (every wavelength, the spline derivative), keep the reference report's values.
SEED_PROTOCOL: Dict[str, Any] = {"data": {"active_indices": [5, 6, 7]},
                                 "physics": {"derivative": "three_point", "derivative_qu": "three_point"}}


def base_config(config_path: Optional[str], overrides: Sequence[str]) -> Dict[str, Any]:
    """The raw config every version starts from: a file, or the reference protocol (:data:`SEED_PROTOCOL`
    over the defaults), plus ``--set``."""
    raw = read_json_config(config_path) if config_path else json.loads(json.dumps(SEED_PROTOCOL))
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
    runs = [(f"V{v}", v, REGISTRY[v].report_name, version_config(raw, v, source, base_dir)) for v in versions]
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
                    row.errors = map_errors(result.maps, data.truth, valid)
            row.seconds.append(seconds)
            say(f"  {name} run {repeat + 1}/{repeats}: {seconds:.2f} s, final loss {result.final_loss:.4e}")
        rows.append(row)
    physics = first.physics  # the same for every version
    baselines = Baselines(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form, given_noise=data.noise)
    wfa = baselines.pixelwise
    loss = WFALoss(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
    row = BenchRow(version=None, description="pixel-wise WFA", final_loss=loss.map_loss(wfa.blos, wfa.bq, wfa.bu))
    if data.truth is not None:
        row.errors = map_errors(wfa, data.truth, valid)
    rows.append(row)
    start = time.perf_counter()
    try:
        reg = baselines.regularized
    except HashwfaError as exc:  # e.g. an image too small for the noise estimate
        say(f"  no regularised WFA row: {exc}")
        return rows
    seconds = time.perf_counter() - start
    maps = reg.maps
    row = BenchRow(version=None, label="REG",
                   description=f"regularised WFA (alpha {reg.alpha_v:.3g} / {reg.alpha_qu:.3g}, {reg.rule_v})",
                   final_loss=loss.map_loss(maps.blos, maps.bq, maps.bu), seconds=[seconds])
    if data.truth is not None:
        row.errors = map_errors(maps, data.truth, valid)
    say(f"  regularised WFA: {seconds:.2f} s, weights {reg.alpha_v:.3g} (V), {reg.alpha_qu:.3g} (Q/U)")
    rows.append(row)
    return rows


def _relative(value: Optional[float], reference: Optional[float]) -> str:
    if value is None or reference is None or reference == 0:
        return "-"
    return f"{100.0 * (value / reference - 1.0):+.1f}%"


def format_table(rows: Sequence[BenchRow]) -> str:
    """The reference report's table, plus errors against the truth when known."""
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


def machine() -> Dict[str, Any]:
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


