"""The registry of versions: the reference report's seven versions, and what derives from it."""

import dataclasses

import pytest
import torch

from hashwfa.encodings import HashEncoding
from hashwfa.encodings.registry import PROGRESSIVE_VERSIONS, REGISTRY, VERSION_NUMBERS, VERSIONS, markdown_table

# The reference report's versions, written out: grid, smoother, progressive, plane, name.
SEED_REPORT = {
    0: ("HashGrid", None, False, False, "Baseline Hash"),
    1: ("DenseGrid", None, False, False, "Dense Grids"),
    2: ("HashGrid", "shared", False, False, "Shared Smooth"),
    3: ("HashGrid", "per_level", False, False, "Spec. Smooth"),
    4: ("HashGrid", "shared", True, False, "Progressive (S)"),
    5: ("HashGrid", "per_level", True, False, "Progressive (P)"),
    6: ("HashGrid", "shared", False, True, "Hybrid Plane"),
}
SMALL = dict(n_levels=4, n_features_per_level=2, log2_hashmap_size=8, base_resolution=2, max_resolution=16, backend="torch")


def test_registry_holds_the_seed_reports_versions():
    assert VERSION_NUMBERS == tuple(SEED_REPORT)
    for v, (grid, smoother, progressive, plane, name) in SEED_REPORT.items():
        spec = REGISTRY[v]
        assert (spec.grid, spec.smoother, spec.progressive, spec.plane, spec.report_name) == (
            grid, smoother, progressive, plane, name)
        assert VERSIONS[v].startswith(name + ": ")
    assert PROGRESSIVE_VERSIONS == (4, 5)


@pytest.mark.parametrize("version", sorted(SEED_REPORT))
def test_built_encoding_is_what_the_entry_declares(version):
    grid, smoother, progressive, plane, _ = SEED_REPORT[version]
    enc = HashEncoding(version, **SMALL)
    assert enc.configs["grid"]["otype"] == grid
    assert (enc.smoother is not None) == (smoother is not None)
    if smoother is not None:
        assert enc.smoother.per_level == (smoother == "per_level")
    assert enc.progressive == progressive
    assert (enc.plane is not None) == plane
    assert enc(torch.zeros(3, 2)).shape == (3, (4 + plane) * 2)


def test_readme_table_is_the_registrys(repo_root):
    assert markdown_table() in (repo_root / "README.md").read_text(encoding="utf-8")


def test_config_and_benchmark_take_their_versions_from_the_registry():
    from hashwfa.cli.bench import build_parser
    from hashwfa.training import EncodingConfig

    (version,) = [f for f in dataclasses.fields(EncodingConfig) if f.name == "version"]
    assert tuple(version.metadata["choices"]) == VERSION_NUMBERS
    assert build_parser().parse_args([]).versions == ",".join(map(str, VERSION_NUMBERS))
