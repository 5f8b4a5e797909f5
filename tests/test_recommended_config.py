"""configs/recommended.json is a valid config of the current schema."""

from pathlib import Path

from hashwfa.config import load_config, validate_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_recommended_config_loads_and_says_what_it_is():
    cfg = load_config(CONFIGS / "recommended.json")
    # Written out in full; every key the schema knows resolves to a value.
    assert cfg.encoding.version == 1
    assert cfg.data.active_indices == (5, 6, 7)
    assert cfg == validate_config(
        {"encoding": {"version": 1}, "training": {"epochs_per_phase": cfg.training.epochs_per_phase},
         "output": {"sigmas": True}}
    )
    assert "//" in (CONFIGS / "recommended.json").read_text()
