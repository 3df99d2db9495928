"""The measured floor of Gaussian step classes (``gaussian_class_floor``) against the closed form.

1-D Gaussian data N(0, 1), the exact denoiser, a 10-step sampler and the reward
log N(1; x, 0.5^2): the soft-optimal step is Gaussian, so the measured mean-only floor must equal
``gaussian_step_floor``'s closed form step by step, and a step that learns its variance has no
floor (only the initial-law term, ~0 here). In 2-D with the same reward on the first coordinate
the second coordinate is untouched: the same closed form, and no floor for the diagonal or full
class. The ring's floors (no closed form) are measured by benchmarks/class_floor_benchmark.py.
A fine-tuned mean-only policy on the same problem sits on that floor, and ``policy_step_gaps``
splits its certificate gap into the same per-step terms. The greedy policy of each class
(``greedy_policy_gap``: the fitted step at every state, scored by its certificate) attains
its floor.
"""

import pytest
import torch

from ctrl_teach.ctrl import (
    GaussianLikelihood,
    HeadAugmentedModel,
    certificate_gap,
    finetune,
    gaussian_class_floor,
    gaussian_log_evidence,
    gaussian_step_floor,
    greedy_policy_gap,
    policy_step_gaps,
    rollout,
)
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)

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
    with pytest.raises(ValueError, match="kind must be 'mean_only' or 'diagonal'"):
        greedy_policy_gap(net, sampler, reward, y=0, kind="full")
    with pytest.raises(ValueError, match="num_chains"):
        greedy_policy_gap(net, sampler, reward, y=0, num_chains=0)


def test_policy_step_gaps_split_the_certificate_of_a_fine_tuned_policy():
    """Mean-only head on the 1-D problem: each step's KL to the soft-optimal step is the
    closed-form floor of that step, and the steps add up to the certificate gap."""
    net, sampler, reward, exact = _problem(1)
    torch.manual_seed(0)
    aug = HeadAugmentedModel(net, sampler, 1, width=64)
    finetune(aug, reward, iterations=300, batch_size=256, lr=5e-3, seed=0)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    with torch.no_grad():
        out = rollout(aug, reward, y=torch.zeros(50_000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(gaussian_log_evidence(m_s, v_s, 1.0, 0.5), 0.0, out.J)
    split = policy_step_gaps(aug, reward, y=0, num_states=32, num_rollouts=512,
                             generator=torch.Generator().manual_seed(3))
    per_step = [r["gap"] for r in split.per_step]
    print(f"certificate {gap:.4f} +- {se:.4f}; split {split.total:.4f} +- {split.se:.4f}; "
          f"closed-form floor {exact.mean_only:.4f}")
    assert len(per_step) == K - 1
    assert per_step == pytest.approx(exact.per_step[:K - 1], abs=3e-3)
    assert abs(split.total - gap) < 0.01 + 2 * (se + split.se)
    assert all(r["kl"] >= 0 for r in split.per_step)


def test_policy_step_gaps_refuse_a_learned_start():
    net, sampler, reward, _ = _problem(1)
    aug = HeadAugmentedModel(net, sampler, 1, learn_initial=True)
    with pytest.raises(ValueError, match="fixed start"):
        policy_step_gaps(aug, reward, y=0)
    with pytest.raises(ValueError, match="augmented must be an AugmentedModel"):
        policy_step_gaps(net, reward, y=0)


@pytest.mark.parametrize("kind", ["mean_only", "diagonal"])
def test_the_greedy_policy_attains_its_class_floor(kind):
    net, sampler, reward, exact = _problem(1)
    r = greedy_policy_gap(net, sampler, reward, y=0, kind=kind, num_chains=512, num_rollouts=64,
                          num_paths=50000, fit_iterations=150,
                          generator=torch.Generator().manual_seed(0))
    floor = exact.mean_only if kind == "mean_only" else 0.0
    print(f"{kind}: greedy gap {r['gap']:.4f} +- {r['gap_se']:.4f} (closed-form floor "
          f"{floor:.4f}); fitted steps' floor along the chains {r['floor']:.4f}")
    assert abs(r["gap"] - floor) < 0.01 + 2 * r["gap_se"]
