#!/usr/bin/env python
"""Python side of the one-call GPU check (``scripts/gpu_check.sh``).

Subcommands:

- ``env``: what the machine has (Python, PyTorch, CUDA, GPU, the packages
  hashwfa needs, whether tiny-cuda-nn imports), as text.
- ``wheels``: whether a folder of wheels (for installing on a machine without
  network) holds, for Python ``--python`` on manylinux x86-64, a wheel for
  every requirement of hashwfa (setup.cfg's ``install_requires`` and the
  ``test`` extra) and for every requirement of those wheels, except the
  packages a CUDA PyTorch image already has (:data:`PREINSTALLED_PACKAGES`).
- ``merge-json``: one JSON file ``{name: content}`` from a folder of them.
- ``parity``: the torch grid (:class:`hashwfa.encodings.TorchGrid`) against
  a candidate backend on the same parameters, every case of
  ``scripts/tcnn_parity.py`` (which says what is compared and with which
  tolerances); the candidate is ``tcnn``, ``torch`` or ``torch64``. Results
  go to a JSON file, rewritten after every case so that a timeout keeps what
  ran.

Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import platform
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]

#: Distribution names (normalised) that a CUDA PyTorch image already has, so a
#: wheel folder need not bring them: read on 2026-11-17 from the package list of
#: one such image (PyTorch 2.11, CUDA 13.0, CPython 3.12); only those that
#: hashwfa or its wheels need are listed.
PREINSTALLED_PACKAGES = frozenset(
    {
        "torch", "numpy", "tqdm", "matplotlib", "scipy", "pytest", "pyyaml", "packaging",
        "setuptools", "wheel", "contourpy", "cycler", "fonttools", "kiwisolver", "pillow",
        "pyparsing", "python-dateutil", "six", "pluggy", "iniconfig", "filelock", "jinja2",
        "networkx", "sympy", "fsspec", "typing-extensions", "ninja", "pybind11",
    }
)


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
    """Problems with ``wheelhouse`` for installing hashwfa offline; empty when complete.

    Every requirement (setup.cfg's, then those of each wheel used, markers
    evaluated for CPython ``python`` on Linux) must be preinstalled
    (:data:`PREINSTALLED_PACKAGES`) or have exactly one fitting wheel whose
    version satisfies it.
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
        elif name not in PREINSTALLED_PACKAGES:
            problems.append(f"no wheel for {text!r} ({wanted_by}), and it is not preinstalled")
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


def _load_parity_checks() -> Any:
    """``scripts/tcnn_parity.py``, loaded by path (this file runs as a script, or is itself loaded by path)."""
    spec = importlib.util.spec_from_file_location("tcnn_parity", Path(__file__).resolve().with_name("tcnn_parity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_parity = _load_parity_checks()
POSITION_ULPS, ARITHMETIC_EPS, COMPOSITE_RTOL = _parity.POSITION_ULPS, _parity.ARITHMETIC_EPS, _parity.COMPOSITE_RTOL
compare_within, compare_relative = _parity.compare_within, _parity.compare_relative
grid_case, version_case, parity_cases = _parity.grid_case, _parity.version_case, _parity.parity_cases


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
    wheels.add_argument("--python", default="3.12", help="the target machine's Python, X.Y (default 3.12)")
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
