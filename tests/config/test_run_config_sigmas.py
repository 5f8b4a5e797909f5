"""The sigma-map settings of a run config: defaults, the shipped configs, data.noise."""

import pytest

from hashwfa.config.run_config import load_config, validate_config
from hashwfa.errors import HashwfaError


def test_defaults_keep_the_seed_protocol_without_field_sigmas():
    cfg = validate_config({})
    assert cfg.output.sigmas is False and cfg.data.noise is None
    assert (cfg.uncertainty.members, cfg.uncertainty.window_blos_px, cfg.uncertainty.window_bqbu_px) == (1, 3.0, 6.0)
    assert cfg.uncertainty.window_frames == 1.0  # time series only (BENCHMARKS.md section 6, "Time series")


@pytest.mark.parametrize("version", range(7))
def test_seed_configs_do_not_train_members(repo_root, version):
    assert load_config(repo_root / "configs" / f"v{version}.json").output.sigmas is False


def test_recommended_config_writes_the_sigma_maps(repo_root):
    path = repo_root / "configs" / "recommended.json"
    if not path.exists():
        pytest.skip("configs/recommended.json is not in this checkout")
    assert load_config(path).output.sigmas is True  # the recommended config writes them


def test_noise_as_numbers_or_rows():
    assert validate_config({"data": {"noise": [1e-3, 2e-3, 2e-3, 1e-3]}}).data.noise == (1e-3, 2e-3, 2e-3, 1e-3)
    rows = validate_config({"data": {"noise": [[1e-3, 2e-3]] * 4}}).data.noise
    assert rows == ((1e-3, 2e-3),) * 4


@pytest.mark.parametrize("noise", [[1e-3] * 5, [[1e-3]] * 3, [[1e-3], [1e-3, 1e-3], [1e-3], [1e-3]], [1e-3, [1e-3], 1e-3, 1e-3]])
def test_noise_of_a_wrong_shape_names_the_key(noise):
    with pytest.raises(HashwfaError, match=r"c\.json: key 'data\.noise' .* neither 4 numbers nor 4 lists"):
        validate_config({"data": {"noise": noise}}, "c.json")


@pytest.mark.parametrize("key, value", [("uncertainty.members", 0), ("uncertainty.window_blos_px", -1.0),
                                        ("uncertainty.window_bqbu_px", "wide"), ("uncertainty.window_frames", -0.5)])
def test_uncertainty_settings_are_checked(key, value):
    section, name = key.split(".")
    with pytest.raises(HashwfaError, match=f"key '{key}'"):
        validate_config({section: {name: value}})


@pytest.mark.parametrize("noise", [[0.0] * 4, [1e-3, 0.0, 1e-3, 1e-3], [[1e-3, 1e-3]] * 3 + [[1e-3, 0.0]]])
def test_a_zero_sigma_of_a_fitted_stokes_parameter_is_refused(noise):
    with pytest.raises(HashwfaError, match=r"c\.json: key 'data\.noise' .* sigma of 0"):
        validate_config({"data": {"noise": noise}}, "c.json")


def test_a_zero_sigma_of_stokes_i_or_of_an_unfitted_parameter_is_accepted():
    assert validate_config({"data": {"noise": [0.0, 1e-3, 1e-3, 1e-3]}}).data.noise[0] == 0.0
    cfg = validate_config({"data": {"noise": [1e-3, 1e-3, 1e-3, 0.0], "weights": [1.0, 1.0, 1.0, 0.0]}})
    assert cfg.data.noise[3] == 0.0


@pytest.mark.parametrize("nt", [1, 3])
def test_given_noise_reaches_the_data_of_a_plage_and_of_a_series(nt):
    from hashwfa.run.data import load_data

    synthetic = {"nt": nt, "ny": 6, "nx": 5}
    data = load_data(validate_config({"data": {"noise": [1e-3, 2e-3, 3e-3, 4e-3], "synthetic": synthetic}}))
    assert data.noise is not None and data.noise.method == "given"
    assert data.noise.sigma[:, 0].tolist() == [1e-3, 2e-3, 3e-3, 4e-3]
    with pytest.raises(HashwfaError, match="data.noise' has shape \\(4, 2\\)"):
        load_data(validate_config({"data": {"noise": [[1e-3, 1e-3]] * 4, "synthetic": synthetic}}))
