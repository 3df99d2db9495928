"""The digit oracle: shapes, input validation, config round trip, a short training run."""

import json

import pytest
import torch

from ctrl_teach.evaluation import DigitOracle, train_digit_oracle


def test_shapes_and_size():
    model = DigitOracle().eval()
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    assert model(x).shape == (5, 10)
    assert model.features(x).shape == (5, 64)
    pred = model.predict(x)
    assert pred.shape == (5,) and pred.dtype == torch.long
    assert sum(p.numel() for p in model.parameters()) < 100_000


def test_config_round_trip():
    model = DigitOracle(width=8, feature_dim=16, dropout=0.0)
    config = json.loads(json.dumps(model.config))
    clone = DigitOracle(**config)
    clone.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(clone(x), model(x))
    assert clone.features(x).shape == (3, 16)


def test_wrong_shapes_raise():
    model = DigitOracle()
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="x"):
        model.features(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="dropout"):
        DigitOracle(dropout=1.0)
    with pytest.raises(ValueError, match="epochs"):
        train_digit_oracle(epochs=0)


def test_short_training_run():
    fit = train_digit_oracle(seed=0, epochs=1)
    model, acc = fit.model, fit.test_accuracy
    assert isinstance(model, DigitOracle) and not model.training
    assert 0.0 <= acc <= 1.0
    assert acc > 0.2  # one epoch already beats chance (0.1)
