"""Config schema, defaults, validation messages and --set overrides (no training)."""

import dataclasses
import json
from pathlib import Path

import pytest

from hashwfa import HashwfaError
from hashwfa.config.run_config import (
    DataConfig,
    OutputConfig,
    RunConfig,
    SyntheticConfig,
    apply_overrides,
    config_to_dict,
    describe_keys,
    key_paths,
    load_config,
    parse_override,
    validate_config,
)
from hashwfa.run.benchmark import SEED_PROTOCOL
from hashwfa.run.data import load_data
from hashwfa.training import EncodingConfig, NetworkConfig, TrainingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path, text, name="c.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text, overrides=()):
    path = write(tmp_path, text)
    with pytest.raises(HashwfaError) as info:
        load_config(path, overrides)
    return str(info.value), str(path)


def test_defaults_are_the_seed_protocol():
    cfg = validate_config({})
    assert cfg.line is None  # the cube's LINE header, else 5173 (tests/cli/test_train_data_faults.py)
    assert cfg.data.active_indices is None  # every wavelength; configs/v0..v6.json give the reference report's (5, 6, 7)
    assert cfg.data.path is None and cfg.data.synthetic == SyntheticConfig()
    assert (cfg.data.synthetic.ny, cfg.data.synthetic.nx) == (200, 178)
    e = cfg.encoding
    assert (e.n_levels, e.n_features_per_level, e.log2_hashmap_size) == (16, 2, 19)
    assert (e.base_resolution, e.max_resolution) == (1, 32)
    t = cfg.training
    assert (t.lr, t.batch_size, t.epochs_per_phase, t.plateau_patience) == (5e-3, 200000, 200, 50)
    assert t.grad_normalization is True
    assert (t.blos_scale, t.bqbu_scale) == (1.0, 1000.0)
    assert (cfg.network.n_neurons, cfg.network.n_hidden_layers) == (64, 2)


def test_contract_keys_exist_and_every_key_is_documented():
    paths = key_paths()
    for key in (
        "data.path",
        "data.wavelengths",
        "data.active_indices",
        "line",
        "encoding.version",
        "training.epochs_per_phase",
        "training.seed",
    ):
        assert key in paths
    text = describe_keys()
    for key in paths:
        assert f"  {key} = " in text

    for cls in (RunConfig, DataConfig, SyntheticConfig, OutputConfig, EncodingConfig, NetworkConfig, TrainingConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"


@pytest.mark.parametrize("version", range(7))
def test_shipped_configs_are_the_seed_protocol_of_their_version(version):
    cfg = load_config(CONFIGS / f"v{version}.json")
    assert cfg.encoding.version == version
    # Everything else is the reference protocol: the defaults, except the keys where the package's
    # defaults moved on (every wavelength, the derivative), which the shipped configs pin.
    assert cfg == validate_config({**SEED_PROTOCOL, "encoding": {"version": version}})
    assert cfg.data.active_indices == (5, 6, 7)
    assert (cfg.physics.derivative, cfg.physics.derivative_qu) == ("three_point", "three_point")
    assert "//" in (CONFIGS / f"v{version}.json").read_text()


def test_resolved_config_round_trips_through_plain_json(tmp_path):
    cfg = load_config(CONFIGS / "v4.json", ["training.lr=0.001"])
    text = json.dumps(config_to_dict(cfg))
    path = write(tmp_path, text)
    assert load_config(path) == cfg


def test_data_section_forms(tmp_path):
    cfg = load_config(write(tmp_path, '{"data": {"synthetic": {"ny": 40, "noise": 0.01}}}'))
    assert cfg.data.synthetic.ny == 40 and cfg.data.synthetic.nx == 178
    assert cfg.data.synthetic.noise == 0.01
    sub = tmp_path / "sub"
    sub.mkdir()
    cfg = load_config(write(sub, '{"data": {"path": "s.fits", "wavelengths": "w.fits"}}'))
    # Relative to the config file's directory; no synthetic data then.
    assert cfg.data.path == str((sub / "s.fits").resolve())
    assert cfg.data.wavelengths == str((sub / "w.fits").resolve())
    assert cfg.data.synthetic is None


def test_set_overrides_parse_json_with_string_fallback(tmp_path, monkeypatch):
    assert parse_override("training.lr=1e-3") == ("training.lr", 1e-3)
    assert parse_override("output.quicklook=false") == ("output.quicklook", False)
    assert parse_override("data.active_indices=[4, 5]") == ("data.active_indices", [4, 5])
    assert parse_override("encoding.interpolation=Smoothstep") == ("encoding.interpolation", "Smoothstep")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        write(tmp_path, "{}"),
        ["line=8542", "training.batch_size=2e3", "data.path=a.fits", "data.wavelengths=b.fits", "data.synthetic=null"],
    )
    assert cfg.line == "8542"  # kept a string for a string key
    assert cfg.training.batch_size == 2000 and isinstance(cfg.training.batch_size, int)
    assert cfg.data.path == str((tmp_path / "a.fits").resolve())  # --set: relative to the cwd
    raw = {}
    assert apply_overrides(raw, ["a.b.c=1"]) == {"a.b.c": "a.b.c=1"} and raw == {"a": {"b": {"c": 1}}}


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    msg, path = error_of(tmp_path, '{"training": {"learning_rate": 0.01}}')
    assert path in msg and "'training.learning_rate'" in msg and "'training.lr'" in msg
    msg, _ = error_of(tmp_path, '{"lr": 0.01}')
    assert "unknown key 'lr'" in msg and "'training.lr'" in msg
    msg, _ = error_of(tmp_path, '{"encoding": {"n_levls": 8}}')
    assert "'encoding.n_levls'" in msg and "'encoding.n_levels'" in msg


def test_wrong_type_and_out_of_range_name_key_and_fix(tmp_path):
    msg, path = error_of(tmp_path, '{"training": {"lr": "fast"}}')
    assert path in msg and "'training.lr'" in msg and "must be a number" in msg and "Fix:" in msg
    msg, _ = error_of(tmp_path, '{"encoding": {"n_features_per_level": 3}}')
    assert "'encoding.n_features_per_level'" in msg and "1, 2, 4, 8" in msg
    msg, _ = error_of(tmp_path, '{"training": {"epochs_per_phase": 0}}')
    assert "'training.epochs_per_phase'" in msg and ">= 1" in msg
    msg, _ = error_of(tmp_path, '{"training": {"grad_normalization": 1}}')
    assert "'training.grad_normalization'" in msg and "true or false" in msg
    msg, _ = error_of(tmp_path, '{"data": {"weights": [1, 1]}}')
    assert "'data.weights'" in msg and "4 numbers" in msg
    msg, _ = error_of(tmp_path, '{"data": {"active_indices": [5, -1]}}')
    assert "'data.active_indices'" in msg and ">= 0" in msg
    msg, _ = error_of(tmp_path, '{"encoding": {"base_resolution": 64, "max_resolution": 32}}')
    assert "'encoding.max_resolution'" in msg
    msg, _ = error_of(tmp_path, '{"line": "5137"}')
    assert "'line'" in msg and "'5173'" in msg
    msg, _ = error_of(tmp_path, '{"network": 5}')
    assert "'network'" in msg and "object" in msg
    # Several problems are reported together.
    msg, _ = error_of(tmp_path, '{"training": {"lr": -1, "seed": "x"}}')
    assert "'training.lr'" in msg and "'training.seed'" in msg


def test_data_combinations_are_checked(tmp_path):
    msg, _ = error_of(tmp_path, '{"data": {"wavelengths": "w.fits"}}')
    assert "'data.path'" in msg
    msg, _ = error_of(tmp_path, '{"data": {"path": "s.fits", "wavelengths": "w.fits", "synthetic": {}}}')
    assert "'data.synthetic'" in msg and "data.path" in msg


def test_set_errors_name_the_set_argument(tmp_path):
    msg, path = error_of(tmp_path, "{}", ["training.lr=abc"])
    assert path in msg and "--set training.lr=abc" in msg and "'training.lr'" in msg
    msg, _ = error_of(tmp_path, "{}", ["training.learning_rate=1"])
    assert "'training.learning_rate'" in msg and "'training.lr'" in msg
    msg, _ = error_of(tmp_path, "{}", ["training"])
    assert "KEY.PATH=VALUE" in msg
    msg, _ = error_of(tmp_path, "{}", ["line.name=x"])
    assert "'line'" in msg


def test_invalid_json_names_file_line_and_column(tmp_path):
    msg, path = error_of(tmp_path, '{\n  "training": {\n    // comment\n    "lr": 0.1\n    "seed": 1\n  }\n}\n')
    assert f"{path}, line 5, column 5" in msg and "invalid JSON" in msg
    msg, _ = error_of(tmp_path, '{\n  "training": {"seed": tru}\n}')
    assert "line 2, column 24" in msg and "'t'" in msg
    msg, _ = error_of(tmp_path, '{\n  "training": {\n')
    assert "line 2" in msg and "end of file" in msg
    msg, _ = error_of(tmp_path, "[1, 2]")
    assert "JSON object" in msg
    msg, _ = error_of(tmp_path, "  \n")
    assert "empty" in msg
    with pytest.raises(HashwfaError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_a_key_given_twice_names_the_key_and_its_second_line(tmp_path):
    msg, path = error_of(tmp_path, '{\n  "training": {\n    "lr": 0.1,\n    // again\n    "lr": 0.2\n  }\n}\n')
    assert f"{path}, line 5:" in msg and "'lr' appears twice" in msg
    # The same name in two different objects is fine.
    cfg = load_config(write(tmp_path, '{"training": {"seed": 3}, "data": {"synthetic": {"seed": 4}}}'))
    assert (cfg.training.seed, cfg.data.synthetic.seed) == (3, 4)


def test_comments_and_trailing_commas_are_accepted(tmp_path):
    cfg = load_config(write(tmp_path, '// c\n{\n  "training": {"seed": 3,}, # d\n}\n'))
    assert cfg.training.seed == 3


def test_physics_section_reaches_the_solver_loss(tmp_path):
    from hashwfa.training import TwoPhaseSolver
    from hashwfa.wfa.synthetic.plage import synthetic_plage

    cfg = load_config(write(tmp_path, '{"physics": {"qu_form": "wing"}}'))
    assert cfg.solver.physics.qu_form == "wing" and cfg.solver.physics.core_cutoff == 0.035
    assert load_config(write(tmp_path, "{}", "d.json")).physics.qu_form == "second_derivative"
    obs = synthetic_plage(ny=8, nx=6).observation
    assert TwoPhaseSolver(obs, cfg.solver, progress=False).loss.qu_form == "wing"
    message, _ = error_of(tmp_path, '{"physics": {"qu_form": "wings"}}')
    assert "physics.qu_form" in message and "wing" in message


def test_synthetic_data_carries_the_configured_loss_weights(tmp_path):
    cfg = load_config(write(tmp_path, '{"data": {"weights": [1, 2, 3, 4], "synthetic": {"ny": 6, "nx": 5}}}'))
    assert tuple(load_data(cfg).observation.weights) == (1.0, 2.0, 3.0, 4.0)
