"""results.load_model reports missing, foreign and damaged files as HashwfaError."""

import pickle

import pytest
import torch

from hashwfa.errors import HashwfaError
from hashwfa.run.outputs import load_model


def test_missing_file(tmp_path):
    with pytest.raises(HashwfaError, match="no model file"):
        load_model(tmp_path / "model.pt")


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"this is text, not a zip archive")
    with pytest.raises(HashwfaError, match="not a readable hashwfa model"):
        load_model(path)


def test_pickle_payload_is_not_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    path = tmp_path / "model.pt"
    with open(path, "wb") as f:
        pickle.dump(Boom(), f)
    with pytest.raises(HashwfaError, match="not a readable hashwfa model"):
        load_model(path)


@pytest.mark.parametrize("bundle, message", [({"config": {}}, "lacks fields, scales"), ([1, 2], "lacks fields")])
def test_foreign_torch_file(tmp_path, bundle, message):
    path = tmp_path / "model.pt"
    torch.save(bundle, path)
    with pytest.raises(HashwfaError, match=message):
        load_model(path)


def test_damaged_bundle(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"fields": "oops", "scales": {}, "config": {"encoding": {"version": 1}}}, path)
    with pytest.raises(HashwfaError, match="damaged"):
        load_model(path)


def test_header_text_escapes_everything_outside_printable_ascii():
    from astropy.io import fits

    from hashwfa.run.outputs import header_text

    text = "obs_é/\tx€😀 ~ok\\"
    assert header_text(text) == "obs_\\u00e9/\\u0009x\\u20ac\\U0001f600 ~ok\\"
    assert header_text("plain ASCII ~!") == "plain ASCII ~!"
    fits.Header()["DATASRC"] = header_text(text)  # astropy accepts it


class _RunsCode:
    def __reduce__(self):
        return (exec, ("raise SystemExit('executed')",))


@pytest.mark.parametrize("reader", ["load_checkpoint", "load_model"])
def test_a_refused_pickle_is_one_line_without_the_advice_to_load_it_unsafely(tmp_path, reader):
    from hashwfa.run import outputs

    path = tmp_path / "checkpoint.pt"
    torch.save({"state": _RunsCode()}, path)
    with pytest.raises(HashwfaError) as info:
        getattr(outputs, reader)(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "Fix:" in message
    assert "weights_only" not in message and "likely succeed" not in message
    assert "other than tensors" in message


def test_a_failed_torch_save_names_the_file_and_the_fix(tmp_path, monkeypatch):
    from hashwfa.errors import OutputWriteError
    from hashwfa.run import outputs

    def full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2688 vs 2576")

    monkeypatch.setattr(outputs.torch, "save", full)
    with pytest.raises(OutputWriteError) as info:
        outputs.save_torch(tmp_path / "model.pt", {"a": torch.zeros(3)})
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "model.pt") in message
    assert "full disk" in message and "Fix: free disk space" in message
    assert sorted(tmp_path.iterdir()) == []  # the temporary is gone, no model.pt
