import pytest

from rnnlab.config import ConfigError, ModelConfig, TrainConfig, from_dict, to_dict


@pytest.mark.parametrize(
    "cls, kwargs, flag",
    [
        (ModelConfig, {"cell": "transformer"}, "--cell"),
        (ModelConfig, {"num_layers": 0}, "--layers"),
        (ModelConfig, {"dropout": 1.0}, "--dropout"),
        (ModelConfig, {"cell": "lstm", "init": "identity"}, "--init"),
        (TrainConfig, {"batch_size": 0}, "--batch-size"),
        (TrainConfig, {"minutes": -1.0}, "--minutes"),
        (TrainConfig, {"clip_mode": "sideways"}, "--clip-mode"),
    ],
)
def test_invalid_values_name_the_flag(cls, kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        cls(**kwargs)


def test_json_round_trip_ignores_unknown_keys():
    cfg = TrainConfig(batch_size=8, minutes=2.5)
    data = to_dict(cfg) | {"from_the_future": 1}
    assert from_dict(TrainConfig, data) == cfg


def test_budget_fraction_takes_whichever_runs_out_first():
    cfg = TrainConfig(max_steps=100, minutes=1.0)
    assert cfg.budget_fraction(50, 0.0) == 0.5
    assert cfg.budget_fraction(10, 45.0) == 0.75
    assert cfg.budget_fraction(200, 0.0) == 1.0
