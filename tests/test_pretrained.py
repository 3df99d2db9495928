"""The shipped pre-trained models: quality against fresh data, and checkpoint safety."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from ctrl_teach.data import load_digit_images, load_toy
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.evaluation import energy_distance
from ctrl_teach.pretrained import (
    PRETRAINED_NAMES,
    WEIGHTS_DIR,
    CheckpointError,
    load_digit_oracle,
    load_pretrained,
)

N = 2000


def _gaussian_fit_baseline(x: torch.Tensor, n: int, gen) -> torch.Tensor:
    """A naive model: one Gaussian with the data's mean and covariance."""
    chol = torch.linalg.cholesky(torch.cov(x.T))
    return x.mean(0) + torch.randn(n, x.shape[1], generator=gen) @ chol.T


@pytest.mark.parametrize("name", ["toy-gmm", "toy-shapes"])
def test_toy_models_match_fresh_data_and_beat_a_gaussian_fit(name):
    model = load_pretrained(name)
    toy = load_toy(name.removeprefix("toy-"))
    gen = torch.Generator().manual_seed(0)
    for c in range(toy.num_conditions):
        samples = model.sample(N, c=c, generator=gen)
        fresh, other = toy.sample(N, c, generator=gen), toy.sample(N, c, generator=gen)
        model_ed = energy_distance(samples, fresh)
        noise_ed = energy_distance(other, fresh)  # two exact samples: the Monte Carlo floor
        naive_ed = energy_distance(_gaussian_fit_baseline(other, N, gen), fresh)
        threshold = 0.005  # measured: model |E| < 0.002, Gaussian fit 0.009-0.07
        assert model_ed < threshold, f"{name} c={c}: energy distance {model_ed:.4f}"
        assert naive_ed > threshold, f"the Gaussian fit should fail: {naive_ed:.4f}"
        assert noise_ed < threshold


def test_digit_oracle_held_out_accuracy():
    oracle = load_digit_oracle()
    x, y = load_digit_images(split="test")
    acc = float((oracle.predict(x) == y).float().mean())
    assert acc >= 0.97, acc


def test_digits_model_samples_are_recognised_per_class():
    model = load_pretrained("digits")
    oracle = load_digit_oracle()
    per_class = 50
    cond = torch.arange(10).repeat_interleave(per_class)
    x = model.sample(len(cond), c=cond, generator=torch.Generator().manual_seed(0))
    assert x.shape == (500, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    acc = (oracle.predict(x) == cond).float().reshape(10, per_class).mean(1)
    assert float(acc.mean()) >= 0.8, acc.tolist()


def test_shipped_weights_are_small():
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*.pt"))
    assert len(list(WEIGHTS_DIR.glob("*.pt"))) == len(PRETRAINED_NAMES)
    assert total < 5 * 2**20, f"{total / 2**20:.2f} MiB"


def test_same_seed_gives_identical_samples_after_a_round_trip(tmp_path):
    from ctrl_teach.pretrained import save_checkpoint

    model = load_pretrained("toy-gmm")
    save_checkpoint(tmp_path / "toy-gmm", model.network, model.meta)
    twin = load_pretrained("toy-gmm", weights_dir=tmp_path)
    a = model.sample(64, c=1, generator=torch.Generator().manual_seed(5))
    b = twin.sample(64, c=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.fixture
def copied_weights(tmp_path) -> Path:
    for f in WEIGHTS_DIR.glob("toy-gmm.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def test_truncated_weights_raise_naming_the_file(copied_weights):
    pt = copied_weights / "toy-gmm.pt"
    pt.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="toy-gmm.pt.*truncated"):
        load_pretrained("toy-gmm", weights_dir=copied_weights)


def test_corrupted_weights_raise_naming_the_file(copied_weights):
    pt = copied_weights / "toy-gmm.pt"
    blob = bytearray(pt.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    pt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="toy-gmm.pt.*corrupted"):
        load_pretrained("toy-gmm", weights_dir=copied_weights)


def test_mismatched_description_raises_naming_the_file(copied_weights):
    js = copied_weights / "toy-gmm.json"
    meta = json.loads(js.read_text())
    meta["network"]["width"] = 64
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="toy-gmm.pt.*does not match"):
        load_pretrained("toy-gmm", weights_dir=copied_weights)


def test_invalid_json_and_missing_files(copied_weights):
    (copied_weights / "toy-gmm.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="toy-gmm.json.*not valid JSON"):
        load_pretrained("toy-gmm", weights_dir=copied_weights)
    with pytest.raises(CheckpointError, match="toy-shapes.json.*not found"):
        load_pretrained("toy-shapes", weights_dir=copied_weights)
    with pytest.raises(ValueError, match="name"):
        load_pretrained("imagenet")


def test_retrain_is_reproducible_from_seeds(tmp_path):
    from ctrl_teach.pretrained import retrain

    for k in range(2):
        retrain("toy-gmm", weights_dir=tmp_path / str(k), device="cpu", iterations=30,
                progress=False)
    blobs = [(tmp_path / str(k) / "toy-gmm.pt").read_bytes() for k in range(2)]
    assert blobs[0] == blobs[1]


def test_with_sampler_returns_a_new_model_and_leaves_the_original():
    pre = load_pretrained("toy-gmm")
    short = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    pre20 = pre.with_sampler(short)
    assert pre20.sampler is short and pre20.network is pre.network
    assert pre.sampler is not short                      # the original keeps its own chain
    with pytest.raises(ValueError, match="sampler"):
        pre.with_sampler("ddpm")
