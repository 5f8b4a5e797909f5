"""hashwfa-bench --recommended: a REC row trained with the recommended configuration on the same data."""

import json

import pytest

from hashwfa.cli.bench import main


@pytest.mark.usefixtures("one_thread")
def test_recommended_row(tmp_path, repo_root):
    out = tmp_path / "bench.json"
    argv = ["--versions", "1", "--epochs", "2", "--set", "data.synthetic.ny=20", "--set", "data.synthetic.nx=18",
            "--recommended", str(repo_root / "configs" / "recommended.json"), "--json", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["label"] or (f"V{r['version']}" if r["version"] is not None else "WFA") for r in rows] == ["V1", "REC", "WFA", "REG"]
    rec = rows[1]
    assert rec["version"] is None and "recommended" in rec["description"]
    # Trained (another model than V1's, on the same data), with errors against the truth.
    assert rec["final_loss"] != rows[0]["final_loss"]
    assert set(rec["errors_vs_truth"]) == {"blos_rmse", "bt_rmse", "azimuth_mae", "azimuth_rmse"}


@pytest.mark.usefixtures("one_thread")
def test_interpolation_rows(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--versions", "1", "--epochs", "2", "--set", "data.synthetic.ny=16", "--set", "data.synthetic.nx=14",
            "--interpolations", "CatmullRom", "--json", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows[1]["label"] == "V1 CatmullRom" and rows[1]["final_loss"] != rows[0]["final_loss"]
    assert main(argv[:-4] + ["--interpolations", "Cubic", "--json", str(out)]) == 2
