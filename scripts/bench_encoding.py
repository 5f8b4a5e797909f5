#!/usr/bin/env python
"""Throughput of the grid encodings: forward + backward, points per second.

Compares, at the reference protocol's sizes (35 600 points = 200 x 178 pixels,
16 levels, 2 features, base resolution 1, max resolution 32):

- ``per-level loop``: the usual way to write a grid in PyTorch, one level at
  a time with 2^D corner lookups, vectorised over points (written out below,
  the baseline to beat);
- ``TorchGrid`` on *new* points every call, and on the *same* points every
  call (the training case: a neural field of an image sees the same pixel
  coordinates at each step, and TorchGrid reuses what depends only on them);
- each encoding version V0..V6 (grid plus its PyTorch layers) on the same
  points, with every available backend;
- one V1 training step (encoding, the reference report's MLP head, a mean-squared loss,
  backward, fused Adam) per interpolation, Linear against the cubic
  CatmullRom and BSpline, as CPU time per step (less disturbed by other
  processes on a shared machine than wall time).

"Same points" calls run inside ``static_coordinates()``, as the training
loop's full-batch steps do.

Run: ``python scripts/bench_encoding.py [--points 35600] [--repeats 20] [--threads 1] [--device cuda]``.
On a GPU the versions run on every backend there (tiny-cuda-nn when it
imports); times there are taken after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from hashwfa.host.allocator import keep_freed_memory
from hashwfa.encodings import HashEncoding, NeuralField, TorchGrid, VERSIONS, static_coordinates, tcnn_status

PRIMES = (1, 2654435761, 805459861, 3674653429)


class PerLevelLoopGrid(torch.nn.Module):
    """The baseline: a plain hash/dense grid that loops over levels.

    Same layout and numbers as TorchGrid for 2-D Linear grids; int64 indices,
    ``torch.remainder`` for the modulo, autograd through advanced indexing.
    """

    def __init__(self, grid: TorchGrid) -> None:
        super().__init__()
        self.layout = grid.layout
        self.params = torch.nn.Parameter(grid.params.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = self.layout.config.n_features_per_level
        table = self.params.view(-1, F)
        outs = []
        for level in range(self.layout.config.n_levels):
            scale = float(self.layout.scales[level])
            res = int(self.layout.resolutions[level])
            size = int(self.layout.sizes[level])
            offset = int(self.layout.offsets[level])
            pos = x * scale + 0.5
            cell = torch.floor(pos)
            frac = pos - cell
            cell = cell.long()
            acc = 0
            for cy in (0, 1):
                for cx in (0, 1):
                    corner = cell + torch.tensor([cx, cy], device=cell.device)
                    if self.layout.hashed[level]:
                        index = (corner[:, 0] * PRIMES[0]) ^ (corner[:, 1] * PRIMES[1])
                        index = index & 0xFFFFFFFF
                    else:
                        index = corner[:, 0] + corner[:, 1] * res
                    index = torch.remainder(index, size) + offset
                    wx = frac[:, 0] if cx else 1 - frac[:, 0]
                    wy = frac[:, 1] if cy else 1 - frac[:, 1]
                    acc = acc + (wx * wy)[:, None] * table[index]
            outs.append(acc)
        return torch.cat(outs, dim=1)


def time_step(module: torch.nn.Module, make_points, repeats: int, static: bool = False) -> float:
    """Median seconds of one forward + backward (sum of outputs) call.

    ``static``: inside ``static_coordinates()`` (the points are never modified).
    """
    times = []
    for i in range(repeats + 2):
        x = make_points()
        sync(x.device)
        start = time.perf_counter()
        with static_coordinates() if static else contextlib.nullcontext():
            module.zero_grad(set_to_none=True)
            out = module(x)
            out.sum().backward()
        sync(x.device)
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step_cpu_seconds(interpolations: list[str], coords: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median CPU seconds of one V1 training step per interpolation (steps interleaved across them)."""
    generator = torch.Generator().manual_seed(1)
    target = torch.randn(coords.shape[0], 1, generator=generator)
    runs = {}
    for name in interpolations:
        encoding = HashEncoding(1, base_resolution=1, max_resolution=32, interpolation=name, backend="torch")
        field = NeuralField(encoding, 1)
        runs[name] = (field, torch.optim.Adam(field.parameters(), lr=5e-3, fused=True), [])
    for i in range(repeats + 2):
        for field, optimizer, times in runs.values():
            start = time.process_time()
            with static_coordinates():
                optimizer.zero_grad(set_to_none=True)
                loss = (field(coords) - target).square().mean()
                loss.backward()
                optimizer.step()
            if i >= 2:  # two warm-up steps (the first one looks the points up)
                times.append(time.process_time() - start)
    return {name: statistics.median(times) for name, (_, _, times) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200 * 178)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    keep_freed_memory()  # same allocator settings as hashwfa-train, for every row
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    n = args.points
    generator = torch.Generator().manual_seed(0)
    fixed_points = torch.rand(n, 2, generator=generator).to(device)
    seed_grid = {
        "otype": "HashGrid",
        "n_levels": 16,
        "n_features_per_level": 2,
        "log2_hashmap_size": 19,
        "base_resolution": 1,
        "per_level_scale": 32 ** (1 / 15),
    }
    print(f"# grid encoding throughput, {n} points, 16 levels x 2 features, max resolution 32")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {where}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| encoding | points | seconds / step | points / s | vs per-level loop |")
    print("|---|---|---|---|---|")

    grid = TorchGrid(2, seed_grid).to(device)
    loop = PerLevelLoopGrid(grid).to(device)
    new_points = lambda: torch.rand(n, 2, generator=generator).to(device)  # noqa: E731
    same_points = lambda: fixed_points  # noqa: E731
    baseline = time_step(loop, new_points, args.repeats)

    def row(name: str, kind: str, seconds: float) -> None:
        print(f"| {name} | {kind} | {seconds * 1e3:.1f} ms | {n / seconds:,.0f} | {baseline / seconds:.1f}x |")

    row("per-level loop (baseline)", "new", baseline)
    row("TorchGrid", "new", time_step(grid, new_points, args.repeats))
    row("TorchGrid", "same", time_step(grid, same_points, args.repeats, static=True))

    coords = fixed_points * 2 - 1  # HashEncoding takes [-1, 1]
    backends = ["torch"] + (["tcnn"] if device.type == "cuda" and tcnn_status()[0] else [])
    for backend in backends:
        for version in sorted(VERSIONS):
            encoding = HashEncoding(version, base_resolution=1, max_resolution=32, backend=backend).to(device)
            row(f"V{version} {VERSIONS[version]} ({backend})", "same", time_step(encoding, lambda: coords, args.repeats, static=True))

    if device.type == "cpu":
        print("\n# V1 training step (seed head, MSE, fused Adam) by interpolation, same points, CPU time\n")
        print("| interpolation | CPU ms / step | vs Linear |")
        print("|---|---|---|")
        steps = training_step_cpu_seconds(["Linear", "CatmullRom", "BSpline"], coords, args.repeats)
        for name, seconds in steps.items():
            print(f"| {name} | {seconds * 1e3:.1f} | {seconds / steps['Linear']:.2f}x |")


if __name__ == "__main__":
    main()
