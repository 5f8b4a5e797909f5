#!/usr/bin/env python
"""Where the time of one ``hashwfa-train`` run goes, stage by stage.

Runs ``hashwfa-train CONFIG [--set ...]`` in this process with the stage
functions wrapped by timers (monkeypatched here; the package is not changed)
and prints a table of wall and process CPU seconds per stage. Stages nest
(the regularised WFA runs inside the solver's setup, the member's phases
inside the sigma step): each stage's *own* time excludes the stages timed
inside it, so the own times add up to the run's total.

Stages: read/scan (load_data), noise, pixel-wise WFA, regularised WFA (with
its weight search), solver setup, warm start, phase 1, phase 2, evaluate,
bootstrap member (its setup, phases and evaluation, under "member: ..."),
sigma maps (the member's redraw and pixel-wise WFA and the risk's array
work), WFA sigmas, writing (field.fits, history.json, model.pt), quick-look.

Run: ``OMP_NUM_THREADS=1 python scripts/profile_run.py configs/recommended.json [--set key=value ...]
[--threads 1] [--repeats 1]``. The output goes to a temporary directory.
With ``--repeats N`` the table shows the median over N runs of each stage.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Tuple

import torch

# The hashwfa of this checkout, whatever the working directory (python scripts/... puts scripts/ first).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StageTimer:
    """Own (exclusive) wall and CPU seconds per stage label; nested stages are subtracted."""

    def __init__(self) -> None:
        self.wall: Dict[str, float] = defaultdict(float)
        self.cpu: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self.order: List[str] = []
        self._stack: List[List[float]] = []  # [child wall, child cpu] per open stage
        self.member_depth = 0

    def label(self, name: str) -> str:
        return f"member: {name}" if self.member_depth and not name.startswith("sigma") else name

    @contextlib.contextmanager
    def stage(self, name: str):
        label = self.label(name)
        if label not in self.order:
            self.order.append(label)
        self._stack.append([0.0, 0.0])
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dw, dc = time.perf_counter() - w0, time.process_time() - c0
            child_w, child_c = self._stack.pop()
            self.wall[label] += dw - child_w
            self.cpu[label] += dc - child_c
            self.calls[label] += 1
            if self._stack:
                self._stack[-1][0] += dw
                self._stack[-1][1] += dc


def _wrap(timer: StageTimer, owner: Any, attr: str, name: Any, member: bool = False) -> Callable[[], None]:
    """Replace ``owner.attr`` by a timed version; ``name`` may be a callable of the arguments."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        label = name(*args, **kwargs) if callable(name) else name
        if member:
            timer.member_depth += 1
        try:
            with timer.stage(label):
                return original(*args, **kwargs)
        finally:
            if member:
                timer.member_depth -= 1

    setattr(owner, attr, timed)
    return lambda: setattr(owner, attr, original)


def install(timer: StageTimer) -> List[Callable[[], None]]:
    """Wrap the stage functions where the run looks them up; returns the undo callables."""
    import hashwfa.run.ranks as ranks
    import hashwfa.run.train as run_train
    import hashwfa.run.outputs as outputs
    import hashwfa.training.bootstrap as bootstrap
    import hashwfa.training.solver as solver
    import hashwfa.wfa.baselines.products as products
    import hashwfa.wfa.uncertainty.local_risk as local_risk

    phase_names = {"blos": "phase 1 (B_los)", "bqbu": "phase 2 (B_Q, B_U)"}
    undo = [
        _wrap(timer, ranks, "load_data", "read/scan"),
        _wrap(timer, products, "resolve_noise", "noise"),
        _wrap(timer, products, "pixel_wfa", "pixel-wise WFA"),
        _wrap(timer, products, "regularized_wfa", "regularised WFA (weight search)"),
        _wrap(timer, solver.TwoPhaseSolver, "__init__", "solver setup"),
        _wrap(timer, solver.TwoPhaseSolver, "_warm_start", "warm start"),
        _wrap(timer, solver.TwoPhaseSolver, "_train_phase", lambda self, phase, *a, **k: phase_names[phase]),
        _wrap(timer, solver.TwoPhaseSolver, "evaluate", "evaluate"),
        _wrap(timer, bootstrap, "field_sigmas", "sigma maps (redraw, member's WFA, risk)"),
        _wrap(timer, bootstrap, "member_solver", "solver setup", member=True),
        _wrap(timer, bootstrap, "pixel_wfa_sigmas", "WFA sigmas"),
        _wrap(timer, local_risk, "pixel_wfa_sigmas", "WFA sigmas"),
        _wrap(timer, run_train, "write_quicklook", "quick-look"),
        _wrap(timer, outputs, "write_field_fits", "writing"),
        _wrap(timer, outputs, "write_json", "writing"),
        _wrap(timer, outputs, "save_torch", "writing"),
    ]
    # The member's phases: TwoPhaseSolver.run called on a member solver.
    original_run = solver.TwoPhaseSolver.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        member = getattr(self, "_profile_member", False)
        timer.member_depth += member
        try:
            return original_run(self, *args, **kwargs)
        finally:
            timer.member_depth -= member

    solver.TwoPhaseSolver.run = run
    undo.append(lambda: setattr(solver.TwoPhaseSolver, "run", original_run))
    # Mark solvers made by member_solver.
    timed_member_solver = bootstrap.member_solver

    def member_solver(*args: Any, **kwargs: Any) -> Any:
        made = timed_member_solver(*args, **kwargs)
        made._profile_member = True
        return made

    bootstrap.member_solver = member_solver
    undo.append(lambda: setattr(bootstrap, "member_solver", timed_member_solver))
    return undo


def profile_once(config: str, sets: List[str], quiet: bool = True) -> Tuple[StageTimer, float, float]:
    """One run of hashwfa-train with timers; returns the timer, total wall and CPU seconds."""
    from hashwfa.cli.train import main

    timer = StageTimer()
    undo = install(timer)
    try:
        with tempfile.TemporaryDirectory() as out:
            argv = [config, "--out", os.path.join(out, "run"), "--quiet"] if quiet else [config, "--out", os.path.join(out, "run")]
            for item in sets:
                argv += ["--set", item]
            w0, c0 = time.perf_counter(), time.process_time()
            with timer.stage("other (config, checks, errors)"):
                rc = main(argv)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if rc != 0:
                raise SystemExit(f"hashwfa-train exited with {rc}")
    finally:
        for u in reversed(undo):
            u()
    return timer, wall, cpu


def print_table(runs: List[Tuple[StageTimer, float, float]], title: str) -> None:
    order: List[str] = []
    for timer, _, _ in runs:
        for label in timer.order:
            if label not in order:
                order.append(label)
    total_wall = statistics.median(w for _, w, _ in runs)
    total_cpu = statistics.median(c for _, _, c in runs)
    print(f"\n{title}")
    print(f"{'stage':44s} {'wall s':>8s} {'share':>6s} {'CPU s':>8s} {'calls':>5s}")
    for label in order:
        wall = statistics.median(t.wall.get(label, 0.0) for t, _, _ in runs)
        cpu = statistics.median(t.cpu.get(label, 0.0) for t, _, _ in runs)
        calls = max(t.calls.get(label, 0) for t, _, _ in runs)
        print(f"{label:44s} {wall:8.2f} {100 * wall / total_wall:5.1f}% {cpu:8.2f} {calls:5d}")
    print(f"{'total':44s} {total_wall:8.2f} {100.0:5.1f}% {total_cpu:8.2f}")


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} thread(s); load average at start {os.getloadavg()[0]:.2f}")
    runs = [profile_once(args.config, args.sets) for _ in range(args.repeats)]
    print_table(runs, f"hashwfa-train {args.config} {' '.join('--set ' + s for s in args.sets)}"
                f" (median of {args.repeats})")
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
