"""hashwfa-bench: the reference table regenerated on a tiny synthetic plage."""

from __future__ import annotations

import json

import pytest

from hashwfa.cli.bench import main
from hashwfa.run.benchmark import BenchRow, format_table

TINY = ["--set", "data.synthetic.ny=24", "--set", "data.synthetic.nx=20", "--epochs", "3"]


def test_table_relative_columns_are_against_v0():
    rows = [
        BenchRow(version=0, description="Baseline Hash", final_loss=4.0e-4, seconds=[10.0, 12.0, 11.0]),
        BenchRow(version=1, description="Dense Grids", final_loss=3.0e-4, seconds=[5.0]),
        BenchRow(version=None, description="pixel-wise WFA", final_loss=8.0e-4),
        BenchRow(version=None, label="REG", description="regularised WFA", final_loss=2.0e-4, seconds=[0.5]),
    ]
    table = format_table(rows).splitlines()
    assert table[0].startswith("| Version | Description | Final Loss | vs V0 Loss | Time (s) | vs V0 Time |")
    # median of 10, 12, 11 s is 11 s; V1: 5 / 11 - 1 = -54.5 %, loss 3/4 - 1 = -25 %
    assert table[2] == "| V0 | Baseline Hash | 4.000e-04 | +0.0% | 11.00 | +0.0% |"
    assert table[3] == "| V1 | Dense Grids | 3.000e-04 | -25.0% | 5.00 | -54.5% |"
    assert table[4] == "| WFA | pixel-wise WFA | 8.000e-04 | +100.0% | - | - |"
    # 0.5 / 11 - 1 = -95.5 %, loss 2/4 - 1 = -50 %
    assert table[5] == "| REG | regularised WFA | 2.000e-04 | -50.0% | 0.50 | -95.5% |"


def test_bench_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--versions", "0,4", "--repeats", "2", "--json", str(out), *TINY]) == 0
    table = capsys.readouterr().out
    assert "| V0 |" in table and "| V4 |" in table and "| WFA |" in table and "| REG |" in table
    report = json.loads(out.read_text())
    assert [r["version"] for r in report["rows"]] == [0, 4, None, None]
    assert [r["label"] for r in report["rows"]] == [None, None, None, "REG"]
    wfa, reg = report["rows"][2:]
    # The regularised WFA has lower B_t and azimuth errors than the pixel-wise WFA on the noisy plage.
    for key in ("bt_rmse", "azimuth_mae"):
        assert reg["errors_vs_truth"][key] < wfa["errors_vs_truth"][key]
    v0 = report["rows"][0]
    assert len(v0["seconds"]) == 2 and v0["median_seconds"] > 0
    assert set(v0["errors_vs_truth"]) == {"blos_rmse", "bt_rmse", "azimuth_mae", "azimuth_rmse"}
    assert 0 <= v0["errors_vs_truth"]["azimuth_mae"] <= 90
    assert report["machine"]["torch"] and report["date"] and report["command"].startswith("hashwfa-bench")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--versions", "0,9"], "version numbers from 0,1,2,3,4,5,6"),
        (["--data", "stokes.fits"], "--wavelengths"),
        (["--set", "training.lr=-1"], "training.lr"),
    ],
)
def test_bench_errors(argv, message, capsys, tmp_path):
    assert main([*argv, "--json", str(tmp_path / "x.json"), *TINY]) == 2
    assert message in capsys.readouterr().err
