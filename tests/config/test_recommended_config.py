"""configs/recommended.json: the recommended recipe, spelled out in the current schema."""

from pathlib import Path

from hashwfa.config.run_config import load_config, validate_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_recommended_config_is_the_recipe():
    cfg = load_config(CONFIGS / "recommended.json")
    # The reference protocol of V1 otherwise (configs/v1.json): same shared encoding and training.
    v1 = load_config(CONFIGS / "v1.json")
    assert cfg.encoding == v1.encoding and cfg.training == v1.training and cfg.network == v1.network
    # B_los: a finer Catmull-Rom grid; (B_Q, B_U): the shared Linear grid at 32.
    blos, bqbu = cfg.solver.field_encoding("blos"), cfg.solver.field_encoding("bqbu")
    assert (blos.max_resolution, blos.interpolation, blos.n_levels) == (128, "CatmullRom", 11)
    assert (bqbu.max_resolution, bqbu.interpolation) == (32, "Linear")
    assert blos.version == bqbu.version == 1
    # Smoothness in the loss, weights as factors of the discrepancy-principle alpha.
    reg = cfg.regularization
    assert reg.weights == "discrepancy"
    assert (reg.blos.squared_gradient, reg.blos.total_variation) == (1.0, 0.0)
    assert (reg.bqbu.squared_gradient, reg.bqbu.total_variation, reg.bqbu.tv_eps) == (0.5, 0.1, 0.1)
    # Full batch (the terms need the whole map), sigma maps on, the line from the data.
    assert cfg.training.batch_size >= cfg.data.synthetic.ny * cfg.data.synthetic.nx
    assert cfg.output.sigmas is True and cfg.line is None
    # Every wavelength, the spline for V and three-point for Q/U: the defaults, spelled out.
    assert cfg.data.active_indices is None
    assert (cfg.physics.derivative, cfg.physics.derivative_qu) == ("spline", "three_point")
    # Nothing else differs from the defaults.
    assert cfg == validate_config(
        {"encoding_blos": {"max_resolution": 128, "interpolation": "CatmullRom", "n_levels": 11},
         "regularization": {"blos": {"squared_gradient": 1.0},
                            "bqbu": {"squared_gradient": 0.5, "total_variation": 0.1}},
         "output": {"sigmas": True}}
    )
    assert "//" in (CONFIGS / "recommended.json").read_text()
