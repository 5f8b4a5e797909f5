"""A run of the recommended config estimates the noise and solves the regularised WFA once."""

import pytest

from hashwfa.cli.train import main
from hashwfa.wfa.baselines import products, regularized
from hashwfa.wfa.observation import noise as noise_module

SMALL = ["--set", "data.synthetic.ny=24", "--set", "data.synthetic.nx=20", "--set", "training.epochs_per_phase=4",
         "--set", "output.quicklook=false", "--quiet"]


@pytest.fixture
def counted(monkeypatch):
    """Count the noise estimates and the regularised WFA's solves, wherever they are asked for."""
    calls = {"estimate_noise": 0, "regularized_wfa": 0}

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    estimate = counting("estimate_noise", noise_module.estimate_noise)
    monkeypatch.setattr(noise_module, "estimate_noise", estimate)
    monkeypatch.setattr(regularized, "estimate_noise", estimate)
    monkeypatch.setattr(products, "regularized_wfa", counting("regularized_wfa", products.regularized_wfa))
    return calls


def test_recommended_run_without_sigma_maps_does_each_once(counted, repo_root, tmp_path):
    assert main([str(repo_root / "configs" / "recommended.json"), "--out", str(tmp_path / "run"),
                 "--set", "output.sigmas=false", *SMALL]) == 0
    # The smoothness weights, the REG_* maps and the WFA_SIGMA_* maps share them.
    assert counted == {"estimate_noise": 1, "regularized_wfa": 1}


def test_a_bootstrap_member_repeats_the_procedure_on_its_own_data(counted, repo_root, tmp_path):
    # A member from scratch is a replicate of the whole fit, its weights chosen from its own data:
    # one more of each.
    assert main([str(repo_root / "configs" / "recommended.json"), "--out", str(tmp_path / "run"),
                 "--set", "uncertainty.members=1", "--set", "uncertainty.member_start=scratch", *SMALL]) == 0
    assert counted == {"estimate_noise": 2, "regularized_wfa": 2}


def test_a_bootstrap_member_from_the_fit_keeps_its_smoothness_weights(counted, repo_root, tmp_path):
    # The default member starts from the fit with the fit's smoothness weights: nothing is chosen again.
    assert main([str(repo_root / "configs" / "recommended.json"), "--out", str(tmp_path / "run"),
                 "--set", "uncertainty.members=1", *SMALL]) == 0
    assert counted == {"estimate_noise": 1, "regularized_wfa": 1}


def test_field_fits_cards_fit_without_truncation(repo_root, tmp_path):
    # Every header card of field.fits fits in 80 characters as written (astropy warns when it cuts a comment).
    import warnings

    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main([str(repo_root / "configs" / "recommended.json"), "--out", str(tmp_path / "run"),
                     "--set", "output.sigmas=false", *SMALL]) == 0
    assert not [w for w in seen if issubclass(w.category, VerifyWarning)]
