#!/usr/bin/env python
"""Python side of the one-call GPU check (``scripts/gpu_check.sh``).

Subcommands:

- ``env``: what the machine has (Python, PyTorch, CUDA, GPU, the packages
  hashwfa needs, whether tiny-cuda-nn imports), as text.
- ``wheels``: whether a wheelhouse holds, for Python ``--python`` on
  manylinux x86-64, a wheel for every requirement of hashwfa (setup.cfg's
  ``install_requires`` and the ``test`` extra) and for every requirement of
  those wheels, except the packages the device image already has
  (:data:`DEVICE_IMAGE_PACKAGES`).
- ``merge-json``: one JSON file ``{name: content}`` from a folder of them.
- ``parity``: the torch grid (:class:`hashwfa.encodings.TorchGrid`) against
  a candidate backend on the same parameters: values, table gradients and
  coordinate gradients of HashGrid and DenseGrid, 2-D and 3-D, Linear and
  Smoothstep; every version V0..V6 through ``HashEncoding(backend=...)``;
  and a model (``NeuralField``) moved torch -> candidate -> torch and onto
  the CPU by ``state_dict``. The candidate is ``tcnn`` on the GPU, or
  ``torch`` (a second, independently built torch grid, which checks that
  the driver itself runs, e.g. on a machine without a GPU), or ``torch64``
  (the torch grid in float64, which rounds nothing to float32: a difference
  of the same kind and size as tcnn's, so it exercises the tolerances). Results go to a
  JSON file, rewritten after every case so that a timeout keeps what ran.

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

Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import configparser
import io
import json
import platform
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]

#: Distribution names (normalised) that the device image already has, from the
#: device machine's package list as read on 2026-11-17 (the H200 image);
#: only those that hashwfa or its wheels need are listed.
DEVICE_IMAGE_PACKAGES = frozenset(
    {
        "torch", "numpy", "tqdm", "matplotlib", "scipy", "pytest", "pyyaml", "packaging",
        "setuptools", "wheel", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow",
        "pyparsing", "python-dateutil", "six", "pluggy", "iniconfig", "filelock", "jinja2",
        "networkx", "sympy", "fsspec", "typing-extensions", "ninja", "pybind11",
    }
)

#: Position error, in float32 ulps of the position, allowed between backends.
POSITION_ULPS = 4
#: Relative rounding allowed per float32 operation chain (a few ulps of 2^-24).
ARITHMETIC_EPS = 2.0**-21
#: Relative tolerance of composite modules (versions, models).
COMPOSITE_RTOL = 1e-3


# ---------------------------------------------------------------------- wheels


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(setup_cfg: Path) -> list[str]:
    """``install_requires`` plus the ``test`` extra of a setup.cfg, one requirement string each."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser.get("options", "install_requires", fallback="").splitlines()
    lines += parser.get("options.extras_require", "test", fallback="").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _python_tag_ok(tag: str, python: tuple[int, int]) -> bool:
    if tag in ("py3", f"py{python[0]}{python[1]}", "py2.py3"):
        return True
    match = re.fullmatch(r"cp(\d)(\d+)", tag)
    return bool(match) and (int(match.group(1)), int(match.group(2))) <= python


def wheel_fits(filename: str, python: tuple[int, int]) -> bool:
    """Whether a wheel file name says it installs on CPython ``python`` on manylinux x86-64."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        return False
    py_tags, abi_tags, plat_tags = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
    if not any(_python_tag_ok(tag, python) for tag in py_tags):
        return False
    cp = f"cp{python[0]}{python[1]}"
    if not any(abi in ("none", "abi3", cp) for abi in abi_tags):
        return False
    # abi3 wheels name the oldest CPython they need in the python tag (checked above).
    return any(p == "any" or (p.startswith("manylinux") and p.endswith("_x86_64")) for p in plat_tags)


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """``(name, version, [Requires-Dist ...])`` read from a wheel's METADATA."""
    with zipfile.ZipFile(path) as archive:
        meta_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta_name).decode("utf-8", "replace")
    headers = text.split("\n\n", 1)[0].splitlines()
    fields = [line.split(":", 1) for line in headers if ":" in line and not line.startswith(" ")]
    name = next(v.strip() for k, v in fields if k == "Name")
    version = next(v.strip() for k, v in fields if k == "Version")
    requires = [v.strip() for k, v in fields if k == "Requires-Dist"]
    return name, version, requires


def check_wheelhouse(wheelhouse: Path, setup_cfg: Path, python: tuple[int, int]) -> list[str]:
    """Problems with ``wheelhouse`` for installing hashwfa offline on the device; empty when complete.

    Every requirement (setup.cfg's, then those of each wheel used, markers
    evaluated for CPython ``python`` on Linux) must be a package of the device
    image or have exactly one fitting wheel whose version satisfies it.
    """
    from packaging.requirements import Requirement

    problems: list[str] = []
    wheels: dict[str, list[tuple[str, str, list[str]]]] = {}
    for path in sorted(wheelhouse.glob("*.whl")):
        if not wheel_fits(path.name, python):
            problems.append(f"{path.name}: does not install on CPython {python[0]}.{python[1]} manylinux x86-64")
            continue
        name, version, requires = wheel_metadata(path)
        wheels.setdefault(normalise(name), []).append((path.name, version, requires))
    for name, found in wheels.items():
        if len(found) > 1:
            problems.append(f"{name}: {len(found)} wheels ({', '.join(f[0] for f in found)}); keep one")
    environment = {
        "python_version": f"{python[0]}.{python[1]}",
        "python_full_version": f"{python[0]}.{python[1]}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "extra": "",
    }
    pending = [(req, "setup.cfg") for req in declared_requirements(setup_cfg)]
    seen: set[str] = set()
    while pending:
        text, wanted_by = pending.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = normalise(requirement.name)
        if name in wheels:
            _, version, requires = wheels[name][0]
            if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{name} {version} in the wheelhouse does not satisfy {text!r} ({wanted_by})")
            if name not in seen:
                seen.add(name)
                pending.extend((r, name) for r in requires)
        elif name not in DEVICE_IMAGE_PACKAGES:
            problems.append(f"no wheel for {text!r} ({wanted_by}), and the device image does not have it")
    return problems


# ------------------------------------------------------------------------- env


def environment_report() -> str:
    """A few lines on the interpreter, PyTorch, CUDA, the GPU and the packages hashwfa uses."""
    lines = [f"python {platform.python_version()} ({sys.executable}) on {platform.machine()}"]
    cuda = False
    try:
        import torch

        lines.append(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}")
        cuda = torch.cuda.is_available()
        if cuda:
            props = torch.cuda.get_device_properties(0)
            lines.append(
                f"GPU {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                f"{props.major}.{props.minor}, {props.multi_processor_count} multiprocessors"
            )
        else:
            lines.append("CUDA is not available to torch")
    except Exception as exc:  # the report must be written whatever is broken
        lines.append(f"torch does not import: {type(exc).__name__}: {exc}")
    from importlib import metadata

    for name in ("numpy", "astropy", "commentjson", "tqdm", "matplotlib", "scipy", "pytest", "setuptools", "tinycudann", "hashwfa"):
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name}: not installed")
    try:
        import tinycudann  # noqa: F401

        lines.append("import tinycudann: ok")
    except Exception as exc:
        lines.append(f"import tinycudann: {type(exc).__name__}: {exc}")
    lines.append(f"cuda available: {'yes' if cuda else 'no'}")  # read by gpu_check.sh
    return "\n".join(lines)


# ---------------------------------------------------------------------- parity


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


def run_parity(candidate: str, device: str, n_points: int, out: Optional[Path], quick: bool, seed: int = 0) -> int:
    """Run every case, print one line per check, write the JSON report; 0 when all passed."""
    import torch

    torch.manual_seed(seed)
    report: dict[str, Any] = {
        "candidate": candidate,
        "reference": "torch",
        "device": device,
        "n_points": n_points,
        "tolerances": {"position_ulps": POSITION_ULPS, "arithmetic_eps": ARITHMETIC_EPS, "composite_rtol": COMPOSITE_RTOL},
        "checks": [],
        "errors": [],
        "complete": False,
    }

    def save() -> None:
        if out is not None:
            out.write_text(json.dumps(report, indent=1))

    save()
    for label, function, args in parity_cases(quick):
        start = time.perf_counter()
        try:
            results = function(*args, candidate, device, n_points, seed)
        except Exception as exc:  # record and go on: one broken case must not hide the others
            results = []
            report["errors"].append(f"{label}: {type(exc).__name__}: {exc}")
            print(f"ERROR {label}: {type(exc).__name__}: {exc}", flush=True)
        for r in results:
            r["seconds"] = round(time.perf_counter() - start, 3)
            detail = ""
            if "max_abs_diff" in r:
                detail = f": max diff {r['max_abs_diff']:.3g}, diff/tolerance {r['max_diff_over_tolerance']:.3g}"
            if "reason" in r:
                detail += f" [{r['reason']}]"
            print(f"{'ok  ' if r['passed'] else 'FAIL'} {r['name']}{detail}", flush=True)
        report["checks"].extend(results)
        save()
    report["complete"] = True
    passed = all(c["passed"] for c in report["checks"]) and not report["errors"]
    report["passed"] = passed
    save()
    n_failed = sum(not c["passed"] for c in report["checks"])
    print(f"parity {candidate} vs torch on {device}: {len(report['checks'])} checks, {n_failed} failed, "
          f"{len(report['errors'])} errors", flush=True)
    return 0 if passed else 1


# ------------------------------------------------------------------------- CLI


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print the environment report")
    wheels = sub.add_parser("wheels", help="check a wheelhouse against setup.cfg")
    wheels.add_argument("wheelhouse", type=Path)
    wheels.add_argument("--python", default="3.12", help="the device's Python, X.Y (default 3.12)")
    wheels.add_argument("--setup-cfg", type=Path, default=REPO / "setup.cfg")
    merge = sub.add_parser("merge-json", help="write {file stem: content} of a folder's JSON files into one file")
    merge.add_argument("folder", type=Path)
    merge.add_argument("target", type=Path)
    parity = sub.add_parser("parity", help="torch grid vs a candidate backend")
    parity.add_argument("--candidate", choices=("tcnn", "torch", "torch64"), default="tcnn",
                        help="tcnn (on the GPU), torch (a second torch grid: checks that this driver runs), "
                        "torch64 (the torch grid in float64: exercises the tolerances without a GPU)")
    parity.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parity.add_argument("--points", type=int, default=1 << 16)
    parity.add_argument("--json", type=Path, default=None, help="where to write the report")
    parity.add_argument("--quick", action="store_true", help="fewer version cases (seed resolution only)")
    args = parser.parse_args(None if argv is None else list(argv))
    if str(REPO) not in sys.path:  # this checkout's hashwfa, whatever is installed
        sys.path.insert(0, str(REPO))

    if args.command == "env":
        print(environment_report())
        return 0
    if args.command == "merge-json":
        merged = {p.stem: json.loads(p.read_text()) for p in sorted(args.folder.glob("*.json"))}
        args.target.write_text(json.dumps(merged, indent=1))
        return 0
    if args.command == "wheels":
        match = re.fullmatch(r"(\d+)\.(\d+)", args.python)
        if not match:
            parser.error(f"--python must be X.Y, got {args.python!r}")
        if not args.wheelhouse.is_dir():
            print(f"no wheelhouse at {args.wheelhouse}")
            return 1
        problems = check_wheelhouse(args.wheelhouse, args.setup_cfg, (int(match.group(1)), int(match.group(2))))
        for problem in problems:
            print(problem)
        print(f"wheelhouse {args.wheelhouse}: {'complete' if not problems else f'{len(problems)} problems'}")
        return 0 if not problems else 1
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.points < 16:
        parser.error("--points must be at least 16 (the first 16 points are the borders)")
    return run_parity(args.candidate, device, args.points, args.json, args.quick)


if __name__ == "__main__":
    sys.exit(main())
