#!/usr/bin/env python
"""Data-parallel training on the built-in plage: time per epoch and memory per rank.

Run as one process, or under torchrun for several (gloo on the CPU, NCCL on
GPUs)::

    OMP_NUM_THREADS=1 python scripts/bench_distributed.py --epochs 20
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 scripts/bench_distributed.py --epochs 20
    python scripts/bench_distributed.py --params      # parameters and all-reduce bytes per version

Fits the reference protocol (every key at its default: the 200 x 178 synthetic
plage, V1) for ``--epochs`` epochs per phase and prints, from rank 0, one
Markdown row: wall and CPU seconds per epoch of each phase (rank 0's; with
several ranks the other ranks' CPU time is also listed), the peak resident
memory of every rank (``getrusage`` maxrss, which includes the ~0.3 GB of an
imported torch), the bytes of each rank's loss tensors (what the sharding
divides) and the final loss. ``--params`` prints, for V0..V6 at the seed
protocol (``--max-resolution`` changed), the trainable parameter count of each phase's field and the bytes
one step's all-reduce carries ((n_parameters + n_tensors + 1) float32).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from hashwfa.encodings import VERSIONS
from hashwfa.training import SolverConfig, TwoPhaseSolver
from hashwfa.training.distributed import init_distributed
from hashwfa.training.model import build_field
from hashwfa.training.solver_config import EncodingConfig, TrainingConfig
from hashwfa.training.loss import PHASES
from hashwfa.wfa.synthetic.plage import synthetic_plage


def parameter_table(max_resolution: int) -> None:
    print("| version | B_los field parameters | B_Q,B_U field parameters | all-reduce per step (phase 1 / 2) |")
    print("|---|---|---|---|")
    for version in VERSIONS:
        cfg = SolverConfig(encoding=EncodingConfig(version=version, max_resolution=max_resolution))
        params = [list(build_field(cfg, phase, backend="torch", device="cpu").parameters()) for phase in PHASES]
        counts = [sum(p.numel() for p in ps) for ps in params]
        mb = [(n + len(ps) + 1) * 4 / 1e6 for n, ps in zip(counts, params)]
        print(f"| V{version} | {counts[0]:,} | {counts[1]:,} | {mb[0]:.2f} MB / {mb[1]:.2f} MB |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20, help="epochs per phase")
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: full batch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--params", action="store_true", help="print the parameter table and exit")
    p.add_argument("--max-resolution", type=int, default=32, help="encoding.max_resolution of --params")
    args = p.parse_args()
    if args.params:
        parameter_table(args.max_resolution)
        return
    torch.set_num_threads(args.threads)
    training = {"epochs_per_phase": args.epochs, "device": args.device}
    if args.batch_size:
        training["batch_size"] = args.batch_size
    cfg = SolverConfig(encoding=EncodingConfig(version=args.version), training=TrainingConfig(**training))
    dist = init_distributed(torch.device(args.device))
    obs = synthetic_plage().observation
    solver = TwoPhaseSolver(obs, cfg, progress=False, dist=dist)
    loss_bytes = sum(b.numel() * b.element_size() for b in solver.loss.buffers())
    cpu0 = time.process_time()
    result = solver.run()
    cpu = time.process_time() - cpu0
    row = {
        "rank": dist.rank,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss_mb": loss_bytes / 1e6,
        "points": solver.loss.n_valid,
        "cpu_per_epoch": cpu / (2 * args.epochs),
    }
    rows = [row]
    if dist.enabled:
        rows = [None] * dist.world_size
        torch.distributed.all_gather_object(rows, row)
    if dist.is_primary:
        t = result.timings
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s) per rank, V{args.version}, "
              f"{obs.ny}x{obs.nx} ({solver.n_valid} points), {args.epochs} epochs per phase")
        print("| ranks | wall s/epoch B_los | wall s/epoch B_Q,B_U | CPU s/epoch per rank | maxrss per rank "
              "| loss tensors per rank | final loss |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {dist.world_size} | {t['blos'] / args.epochs:.3f} | {t['bqbu'] / args.epochs:.3f} | "
              + ", ".join(f"{r['cpu_per_epoch']:.3f}" for r in rows) + " | "
              + ", ".join(f"{r['maxrss_mb']:.0f} MB" for r in rows) + " | "
              + ", ".join(f"{r['loss_mb']:.2f} MB ({r['points']} pts)" for r in rows)
              + f" | {result.final_loss:.6g} |")
    dist.close()


if __name__ == "__main__":
    main()
