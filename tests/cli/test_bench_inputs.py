"""hashwfa-bench refuses bad arguments with one message, before any training."""

import pytest

from hashwfa.cli.bench import main


@pytest.mark.parametrize("versions", ["a", "1,x", "", "9", ",", "-1"])
def test_bad_versions_are_one_message(versions, tmp_path, capsys):
    code = main(["--versions", versions, "--json", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--versions" in err and "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


def test_json_onto_the_config_is_refused_and_the_config_kept(tmp_path, capsys):
    config = tmp_path / "my.json"
    config.write_text('{"training": {"epochs_per_phase": 1}}')
    assert main(["--versions", "1", "--config", str(config), "--json", str(config)]) == 2
    assert "--config" in capsys.readouterr().err
    assert config.read_text() == '{"training": {"epochs_per_phase": 1}}'


def test_json_into_a_directory_is_refused(tmp_path, capsys):
    assert main(["--versions", "1", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
