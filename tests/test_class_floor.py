"""The measured floor of Gaussian step classes (``gaussian_class_floor``) against the closed form.

1-D Gaussian data N(0, 1), the exact denoiser, a 10-step sampler and the reward
log N(1; x, 0.5^2): the soft-optimal step is Gaussian, so the measured mean-only floor must equal
``gaussian_step_floor``'s closed form step by step, and a step that learns its variance has no
floor (only the initial-law term, ~0 here). In 2-D with the same reward on the first coordinate
the second coordinate is untouched: the same closed form, and no floor for the diagonal or full
class. The ring's floors (no closed form) are measured by benchmarks/class_floor_benchmark.py.
"""

import pytest
import torch

from ctrl_teach.ctrl import GaussianLikelihood, gaussian_class_floor, gaussian_step_floor
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule

K = 10


def _problem(d):
    schedule = NoiseSchedule.cosine(50)
    data = GaussianMixture([1.0], [[0.0] * d], [1.0])
    sampler = DiffusionSampler(schedule, num_steps=K, eta=1.0)
    w = [1.0] + [0.0] * (d - 1)
    return (ExactMixtureDenoiser(data, schedule), sampler, GaussianLikelihood([1.0], 0.5, w=w),
            gaussian_step_floor(sampler, 0.0, 1.0, GaussianLikelihood([1.0], 0.5), y=0))


@pytest.mark.parametrize("d", [1, 2])
def test_the_measured_floor_is_the_closed_form_on_gaussian_data(d):
    net, sampler, reward, exact = _problem(d)
    f = gaussian_class_floor(net, sampler, reward, y=0, num_states=16, num_rollouts=128,
                             num_paths=4000, generator=torch.Generator().manual_seed(0))
    per_step = [r["mean_only"] for r in f.per_step]
    print(f"d={d}: mean-only {f.mean_only:.4f} +- {f.se['mean_only']:.4f} (closed form "
          f"{exact.mean_only:.4f}); diagonal {f.diagonal:.4f}, full {f.full:.4f}; "
          f"initial {f.initial:.1e}")
    assert len(per_step) == K - 1                    # the noise-free last step has no floor
    assert per_step == pytest.approx(exact.per_step[:K - 1], abs=2e-3)
    assert f.mean_only == pytest.approx(exact.mean_only, abs=0.005)
    assert 0 <= f.diagonal < 0.002 and 0 <= f.full <= f.diagonal + 1e-4
    assert abs(f.initial) < 1e-3


def test_bad_inputs_name_the_argument():
    net, sampler, reward, _ = _problem(1)
    with pytest.raises(ValueError, match="sampler must be a DiffusionSampler"):
        gaussian_class_floor(net, None, reward, y=0)
    with pytest.raises(ValueError, match="num_states"):
        gaussian_class_floor(net, sampler, reward, y=0, num_states=0)
    image_like = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0] * 3], [1.0]),
                                      NoiseSchedule.cosine(50))
    with pytest.raises(ValueError, match="1-D or 2-D points"):
        gaussian_class_floor(image_like, sampler, reward, y=0)
