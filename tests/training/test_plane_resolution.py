"""V6's plane_resolution: the plane's size, its default, the config, the bundle."""

import dataclasses

import pytest
import torch

from hashwfa import HashwfaError
from hashwfa.cli.train import main
from hashwfa.config.run_config import validate_config
from hashwfa.encodings import HashEncoding
from hashwfa.training import TwoPhaseSolver, build_field, fields_from_bundle
from hashwfa.training.checkpoint import check_resumable
from hashwfa.training.solver_config import EncodingConfig, FieldEncodingConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _plane_values(resolution, dims, features):
    """A dense level of ``resolution`` vertices per axis: resolution^D entries (tcnn pads to 8) x F."""
    entries = resolution**dims
    return (entries + 7) // 8 * 8 * features


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("plane_resolution", [None, 5, 16, 128])
def test_plane_table_follows_plane_resolution(dims, plane_resolution):
    enc = HashEncoding(6, n_input_dims=dims, n_levels=3, n_features_per_level=2, base_resolution=2,
                       max_resolution=12, log2_hashmap_size=8, backend="torch", plane_resolution=plane_resolution)
    want = 12 if plane_resolution is None else plane_resolution  # default: max_resolution
    assert enc.plane_resolution == want
    assert enc.plane.params.numel() == _plane_values(want, dims, 2)
    assert enc.plane.layout.resolutions.tolist() == [want]
    # The main grid does not depend on the plane.
    ref = HashEncoding(6, n_input_dims=dims, n_levels=3, n_features_per_level=2, base_resolution=2,
                       max_resolution=12, log2_hashmap_size=8, backend="torch")
    assert enc.grid.params.numel() == ref.grid.params.numel()


def test_plane_resolution_only_for_v6():
    with pytest.raises(HashwfaError, match="plane_resolution.*V6.*version 1"):
        HashEncoding(1, n_levels=3, base_resolution=2, max_resolution=12, backend="torch", plane_resolution=8)
    with pytest.raises(HashwfaError, match="encoding.plane_resolution.*no dense plane"):
        validate_config({"encoding": {"version": 1, "plane_resolution": 64}})
    with pytest.raises(HashwfaError, match="encoding.plane_resolution"):
        validate_config({"encoding": {"version": 6, "plane_resolution": 1}})
    # The V6 field alone may have it; the V1 field does not see it.
    cfg = validate_config({"encoding": {"version": 1}, "encoding_blos": {"version": 6, "plane_resolution": 64}})
    assert cfg.solver.field_encoding("blos").plane_resolution == 64
    assert cfg.solver.field_encoding("bqbu").plane_resolution is None
    with pytest.raises(HashwfaError, match="encoding_bqbu.plane_resolution"):
        validate_config({"encoding": {"version": 6, "plane_resolution": 64}, "encoding_bqbu": {"version": 1}})
    assert validate_config({"encoding": {"version": 6}}).encoding.plane_resolution is None


def test_keys_lists_plane_resolution(capsys):
    assert main(["--keys"]) == 0
    text = capsys.readouterr().out
    for key in ("encoding.plane_resolution", "encoding_blos.plane_resolution", "encoding_bqbu.plane_resolution"):
        assert f"  {key} = " in text, key


def test_plane_resolution_per_field_round_trips_through_the_bundle(small_observation, small_solver_config):
    base = small_solver_config(version=6, epochs_per_phase=2)  # max_resolution 16
    cfg = dataclasses.replace(base, encoding_blos=FieldEncodingConfig(plane_resolution=40))
    blos, bqbu = build_field(cfg, "blos"), build_field(cfg, "bqbu")
    assert blos.encoding.plane.params.numel() == _plane_values(40, 2, 2)
    assert bqbu.encoding.plane.params.numel() == _plane_values(16, 2, 2)
    solver = TwoPhaseSolver(small_observation, cfg, progress=False)
    solver.run()
    bundle = solver.model_bundle()
    assert bundle["config"]["encoding_blos"]["plane_resolution"] == 40
    assert bundle["config"]["encoding"]["plane_resolution"] is None
    fields = fields_from_bundle(bundle)
    x = torch.linspace(-1, 1, 14).reshape(7, 2)
    for phase in ("blos", "bqbu"):
        with torch.no_grad():
            assert torch.equal(fields[phase](x), solver.fields[phase](x))
    other = dataclasses.replace(base, encoding=dataclasses.replace(base.encoding, plane_resolution=24),
                                encoding_blos=FieldEncodingConfig(plane_resolution=40))
    with pytest.raises(HashwfaError, match="encoding.plane_resolution"):
        check_resumable(solver.state_dict(), other.to_dict())
    assert EncodingConfig().plane_resolution is None
