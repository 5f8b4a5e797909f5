"""WFALoss: the reference protocol's loss against a scalar hand computation, phases,
minibatches, NaN pixels, shapes and errors."""

import warnings

import numpy as np
import pytest
import torch

from hashwfa.errors import HashwfaError
from hashwfa.training.loss import WFALoss
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import synthetic_plage

WL = np.array([-0.1, -0.05, 0.0, 0.04, 0.1])  # unequal spacing
ACTIVE = (1, 2, 3)
LAMBDA0, GEFF, GG = 5172.6843, 1.75, 2.875  # Mg I b2, geff and Gg by hand


def small_observation(weights=(1.0, 1.0, 1.0, 1.0)):
    rng = np.random.default_rng(7)
    ny, nx = 2, 3
    data = np.empty((ny, nx, 4, WL.size))
    depth = rng.uniform(0.3, 0.6, (ny, nx, 1))
    data[:, :, 0] = 1 - depth * np.exp(-(((WL - 0.01) / 0.09) ** 2))
    data[:, :, 1:] = 1e-3 * rng.standard_normal((ny, nx, 3, WL.size))
    return Observation(data, WL, line="5173", active_indices=ACTIVE, weights=weights)


def hand_loss(obs, blos, bq, bu, phase, qu_form):
    """The definition, with scalar loops: V and the wing Q/U formula of docs/ARCHITECTURE.md section 5, the
    second-derivative form from the Lagrange parabola through the three points."""
    c = -4.67e-13 * LAMBDA0 ** 2
    terms = {"V": [], "Q": [], "U": []}
    for p in range(obs.n_pixels):
        y, x = divmod(p, obs.nx)
        i_prof = obs.stokes[y, x, 0]
        for a in ACTIVE:
            h0, h1 = WL[a] - WL[a - 1], WL[a + 1] - WL[a]
            s0 = (i_prof[a] - i_prof[a - 1]) / h0
            s1 = (i_prof[a + 1] - i_prof[a]) / h1
            di = (h1 * s0 + h0 * s1) / (h0 + h1)
            if qu_form == "wing":
                inv = 0.0 if abs(WL[a]) <= 0.035 else 1.0 / WL[a]
                k = 0.75 * c * c * GG * di * inv
            else:
                # Lagrange parabola through (x_{a-1}, x_a, x_{a+1}): f'' = 2 sum f_j / prod_{m != j} (x_j - x_m)
                x0, x1, x2 = WL[a - 1], WL[a], WL[a + 1]
                d2 = 2 * (i_prof[a - 1] / ((x0 - x1) * (x0 - x2)) + i_prof[a] / ((x1 - x0) * (x1 - x2))
                          + i_prof[a + 1] / ((x2 - x0) * (x2 - x1)))
                k = -0.25 * c * c * GG * d2
            terms["V"].append((obs.stokes[y, x, 3, a] - c * GEFF * blos[p] * di) ** 2)
            terms["Q"].append((obs.stokes[y, x, 1, a] - k * bq[p]) ** 2)
            terms["U"].append((obs.stokes[y, x, 2, a] - k * bu[p]) ** 2)
    w = dict(zip("IQUV", obs.weights))
    parts = {"blos": "V", "bqbu": "QU", "all": "QUV"}[phase]
    return sum(w[s] * np.mean(terms[s]) for s in parts)


@pytest.mark.parametrize("qu_form", ["second_derivative", "wing"])
@pytest.mark.parametrize("phase", ["blos", "bqbu", "all"])
def test_loss_matches_hand_computation(phase, qu_form):
    obs = small_observation(weights=(0.5, 2.0, 3.0, 4.0))
    rng = np.random.default_rng(1)
    blos, bq, bu = rng.normal(0, 300, 6), rng.normal(0, 1e5, 6), rng.normal(0, 1e5, 6)
    loss = WFALoss(obs, dtype=torch.float64, qu_form=qu_form)
    got = loss(blos=torch.tensor(blos), bqbu=torch.tensor(np.stack([bq, bu], 1)), phase=phase)
    assert got.dim() == 0
    assert got.item() == pytest.approx(hand_loss(obs, blos, bq, bu, phase, qu_form), rel=1e-10)


def test_default_is_the_second_derivative_form():
    obs = small_observation()
    assert WFALoss(obs).qu_form == "second_derivative"
    bqbu = torch.full((6, 2), 1e5, dtype=torch.float64)
    default = WFALoss(obs, dtype=torch.float64)(bqbu=bqbu, phase="bqbu")
    wing = WFALoss(obs, dtype=torch.float64, qu_form="wing")(bqbu=bqbu, phase="bqbu")
    explicit = WFALoss(obs, dtype=torch.float64, qu_form="second_derivative")(bqbu=bqbu, phase="bqbu")
    assert default.item() == explicit.item() != wing.item()


def test_buffers_are_contiguous_and_precomputed():
    loss = WFALoss(small_observation())
    assert loss.n_valid == 6 and loss.n_active == 3
    for name in ("coef_v", "coef_qu", "target_q", "target_u", "target_v"):
        t = getattr(loss, name)
        assert t.shape == (6, 3) and t.dtype == torch.float32 and t.is_contiguous()
    assert loss.valid_index.dtype == torch.long
    assert torch.all(loss.coef_qu[:, 1] != 0)  # the second-derivative form has a core term
    assert torch.all(WFALoss(small_observation(), qu_form="wing").coef_qu[:, 1] == 0)  # the wing form's core cut-off


def test_phases_use_only_their_fields():
    loss = WFALoss(small_observation())
    blos = torch.full((6,), 100.0)
    bqbu = torch.full((6, 2), 1e5)
    only_v = loss(blos=blos, phase="blos")
    assert torch.equal(only_v, loss(blos=blos, bqbu=2 * bqbu, phase="blos"))
    only_qu = loss(bqbu=bqbu, phase="bqbu")
    assert torch.allclose(loss(blos=blos, bqbu=bqbu, phase="all"), only_v + only_qu)
    comps = loss.components(blos=blos, bqbu=bqbu)
    assert torch.allclose(comps["V"], only_v) and torch.allclose(comps["Q"] + comps["U"], only_qu)
    # (P,) and (P, 1) are the same field
    assert torch.equal(only_v, loss(blos=blos[:, None], phase="blos"))


def test_missing_or_misshapen_fields_raise():
    loss = WFALoss(small_observation())
    with pytest.raises(HashwfaError, match="needs bqbu"):
        loss(blos=torch.zeros(6), phase="bqbu")
    with pytest.raises(HashwfaError, match="needs blos"):
        loss(bqbu=torch.zeros(6, 2), phase="all")
    with pytest.raises(HashwfaError, match=r"\(6, 2\)"):
        loss(bqbu=torch.zeros(6, 3), phase="bqbu")
    with pytest.raises(HashwfaError, match=r"\(6,\)"):
        loss(blos=torch.zeros(5), phase="blos")
    with pytest.raises(HashwfaError, match="phase"):
        loss(blos=torch.zeros(6), phase="V")
    with pytest.raises(HashwfaError, match="index"):
        loss(blos=torch.zeros(6), index=torch.zeros(2, 2, dtype=torch.long))


def test_minibatch_index():
    loss = WFALoss(small_observation())
    blos = torch.linspace(-300, 300, 6)
    full = loss(blos=blos, phase="blos")
    assert torch.allclose(loss(blos=blos, phase="blos", index=torch.arange(6)), full)
    idx = torch.tensor([4, 1])
    part = loss(blos=blos[idx], phase="blos", index=idx)
    r = loss.target_v[idx] - loss.coef_v[idx] * blos[idx, None]
    assert torch.allclose(part, torch.mean(r ** 2))


def test_gradient_and_true_field_minimise_the_loss():
    plage = synthetic_plage(ny=12, nx=10, seed=2, noise=0.0, model="wfa")
    loss = WFALoss(plage.observation, dtype=torch.float64)
    flat = loss.valid_index.numpy()
    blos = torch.tensor(plage.truth.blos.reshape(-1)[flat])
    bqbu = torch.tensor(np.stack([plage.truth.bq.reshape(-1), plage.truth.bu.reshape(-1)], 1)[flat])
    at_truth = loss(blos=blos, bqbu=bqbu, phase="all").item()
    at_zero = loss(blos=torch.zeros_like(blos), bqbu=torch.zeros_like(bqbu), phase="all").item()
    assert at_truth < 1e-20 * max(at_zero, 1.0) + 1e-24 and at_zero > 0
    b = torch.zeros(loss.n_valid, requires_grad=True)
    loss(blos=b, phase="blos").backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


def test_nan_pixels_give_a_finite_loss():
    plage = synthetic_plage(ny=10, nx=9, seed=1, noise=1e-3)
    data = plage.observation.stokes.copy()
    data[3, 4, 0, 6] = np.nan
    data[0, 0, 3, :] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = Observation(data, plage.observation.wavelengths)
    loss = WFALoss(obs)
    assert loss.n_valid == 88
    assert 3 * 9 + 4 not in loss.valid_index.tolist() and 0 not in loss.valid_index.tolist()
    value = loss(blos=torch.zeros(88), bqbu=torch.zeros(88, 2), phase="all")
    assert torch.isfinite(value)


def test_all_core_wavelengths_warn_with_the_wing_form():
    obs = small_observation()
    obs2 = Observation(obs.stokes, obs.wavelengths, active_indices=(2,))
    with pytest.warns(UserWarning, match="inside the line core"):
        WFALoss(obs2, qu_form="wing")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WFALoss(obs2)  # the second-derivative form constrains B_Q, B_U in the core


def test_second_derivative_form_needs_three_wavelengths():
    data = np.zeros((1, 2, 4, 2))
    data[..., 0, :] = [0.9, 0.8]
    obs = Observation(data, np.array([-0.05, 0.05]), active_indices=(0, 1))
    with pytest.raises(HashwfaError, match="3 wavelengths"):
        WFALoss(obs)
    assert WFALoss(obs, qu_form="wing").n_active == 2


def test_map_loss_of_whole_field_maps_matches_hand_computation():
    obs = small_observation(weights=(0.5, 2.0, 3.0, 4.0))
    rng = np.random.default_rng(3)
    blos, bq, bu = rng.normal(0, 300, 6), rng.normal(0, 1e5, 6), rng.normal(0, 1e5, 6)
    loss = WFALoss(obs, dtype=torch.float64)
    got = loss.map_loss(blos.reshape(2, 3), bq.reshape(2, 3), bu.reshape(2, 3))
    assert isinstance(got, float)
    assert got == pytest.approx(hand_loss(obs, blos, bq, bu, "all", "second_derivative"), rel=1e-10)


def test_float32_loss_and_gradient_match_float64_residuals_at_the_optimum():
    """The loss is evaluated from per-pixel sums (its quadratic form). At the
    pixel-wise optimum, where the data's and the model's large terms cancel, the
    float32 loss and its gradient must still match the squared residuals summed
    in float64 (the oracle: the residuals themselves, no expansion)."""
    plage = synthetic_plage(ny=16, nx=14, seed=3, noise=1e-3, active_indices=range(13), derivative="spline")
    obs = plage.observation
    exact = WFALoss(obs, dtype=torch.float64)
    c, v = exact.coef_v.numpy(), exact.target_v.numpy()
    best = np.sum(c * v, 1) / np.sum(c * c, 1)  # the pixel-wise WFA, in float64
    for b in (best, best + 7.0):
        r = v - c * b[:, None]
        oracle = np.mean(r ** 2)
        grad_oracle = -2 * np.sum(c * r, 1) / r.size
        field = torch.tensor(b, dtype=torch.float32, requires_grad=True)
        got = WFALoss(obs)(blos=field, phase="blos")
        got.backward()
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(oracle, rel=1e-5)
        scale = max(np.abs(grad_oracle).max(), 1e-3 * np.abs(2 * np.sum(c * c, 1) / r.size).max())
        np.testing.assert_allclose(field.grad.numpy(), grad_oracle, atol=1e-4 * scale)
