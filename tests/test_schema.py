"""hashwfa.schema: settings metadata, flattening, differing keys."""

import dataclasses

from hashwfa.schema import differing_keys, flatten, setting


def test_setting_carries_doc_and_checks():
    @dataclasses.dataclass(frozen=True)
    class Example:
        n: int = setting(3, "a count", min=1, max=9)

    (f,) = dataclasses.fields(Example)
    assert Example().n == 3
    assert dict(f.metadata) == {"doc": "a count", "min": 1, "max": 9}


def test_flatten_joins_key_paths_in_order():
    tree = {"a": {"b": 1, "c": {"d": [2, 3]}}, "e": None}
    assert list(flatten(tree).items()) == [("a.b", 1), ("a.c.d", [2, 3]), ("e", None)]


def test_differing_keys_ignores_listed_keys_and_sections():
    a = {"training": {"lr": 0.1, "device": "cpu"}, "output": {"dpi": 40}, "x": 1}
    b = {"training": {"lr": 0.2, "device": "cuda"}, "output": {"dpi": 80}, "y": None}
    assert differing_keys(a, b) == ["output.dpi", "training.device", "training.lr", "x", "y"]
    assert differing_keys(a, b, ("training.device", "output.")) == ["training.lr", "x", "y"]
    assert differing_keys(a, a) == []
