"""CTRL on 8x8 digits with three labels reaches the rejection sampler's accuracy (Chapter 7).

Pre-trained ``load_pretrained("digits")`` (class-conditional on the digit c); new label y = the
tertile bucket of the true ink-mass scorer ("little", "some", "much ink"); reward = a CNN
classifier trained on 1400 real labelled digits, temperature-scaled; 10-step eta=1 sampler;
variance-aware head control (``condition_pretrained``'s default class) with the pre-trained
x0_hat as an extra input; 1200 iterations of batch 64 at lr 1e-2.

Measured (quick, 2-core CPU, 1 torch thread, 393 s of fine-tuning; scratch runs of issue 11):
y-accuracy 0.885 against 0.913 for rejection sampling from the same pre-trained sampler,
digit accuracy 0.999. The budget is what closes it, not the batch layout or the width:

======================================  ==========  =========
head, batch 64, lr 1e-2                 y-accuracy  gap (nats)
======================================  ==========  =========
mean-only, 400 iterations               0.805       1.73
mean-only, 400, one (c, y) per slot     0.804       1.87
variance-aware, 400, one per slot       0.828       1.87
mean-only, width 128, 800 iterations    0.803       2.04
mean-only, 1200 iterations              0.880       1.16
variance-aware, 1200 iterations         0.885       1.17
======================================  ==========  =========

The certificate gap stays above 1 nat: the accuracy is within 5 points of the target's, the
law is not yet the target (``benchmarks/ctrl_benchmark.py --only digits --digits-buckets 3``).
"""

import pytest
import torch

from ctrl_teach.ctrl import (
    HeadAugmentedModel,
    digit_sampler,
    evaluate_digits,
    finetune,
    fit_digit_reward,
)
from ctrl_teach.pretrained import load_digit_oracle, load_pretrained
from ctrl_teach.profiles import seeded_init

pytestmark = pytest.mark.slow   # ~9 minutes on one CPU thread: this file starts first


@pytest.fixture(scope="module")
def digits_result():
    pre = load_pretrained("digits")
    reward = fit_digit_reward("ink", num_buckets=3)
    with seeded_init(0):
        aug = HeadAugmentedModel(pre.network, digit_sampler(pre), 3, x0_input=True, width=64,
                                 variance=True)
    hist = finetune(aug, reward.reward, iterations=1200, batch_size=64, lr=1e-2, seed=0)
    res = evaluate_digits(aug, reward, load_digit_oracle(),
                          generator=torch.Generator().manual_seed(1))
    return reward, hist, res


def test_digit_reward_is_accurate_and_calibrated(digits_result):
    reward, *_ = digits_result
    assert reward.fit.val_accuracy > 0.85
    assert 0.5 < reward.reward.temperature < 10


def test_digits_three_buckets_y_accuracy_matches_rejection(digits_result):
    _, hist, res = digits_result
    print({k: round(v, 3) for k, v in res.items() if k != "pairs"})
    assert sum(hist.J[-20:]) / 20 > sum(hist.J[:10]) / 10 + 1.0      # it learned
    assert res["y_accuracy"] >= res["y_accuracy_rejection"] - 0.05
    assert res["digit_accuracy"] >= 0.95
    assert res["gap"] > -0.1                                        # J <= log Z up to noise
    assert res["fid"] < res["fid_pretrained"]                       # closer to the target
