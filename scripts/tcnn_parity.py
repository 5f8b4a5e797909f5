"""tiny-cuda-nn parity: the torch grid against a candidate backend on the same parameters.

Used by ``scripts/gpu_check.py parity`` (a report of every check) and by
``tests/gpu/test_tcnn_parity.py`` (the same checks as pytest tests); both load
this file by path. It is not part of the ``hashwfa`` package: only the checks
use it.

A case is a function ``(..., candidate, device, n_points, seed)`` returning a
list of check results ``{"name", "passed", ...details}``:

- :func:`grid_case`: values, table gradients and coordinate gradients of a
  HashGrid or DenseGrid, 2-D or 3-D, Linear or Smoothstep;
- :func:`version_case`: a version V0..V6 through ``HashEncoding(backend=...)``
  in a ``NeuralField``: output, every parameter's gradient, the coordinate
  gradient, and the model moved torch -> candidate -> torch and onto the CPU
  by ``state_dict``.

:func:`parity_cases` lists them all. The candidate is ``tcnn`` on the GPU, or
``torch`` (a second, independently built torch grid, which checks that the
checks themselves run, e.g. on a machine without a GPU), or ``torch64`` (the
torch grid in float64, which rounds nothing to float32: a difference of the
same kind and size as tcnn's, so it exercises the tolerances).

Tolerances (the rounding the torch twin documents in
``hashwfa/encodings/grid_config.py`` and ``grid_lookup.py``): on the GPU
tiny-cuda-nn recomputes each level's scale with fast-math ``exp2f``, within
an ulp or two of the host value the twin uses, and rounds the position
``scale * x + 0.5`` once, so a position may differ by a few float32 ulps
(:data:`POSITION_ULPS`); the rest is float32 arithmetic in another order
(:data:`ARITHMETIC_EPS`). Each grid check derives its bound from those two
numbers and the data (largest table value, the upstream gradient). Points
within :data:`POSITION_ULPS` ulps of a cell border in some level are left out
of the coordinate-gradient check (there a Linear grid's gradient jumps, and
the two backends may put the point in neighbouring cells); their number is
reported. Versions and models put PyTorch layers (the same code on both
sides) on the grid; they are compared with a relative tolerance
(:data:`COMPOSITE_RTOL` of the reference's largest magnitude).
"""

from __future__ import annotations

import io
from typing import Any, Callable

#: Position error, in float32 ulps of the position, allowed between backends.
POSITION_ULPS = 4
#: Relative rounding allowed per float32 operation chain (a few ulps of 2^-24).
ARITHMETIC_EPS = 2.0**-21
#: Relative tolerance of composite modules (versions, models).
COMPOSITE_RTOL = 1e-3


def max_abs(t: Any) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def _result(name: str, passed: bool, **detail: Any) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), **detail}


def compare_within(name: str, candidate: Any, reference: Any, tolerance: Any, exclude: Any = None) -> dict[str, Any]:
    """Element-wise ``|candidate - reference| <= tolerance`` (tolerance a scalar or a broadcastable tensor).

    ``exclude``: a boolean mask of elements left out. Reports the largest
    difference, the largest ratio of difference to tolerance and how many
    elements were over.
    """
    import torch

    candidate = candidate.detach().double().cpu()
    reference = reference.detach().double().cpu()
    if candidate.shape != reference.shape:
        return _result(name, False, reason=f"shapes differ: {list(candidate.shape)} vs {list(reference.shape)}")
    tolerance = torch.as_tensor(tolerance, dtype=torch.float64).cpu().expand_as(reference)
    diff = (candidate - reference).abs()
    finite = torch.isfinite(candidate) & torch.isfinite(reference)
    keep = torch.ones_like(finite) if exclude is None else ~exclude.cpu().expand_as(finite)
    over = (~finite | (diff > tolerance)) & keep
    ratio = torch.where(keep & finite, diff / tolerance.clamp_min(1e-300), torch.zeros_like(diff))
    return _result(
        name,
        not bool(over.any()),
        max_abs_diff=float(diff[keep & finite].max()) if bool((keep & finite).any()) else 0.0,
        max_diff_over_tolerance=float(ratio.max()) if ratio.numel() else 0.0,
        n_over=int(over.sum()),
        n_compared=int(keep.sum()),
    )


def compare_relative(name: str, candidate: Any, reference: Any, rtol: float = COMPOSITE_RTOL) -> dict[str, Any]:
    """``max |candidate - reference| <= rtol * max |reference|`` (composite modules)."""
    scale = max(max_abs(reference.detach()), 1e-30)
    return compare_within(name, candidate, reference, rtol * scale)


def _backend_args(candidate: str) -> dict[str, Any]:
    """``make_grid``/``HashEncoding`` arguments of a candidate: ``tcnn``, ``torch`` or ``torch64``."""
    import torch

    if candidate == "torch64":  # the torch grid in float64: no float32 rounding at all
        return {"backend": "torch", "dtype": torch.float64}
    return {"backend": candidate}


def grid_config(otype: str, dims: int, interpolation: str) -> dict[str, Any]:
    """A grid with dense and hashed levels (HashGrid) and positions large enough for rounding to show."""
    return {
        "otype": otype,
        "n_levels": 8,
        "n_features_per_level": 2,
        "log2_hashmap_size": 14 if dims == 2 else 15,
        "base_resolution": 4 if dims == 3 else 8,
        "per_level_scale": 1.5 if dims == 3 else 1.8,
        "interpolation": interpolation,
    }


def _near_cell_border(unit: Any, scales: Any) -> Any:
    """``[N, 1]`` bool: points whose position ``scale * x + 0.5`` lies within
    :data:`POSITION_ULPS` float32 ulps of an integer in some level and dimension.

    ``unit``: ``[N, D]`` float64 coordinates in [0, 1]; ``scales``: the levels' scales.
    """
    import numpy as np
    import torch

    scales = torch.as_tensor(np.asarray(scales, dtype=np.float64))
    dpos = POSITION_ULPS * float(np.spacing(np.float32(float(scales.max()) + 0.5)))
    pos = unit[:, None, :] * scales[None, :, None] + 0.5  # [N, L, D]
    return ((pos - pos.round()).abs() <= dpos).any(dim=2).any(dim=1, keepdim=True)


def grid_case(otype: str, dims: int, interpolation: str, candidate: str, device: str, n_points: int, seed: int) -> list[dict[str, Any]]:
    """Values, table gradients and coordinate gradients of one grid on both backends."""
    import numpy as np
    import torch

    from hashwfa.encodings import make_grid

    config = grid_config(otype, dims, interpolation)
    label = f"{otype} {dims}-D {interpolation}"
    reference = make_grid(dims, config, backend="torch", seed=seed).to(device)
    other = make_grid(dims, config, **_backend_args(candidate), seed=seed + 1).to(device)
    if other.params.numel() != reference.params.numel():
        return [_result(f"{label}: parameter count", False, reason=f"{other.params.numel()} vs {reference.params.numel()}")]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # table values well above the 1e-4 initial range
        reference.params.copy_((torch.rand(reference.params.shape, generator=gen) * 2 - 1).to(device))
    other.load_state_dict(reference.state_dict())
    x = torch.rand(n_points, dims, generator=gen)
    x[:8], x[8:16] = 0.0, 1.0  # the borders: dense grids wrap around there
    x = x.to(device)
    upstream = torch.randn(n_points, reference.n_output_dims, generator=gen).to(device)

    def run(module: Any, g: Any) -> tuple[Any, Any, Any]:
        module.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_(True)
        out = module(xr)
        (out * g).sum().backward()
        return out.detach(), module.params.grad.detach().clone(), xr.grad.detach().clone()

    out_ref, grad_ref, xgrad_ref = run(reference, upstream)
    out_c, grad_c, xgrad_c = run(other, upstream)
    # sum over contributions of |w * g|: the reference's table gradient of |g| (w >= 0)
    _, abs_terms, _ = run(reference, upstream.abs())

    layout = reference.layout
    scales = torch.as_tensor(layout.scales.astype(np.float64))
    pos_max = float(scales.max()) + 0.5
    dpos = POSITION_ULPS * float(np.spacing(np.float32(pos_max)))  # position error, absolute
    slope = 1.5 if interpolation == "Smoothstep" else 1.0  # max |dw/dfrac| per dimension
    curvature = 6.0 if interpolation == "Smoothstep" else 1.0  # max |d2w/dfrac2|, cross terms included
    table_max = max_abs(reference.params.detach())
    n_corners = 2**dims
    F = config["n_features_per_level"]
    L = config["n_levels"]

    value_tol = table_max * (2 * slope * dims * dpos + (n_corners + dims + 4) * ARITHMETIC_EPS)
    results = [compare_within(f"{label}: values", out_c, out_ref, value_tol)]

    # table gradient, per entry: every contribution w * g may move by D * slope * dpos * |g|
    lookup, _ = reference.lookup(x.detach())
    rows = lookup.rows.reshape(n_points, L, -1).long()
    g_abs = upstream.abs().view(n_points, L, F)
    g_sum = torch.zeros(layout.n_entries, F, dtype=torch.float64, device=device)
    g_sum.index_add_(0, rows.reshape(-1), g_abs[:, :, None, :].expand(-1, -1, rows.shape[-1], -1).reshape(-1, F).double())
    grad_tol = dims * slope * dpos * g_sum.reshape(-1) + 64 * ARITHMETIC_EPS * abs_terms.double().reshape(-1) + 1e-30
    results.append(compare_within(f"{label}: table gradient", grad_c, grad_ref, grad_tol.cpu()))

    # coordinate gradient, per point and dimension
    per_level_g = upstream.abs().view(n_points, L, F).sum(-1).double().cpu()  # [N, L]
    scale_weighted = (per_level_g * scales[None, :]).sum(-1, keepdim=True)  # [N, 1]
    xgrad_tol = scale_weighted * 2 * table_max * (curvature * dims * dpos + slope * 32 * ARITHMETIC_EPS)
    near_border = _near_cell_border(x.detach().double().cpu(), layout.scales)
    coord = compare_within(f"{label}: coordinate gradient", xgrad_c, xgrad_ref, xgrad_tol, exclude=near_border)
    coord["n_points_near_cell_border_excluded"] = int(near_border.sum())
    results.append(coord)
    for r in results:
        r.update(config=config, n_points=n_points, position_error=dpos, table_max=table_max)
    return results


def _randomise_tables(model: Any, seed: int, amplitude: float = 0.5) -> None:
    """Grid tables to uniform values in [-amplitude, amplitude] (the encoding's grid and plane)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("params"):  # grid tables; smoother and head keep their init
                param.copy_(((torch.rand(param.shape, generator=gen) * 2 - 1) * amplitude).to(param.device))


def _forward_backward(model: Any, x: Any, upstream: Any) -> tuple[Any, dict[str, Any], Any]:
    model.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (out * upstream).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads, xr.grad.detach().clone()


def version_case(version: int, resolution: str, candidate: str, device: str, n_points: int, seed: int) -> list[dict[str, Any]]:
    """One version V0..V6 in a NeuralField on both backends: outputs, every gradient, state_dict both ways."""
    import torch

    from hashwfa.encodings import GridLayout, HashEncoding, NeuralField

    max_resolution = 32 if resolution == "seed" else 2048
    kwargs = dict(n_input_dims=2, base_resolution=1 if resolution == "seed" else 16, max_resolution=max_resolution)
    label = f"V{version} (max resolution {max_resolution})"

    def build(backend: str, model_seed: int) -> Any:
        encoding = HashEncoding(version, **_backend_args(backend), seed=model_seed, **kwargs)
        if encoding.progressive:
            encoding.set_active_levels(encoding.n_levels - 0.5)  # a fractional level too
        model = NeuralField(encoding, 2, seed=model_seed).to(device)
        return model.double() if backend == "torch64" else model

    reference = build("torch", seed)
    _randomise_tables(reference, seed)
    other = build(candidate, seed + 1)
    results = []
    keys_ref = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    keys_c = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    results.append(_result(f"{label}: state_dict keys and shapes", keys_ref == keys_c,
                           differing=sorted(set(keys_ref.items()) ^ set(keys_c.items()))[:10]))
    other.load_state_dict(reference.state_dict())  # torch -> candidate
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_points, 2, generator=gen) * 2 - 1).to(device)
    upstream = torch.randn(n_points, 2, generator=gen).to(device)
    out_ref, grads_ref, xgrad_ref = _forward_backward(reference, x, upstream)
    out_c, grads_c, xgrad_c = _forward_backward(other, x, upstream)
    results.append(compare_relative(f"{label}: output, torch -> {candidate}", out_c, out_ref))
    for name, grad in grads_ref.items():
        if name not in grads_c:
            results.append(_result(f"{label}: gradient of {name}", False, reason=f"no gradient on {candidate}"))
        else:
            results.append(compare_relative(f"{label}: gradient of {name}", grads_c[name], grad))
    # a Linear grid's coordinate gradient jumps at cell borders: leave out the
    # points that rounding may put in the neighbouring cell, as for the grids
    unit = reference.encoding.unit_coordinates(x.detach()).double().cpu()
    near_border = torch.zeros(n_points, 1, dtype=torch.bool)
    for grid in (reference.encoding.grid, reference.encoding.plane):
        if grid is not None:
            near_border |= _near_cell_border(unit, GridLayout.from_config(grid.config).scales)
    coord = compare_within(f"{label}: coordinate gradient", xgrad_c, xgrad_ref,
                           COMPOSITE_RTOL * max(max_abs(xgrad_ref), 1e-30), exclude=near_border)
    coord["n_points_near_cell_border_excluded"] = int(near_border.sum())
    results.append(coord)

    # one optimiser step on the candidate, then back: candidate -> torch, and onto the CPU
    optimiser = torch.optim.Adam(other.parameters(), lr=1e-2)
    other.zero_grad(set_to_none=True)
    ((other(x) - 1.0) ** 2).mean().backward()
    optimiser.step()
    with torch.no_grad():
        out_trained = other(x)
    back = build("torch", seed + 2)
    back.load_state_dict(other.state_dict())
    with torch.no_grad():
        results.append(compare_relative(f"{label}: output, trained {candidate} -> torch", back(x), out_trained))
    buffer = io.BytesIO()
    torch.save(other.state_dict(), buffer)
    buffer.seek(0)
    on_cpu = build("torch", seed + 3).cpu()
    on_cpu.load_state_dict(torch.load(buffer, map_location="cpu"))
    with torch.no_grad():
        results.append(compare_relative(f"{label}: output, trained {candidate} -> torch on the CPU", on_cpu(x.cpu()), out_trained.cpu()))
    return results


def parity_cases(quick: bool) -> list[tuple[str, Callable[..., list[dict[str, Any]]], tuple]]:
    """``(label, function, args)`` of every parity case, grids first."""
    cases = []
    for otype in ("HashGrid", "DenseGrid"):
        for dims in (2, 3):
            for interpolation in ("Linear", "Smoothstep"):
                cases.append((f"{otype} {dims}-D {interpolation}", grid_case, (otype, dims, interpolation)))
    for version in range(7):
        for resolution in (("seed",) if quick else ("seed", "high")):
            cases.append((f"V{version} {resolution}", version_case, (version, resolution)))
    return cases
