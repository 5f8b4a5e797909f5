"""make_grid: backend choice, errors, and state_dicts that move between backends (against a stand-in
for tinycudann; the real tiny-cuda-nn against the torch grid is tests/gpu/test_tcnn_parity.py)."""

import io
import logging
import sys
import types

import pytest
import torch

import hashwfa.encodings.backend as backend_mod
from hashwfa.encodings import HashEncoding, TcnnGrid, TorchGrid, make_grid, resolve_backend, tcnn_status
from hashwfa.errors import HashwfaError

CONFIG = {"otype": "HashGrid", "n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 10,
          "base_resolution": 2, "per_level_scale": 2.0}

HAS_TCNN, TCNN_REASON = tcnn_status()


@pytest.fixture
def fresh_probe():
    """Forget the cached tcnn probe and the once-per-process announcements."""
    tcnn_status.cache_clear()
    saved = set(backend_mod._announced)
    backend_mod._announced.clear()
    yield
    tcnn_status.cache_clear()
    backend_mod._announced.clear()
    backend_mod._announced.update(saved)


def test_torch_backend():
    grid = make_grid(2, CONFIG, backend="torch", seed=3)
    assert isinstance(grid, TorchGrid)
    assert set(grid.state_dict()) == {"params"}
    assert grid(torch.rand(5, 2)).dtype == torch.float32
    assert make_grid(2, CONFIG, backend="torch", dtype=torch.float64).params.dtype == torch.float64


@pytest.mark.skipif(HAS_TCNN, reason="tiny-cuda-nn is available here")
def test_auto_without_tcnn_falls_back_and_says_so_once(fresh_probe, caplog):
    with caplog.at_level(logging.INFO, logger="hashwfa.encodings.backend"):
        assert resolve_backend("auto") == "torch"
        assert isinstance(make_grid(2, CONFIG), TorchGrid)
        HashEncoding(0, n_levels=2, base_resolution=2, max_resolution=4)
    messages = [r.getMessage() for r in caplog.records if "grid backend" in r.getMessage()]
    assert len(messages) == 1 and "pure-PyTorch" in messages[0]


@pytest.mark.skipif(HAS_TCNN, reason="tiny-cuda-nn is available here")
def test_tcnn_without_tcnn_is_an_error_with_the_fix(fresh_probe):
    with pytest.raises(HashwfaError) as info:
        make_grid(2, CONFIG, backend="tcnn")
    message = str(info.value)
    assert "backend='tcnn'" in message
    assert "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch" in message
    assert "backend='torch'" in message
    with pytest.raises(HashwfaError, match="tiny-cuda-nn"):
        HashEncoding(0, backend="tcnn")


def test_unknown_backend_and_bad_config():
    with pytest.raises(HashwfaError, match="backend must be one of 'auto', 'tcnn', 'torch'"):
        make_grid(2, CONFIG, backend="cuda")
    with pytest.raises(HashwfaError, match="Did you mean 'n_levels'"):
        make_grid(2, {**CONFIG, "n_level": 4}, backend="torch")


def test_torch_state_dict_round_trip():
    a = make_grid(2, CONFIG, backend="torch", seed=1)
    b = make_grid(2, CONFIG, backend="torch", seed=2)
    x = torch.rand(100, 2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a(x), b(x))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(a(x), b(x))


def test_encoding_state_dict_round_trip_every_version():
    x = torch.rand(64, 2) * 2 - 1
    for v in range(7):
        a = HashEncoding(v, n_levels=4, base_resolution=2, max_resolution=16, backend="torch", seed=1)
        b = HashEncoding(v, n_levels=4, base_resolution=2, max_resolution=16, backend="torch", seed=2)
        buffer = io.BytesIO()
        torch.save(a.state_dict(), buffer)
        buffer.seek(0)
        b.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(a(x), b(x)), v


# --- The tcnn wrapper against a stand-in for the tinycudann module ------------------
# The stand-in mimics the interface of tinycudann.Encoding that TcnnGrid relies
# on (modules.py: a `params` parameter, `n_output_dims`, half output by default,
# a `dtype` argument in recent versions) and computes with TorchGrid. It tests
# the wrapper's plumbing on a CPU; the real parity test is further below.


def _fake_tinycudann(with_dtype: bool) -> types.ModuleType:
    class Encoding(torch.nn.Module):
        def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
            super().__init__()
            self._grid = TorchGrid(n_input_dims, encoding_config, seed=seed + 100)
            self.n_output_dims = self._grid.n_output_dims
            self.out_dtype = torch.half if dtype is None else dtype
            self.params = torch.nn.Parameter(self._grid.params.detach().clone())

        def forward(self, x):
            out = torch.func.functional_call(self._grid, {"params": self.params}, (x,))
            return out.to(self.out_dtype)

    if not with_dtype:
        def init(self, n_input_dims, encoding_config, seed=1337):
            Encoding.__init__(self, n_input_dims, encoding_config, seed)
        OldEncoding = type("Encoding", (Encoding,), {"__init__": init})
        return types.SimpleNamespace(Encoding=OldEncoding, __version__="fake-old")
    return types.SimpleNamespace(Encoding=Encoding, __version__="fake")


@pytest.fixture(params=[True, False], ids=["dtype-arg", "old-signature"])
def fake_tcnn(request, monkeypatch, fresh_probe):
    monkeypatch.setitem(sys.modules, "tinycudann", _fake_tinycudann(request.param))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "stand-in GPU")
    return request.param


def test_wrapper_state_dict_matches_torch_grid(fake_tcnn, caplog):
    with caplog.at_level(logging.INFO, logger="hashwfa.encodings.backend"):
        assert resolve_backend("auto") == "tcnn"
        grid = make_grid(2, CONFIG, backend="auto", seed=5)
        make_grid(2, CONFIG, backend="auto", seed=5)
    assert sum("chose tiny-cuda-nn" in r.getMessage() for r in caplog.records) == 1
    assert isinstance(grid, TcnnGrid)
    torch_grid = make_grid(2, CONFIG, backend="torch", seed=5)
    assert set(grid.state_dict()) == set(torch_grid.state_dict()) == {"params"}
    assert grid.params.shape == torch_grid.params.shape
    assert [n for n, _ in grid.named_parameters()] == ["params"]
    x = torch.rand(50, 2)
    assert grid(x).dtype == torch.float32  # half output of old bindings is cast
    # torch -> tcnn and tcnn -> torch.
    grid.load_state_dict(torch_grid.state_dict())
    torch.testing.assert_close(grid(x), torch_grid(x), rtol=1e-3, atol=1e-6)
    with torch.no_grad():
        grid.params.mul_(-2.0)
    torch_grid.load_state_dict(grid.state_dict())
    torch.testing.assert_close(grid(x), torch_grid(x), rtol=1e-3, atol=1e-6)
    # Gradients reach the wrapper's parameter.
    grid(x).sum().backward()
    assert grid.params.grad is not None and grid.params.grad.abs().sum() > 0


def test_wrapper_inside_hash_encoding(fake_tcnn):
    enc = HashEncoding(6, n_levels=4, base_resolution=2, max_resolution=16, backend="tcnn")
    assert enc.backend == "tcnn" and isinstance(enc.grid, TcnnGrid) and isinstance(enc.plane, TcnnGrid)
    ref = HashEncoding(6, n_levels=4, base_resolution=2, max_resolution=16, backend="torch")
    assert set(enc.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(30, 2) * 2 - 1
    torch.testing.assert_close(enc(x), ref(x), rtol=1e-3, atol=1e-6)
    with pytest.raises(HashwfaError, match="float32"):
        make_grid(2, CONFIG, backend="tcnn", dtype=torch.float64)
