"""Per-field encodings and the regularisation terms of the training loss."""

import dataclasses

import numpy as np
import pytest
import torch

from hashwfa import HashwfaError
from hashwfa.config.run_config import validate_config
from hashwfa.training import TwoPhaseSolver, build_field, fields_from_bundle
from hashwfa.training.checkpoint import check_resumable
from hashwfa.training.penalty import MapPenalty, PenaltyWeights
from hashwfa.training.solver_config import FieldEncodingConfig, FieldRegularization, RegularizationConfig
from hashwfa.training.loss import WFALoss
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.physics.weak_field import wfa_coefficients
from hashwfa.wfa.baselines.regularized import regularized_wfa

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_penalty(m, mask, w_g, w_tv, eps):
    """Plain loops over pixels: squared gradient and Charbonnier TV, per valid pixel count."""
    ny, nx, _ = m.shape
    g2 = 0.0
    tv = 0.0
    for y in range(ny):
        for x in range(nx):
            if not mask[y, x]:
                continue
            dx = m[y, x + 1] - m[y, x] if x + 1 < nx and mask[y, x + 1] else np.zeros(m.shape[2])
            dy = m[y + 1, x] - m[y, x] if y + 1 < ny and mask[y + 1, x] else np.zeros(m.shape[2])
            g2 += np.sum(dx * dx) + np.sum(dy * dy)
            tv += np.sqrt(np.sum(dx * dx) + np.sum(dy * dy) + eps * eps) - eps
    n = mask.sum()
    return w_g * g2 / n + w_tv * tv / n


def test_map_penalty_scatters_the_valid_pixels_and_weights_the_terms():
    rng = np.random.default_rng(0)
    ny, nx = 5, 6
    mask = rng.random((ny, nx)) > 0.3
    index = np.flatnonzero(mask.ravel())
    values = rng.normal(size=(index.size, 2))
    weights = PenaltyWeights(squared_gradient=0.7, total_variation=1.3, tv_eps=0.2)
    penalty = MapPenalty(weights, torch.from_numpy(index), (ny, nx))
    got = float(penalty(torch.from_numpy(values)))
    full = np.zeros((ny * nx, 2))
    full[index] = values
    want = _reference_penalty(full.reshape(ny, nx, 2), mask, 0.7, 1.3, 0.2)
    assert got == pytest.approx(want, rel=1e-12)


def _with(config, **changes):
    return dataclasses.replace(config, **changes)


def test_field_encodings_override_key_by_key_and_round_trip(small_observation, small_solver_config):
    cfg = _with(small_solver_config(), encoding_blos=FieldEncodingConfig(max_resolution=32, interpolation="CatmullRom"))
    blos, bqbu = build_field(cfg, "blos"), build_field(cfg, "bqbu")
    assert (blos.encoding.max_resolution, blos.encoding.interpolation) == (32, "CatmullRom")
    assert (bqbu.encoding.max_resolution, bqbu.encoding.interpolation) == (16, "Linear")
    assert blos.encoding.n_levels == bqbu.encoding.n_levels == 6  # not overridden: shared
    solver = TwoPhaseSolver(small_observation, _with(cfg, training=dataclasses.replace(cfg.training, epochs_per_phase=2)),
                            progress=False)
    solver.run()
    bundle = solver.model_bundle()
    assert bundle["config"]["encoding_blos"]["interpolation"] == "CatmullRom"
    fields = fields_from_bundle(bundle)
    x = torch.linspace(-1, 1, 14).reshape(7, 2)
    for phase in ("blos", "bqbu"):
        with torch.no_grad():
            assert torch.equal(fields[phase](x), solver.fields[phase](x))
    # A checkpoint of another per-field encoding does not resume.
    other = _with(cfg, encoding_blos=FieldEncodingConfig(max_resolution=64, interpolation="CatmullRom"))
    with pytest.raises(HashwfaError, match="encoding_blos.max_resolution"):
        check_resumable(solver.state_dict(), other.to_dict())


def test_config_sections_and_their_checks():
    cfg = validate_config({"encoding_bqbu": {"max_resolution": 8}, "regularization": {"bqbu": {"total_variation": 2.0}}})
    assert cfg.solver.field_encoding("bqbu").max_resolution == 8
    assert cfg.solver.field_encoding("blos").max_resolution == 32
    assert cfg.regularization.active and not cfg.regularization.blos.active
    with pytest.raises(HashwfaError, match="encoding_blos.backend"):
        validate_config({"encoding_blos": {"interpolation": "BSpline", "backend": "tcnn"}})
    with pytest.raises(HashwfaError, match="training.batch_size.*whole map"):
        validate_config({"regularization": {"blos": {"squared_gradient": 1.0}}, "training": {"batch_size": 1000}})


def test_regularisation_refuses_minibatches(small_observation, small_solver_config):
    cfg = _with(small_solver_config(batch_size=50),
                regularization=RegularizationConfig(blos=FieldRegularization(squared_gradient=1.0)))
    with pytest.raises(HashwfaError, match="batch_size.*neighbouring pixels"):
        TwoPhaseSolver(small_observation, cfg, progress=False)


def test_discrepancy_weights_follow_the_regularised_wfa(small_observation, small_solver_config):
    obs = small_observation
    reg = RegularizationConfig(blos=FieldRegularization(squared_gradient=2.0),
                               bqbu=FieldRegularization(squared_gradient=0.5, total_variation=0.1, tv_eps=0.3))
    solver = TwoPhaseSolver(obs, _with(small_solver_config(), regularization=reg), progress=False)
    base = regularized_wfa(obs)
    inputs = obs.wfa_inputs()
    cv, cqu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, obs.line, 0.035,
                               qu_form="second_derivative", d2I_dlambda2=inputs.d2I_dlambda2)
    w = solver.penalty_weights  # computed from the loss's float32 coefficients: rel 1e-3
    d_v = np.median(np.mean(cv ** 2, axis=1))
    assert w["blos"].squared_gradient == pytest.approx(2.0 * base.alpha_v * d_v, rel=1e-3)
    assert w["blos"].total_variation == 0.0
    d_qu = np.median(np.mean(cqu ** 2, axis=1))
    sigma_b = base.noise_qu / np.sqrt(np.median(np.sum(cqu ** 2, axis=1)))
    assert w["bqbu"].squared_gradient == pytest.approx(0.5 * base.alpha_qu * d_qu, rel=1e-3)
    assert w["bqbu"].total_variation == pytest.approx(0.1 * base.alpha_qu * d_qu * sigma_b, rel=1e-3)
    assert w["bqbu"].tv_eps == pytest.approx(0.3 * sigma_b, rel=1e-3)


def test_logged_loss_has_the_penalty_and_the_final_loss_does_not(small_observation, small_solver_config):
    obs = small_observation
    reg = RegularizationConfig(weights="given", blos=FieldRegularization(squared_gradient=1e-4))
    cfg = _with(small_solver_config(epochs_per_phase=1), regularization=reg)
    # The first logged loss is that of the initial field: the data term plus the penalty, by hand.
    net = build_field(cfg, "blos")
    loss = WFALoss(obs)
    coords = torch.from_numpy(obs.coordinates()[obs.valid_index].astype(np.float32))
    with torch.no_grad():
        out = net(coords)[:, 0].double().numpy()
    data = float(loss(blos=torch.from_numpy(out).float(), phase="blos"))
    full = np.zeros(obs.ny * obs.nx)
    full[obs.valid_index] = out
    mask = obs.valid.reshape(obs.ny, obs.nx)
    want = data + _reference_penalty(full.reshape(obs.ny, obs.nx, 1), mask, 1e-4, 0.0, 0.1)
    result = TwoPhaseSolver(obs, cfg, progress=False).run()
    assert result.history["blos"]["loss"][0] == pytest.approx(want, rel=1e-5)
    # The final loss stays the reference protocol's: the data term of the final maps.
    assert result.final_loss == pytest.approx(loss.map_loss(result.blos, result.bq, result.bu), rel=1e-12)


def test_a_strong_squared_gradient_smooths_the_map(small_observation, small_solver_config):
    obs = small_observation

    def roughness(result):
        m = result.blos
        return float(np.sum(np.diff(m, axis=0) ** 2) + np.sum(np.diff(m, axis=1) ** 2))

    cfg = small_solver_config(epochs_per_phase=30, lr=0.05)
    plain = TwoPhaseSolver(obs, cfg, progress=False).run()
    reg = RegularizationConfig(blos=FieldRegularization(squared_gradient=100.0))
    smooth = TwoPhaseSolver(obs, _with(cfg, regularization=reg), progress=False).run()
    assert roughness(smooth) < 0.2 * roughness(plain)


def test_map_penalty_of_a_series_acts_per_frame():
    rng = np.random.default_rng(1)
    nt, ny, nx = 3, 4, 5
    mask = rng.random((nt, ny, nx)) > 0.25
    index = np.flatnonzero(mask.ravel())
    values = rng.normal(size=(index.size, 1))
    weights = PenaltyWeights(squared_gradient=0.4, total_variation=0.9, tv_eps=0.05)
    got = float(MapPenalty(weights, torch.from_numpy(index), (nt, ny, nx))(torch.from_numpy(values)))
    full = np.zeros(nt * ny * nx)
    full[index] = values[:, 0]
    full = full.reshape(nt, ny, nx, 1)
    # Per frame: the frame's sums (the reference's mean times its valid count), over all valid pixels.
    want = sum(_reference_penalty(full[t], mask[t], 0.4, 0.9, 0.05) * mask[t].sum() for t in range(nt)) / mask.sum()
    assert got == pytest.approx(want, rel=1e-12)


def test_series_fit_with_per_field_encodings_and_regularisation(small_solver_config):
    from hashwfa.wfa.synthetic.series import synthetic_series

    obs = synthetic_series(nt=3, ny=12, nx=10, seed=3, model="wfa", noise=1e-3).observation()
    cfg = _with(small_solver_config(epochs_per_phase=3),
                encoding_bqbu=FieldEncodingConfig(max_resolution=8),
                regularization=RegularizationConfig(bqbu=FieldRegularization(squared_gradient=1.0, total_variation=0.1)))
    solver = TwoPhaseSolver(obs, cfg, progress=False)
    assert set(solver.penalty_weights) == {"bqbu"}
    # One weight for the series, from the regularised WFA of the whole series (smoothed frame by frame).
    assert solver.penalty_weights["bqbu"].alpha == pytest.approx(regularized_wfa(obs).alpha_qu)
    result = solver.run()
    assert result.blos.shape == (3, 12, 10) and np.all(np.isfinite(result.bt))
    # Each field's time share follows its own finest resolution; the bundle rebuilds both.
    assert solver.geometries["blos"] != solver.geometries["bqbu"]
    fields = fields_from_bundle(solver.model_bundle())
    x = torch.rand(9, 3) * 2 - 1
    for phase in ("blos", "bqbu"):
        with torch.no_grad():
            assert torch.equal(fields[phase](x), solver.fields[phase](x))


def test_discrepancy_weights_use_the_given_noise(small_observation, small_solver_config):
    # data.noise given: the weights follow the regularised WFA with that noise, not the estimate.
    obs = small_observation
    reg = RegularizationConfig(bqbu=FieldRegularization(squared_gradient=1.0, total_variation=1.0))
    noise = given_noise([1e-3, 8e-3, 8e-3, 8e-3], obs.nw)
    solver = TwoPhaseSolver(obs, _with(small_solver_config(), regularization=reg), progress=False, noise=noise)
    with_given = regularized_wfa(obs, noise=noise)
    estimated = regularized_wfa(obs)
    assert with_given.noise_qu == pytest.approx(8e-3) and with_given.alpha_qu != pytest.approx(estimated.alpha_qu)
    assert solver.penalty_weights["bqbu"].alpha == pytest.approx(with_given.alpha_qu)
    assert solver.penalty_weights["bqbu"].sigma == pytest.approx(8e-3)
