"""CTRL learning-outcome benchmark: the four outcomes of issue 3 as a table and a JSON file.

1. ``gaussian``: 1-D Gaussian prior (exact denoiser, 50 DDPM steps) with a Gaussian-likelihood
   reward; fine-tuned mean/variance against the closed-form posterior, certificate gap.
2. ``toy``: ``load_pretrained("toy-gmm")`` (20-step eta=1 sampler, x0 clipped to [-3, 3]) with
   the probit reward Phi(x_1), alpha = 1, head and LoRA variants; per (c, y) the certificate
   gap alpha log Z - J (+- SE), the energy distance to rejection samples of the exact target
   (and of doing nothing), the mean confidence against the exact target's.
3. ``digits``: ``load_pretrained("digits")``, y = ink-mass bucket (median split, and tertiles
   with ``--digits-buckets 2 3``), calibrated CNN reward, head with x0_hat input; y-accuracy
   under the true scorer against rejection sampling, digit accuracy (oracle), FID on the
   oracle's features.
4. ``multitask``: two classifiers from disjoint datasets (y1 = 1[x_1 > 0], y2 = 1[x_2 > 0]) on
   toy-gmm; joint accuracy against rejection sampling with the product reward.

Every row records the fine-tuning wall time. Sizes follow the profile (quick: as in the
tests; full: longer fine-tuning, more evaluation samples).

Usage: python benchmarks/ctrl_benchmark.py [--only toy digits] [--digits-buckets 2 3]
       [--profile quick|full] [--out ctrl_benchmark.json]
JSON: {"profile", "device", "threads", "results": {outcome: {...metrics, "train_seconds"}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from ctrl_teach.ctrl import (
    GaussianLikelihood,
    HeadAugmentedModel,
    LoRAAugmentedModel,
    MultiTaskReward,
    ProbitClassifier,
    certificate_gap,
    digit_sampler,
    evaluate_against_target,
    evaluate_digits,
    finetune,
    fit_classifier,
    fit_digit_reward,
    gaussian_log_evidence,
    gaussian_posterior,
    rejection_sample,
    rollout,
    sample,
)
from ctrl_teach.data import load_toy
from ctrl_teach.data.toys import GaussianMixture
from ctrl_teach.diffusion import (
    DiffusionSampler,
    ExactMixtureDenoiser,
    NoiseSchedule,
    gaussian_sampler_moments,
)
from ctrl_teach.pretrained import load_digit_oracle, load_pretrained
from ctrl_teach.profiles import default_device, pick, seeded_init


def timed_finetune(aug, reward, **kw):
    start = time.perf_counter()
    hist = finetune(aug, reward, progress=True, **kw)
    return hist, time.perf_counter() - start


def gaussian_outcome():
    y_obs, tau = 1.0, 0.5
    schedule = NoiseSchedule.cosine(50)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    sampler = DiffusionSampler.ddpm(schedule)
    reward = GaussianLikelihood([y_obs], tau)
    aug = HeadAugmentedModel(net, sampler, num_labels=1, width=64)
    _, secs = timed_finetune(aug, reward, iterations=pick(200, 400), batch_size=256, lr=5e-3)
    m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
    m_post, v_post = gaussian_posterior(m_s, v_s, y_obs, tau)
    x = sample(aug, 20000, y=0, generator=torch.Generator().manual_seed(1))
    log_z = gaussian_log_evidence(m_s, v_s, y_obs, tau)
    with torch.no_grad():
        out = rollout(aug, reward, y=torch.zeros(8000, dtype=torch.long),
                      generator=torch.Generator().manual_seed(2))
    gap, se = certificate_gap(log_z, 0.0, out.J)
    return dict(mean=float(x.mean()), var=float(x.var()), mean_exact=m_post, var_exact=v_post,
                gap=gap, gap_se=se, train_seconds=secs)


def toy_outcome():
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    res = {}
    for name, cls in (("head", HeadAugmentedModel), ("lora", LoRAAugmentedModel)):
        with seeded_init(0):
            aug = cls(pre.network, sampler, num_labels=2)
        _, secs = timed_finetune(aug, reward, iterations=pick(400, 1000), batch_size=128,
                                 lr=3e-3)
        rows = [evaluate_against_target(aug, reward, c=c, y=y,
                                        generator=torch.Generator().manual_seed(10 + 2 * c + y))
                for c in (0, 1) for y in (0, 1)]
        res[name] = dict(rows=rows, train_seconds=secs)
    return res


def digits_outcome(num_buckets):
    pre = load_pretrained("digits")
    reward = fit_digit_reward("ink", num_buckets=num_buckets)
    with seeded_init(0):
        aug = HeadAugmentedModel(pre.network, digit_sampler(pre), num_buckets, x0_input=True,
                                 width=64)
    _, secs = timed_finetune(aug, reward.reward, iterations=pick(400, 1500), batch_size=64,
                             lr=1e-2)
    res = evaluate_digits(aug, reward, load_digit_oracle(), per_pair=pick(50, 200),
                          generator=torch.Generator().manual_seed(1))
    res.update(train_seconds=secs, temperature=reward.reward.temperature,
               classifier_accuracy=reward.fit.val_accuracy)
    return res


def multitask_outcome():
    x, _ = load_toy("gmm").sample_joint(4000, generator=torch.Generator().manual_seed(0))

    def rules(x):
        return (x[:, 0] > 0).long(), (x[:, 1] > 0).long()

    y1, y2 = rules(x)
    reward = MultiTaskReward([fit_classifier(x[:2000], y1[:2000], num_labels=2, seed=1).reward,
                              fit_classifier(x[2000:], y2[2000:], num_labels=2, seed=2).reward],
                             flat=True)
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    with seeded_init(0):
        aug = HeadAugmentedModel(pre.network, sampler, num_labels=4)
    _, secs = timed_finetune(aug, reward, iterations=pick(400, 1000), batch_size=128, lr=3e-3)
    rows, g = [], torch.Generator().manual_seed(5)
    for c in (0, 1):
        x_pre = sampler.sample(pre.network, 8000, c=c, generator=g)
        for flat in range(4):
            want = reward.decode(torch.tensor([flat]))[0].tolist()
            x = sample(aug, 1000, c=c, y=flat, generator=g)
            target = rejection_sample(x_pre, reward, c=c, y=flat, generator=g)
            acc = [float(((r1 == want[0]) & (r2 == want[1])).float().mean())
                   for r1, r2 in (rules(x), rules(target))]
            rows.append(dict(c=c, y=want, joint_accuracy=acc[0], joint_accuracy_rejection=acc[1]))
    return dict(rows=rows, train_seconds=secs)


def print_tables(results):
    if "gaussian" in results:
        r = results["gaussian"]
        print(f"\n1-D Gaussian: mean {r['mean']:.4f} (exact {r['mean_exact']:.4f}), var "
              f"{r['var']:.4f} (exact {r['var_exact']:.4f}), gap {r['gap']:.4f} +- "
              f"{r['gap_se']:.4f}; {r['train_seconds']:.1f} s")
    if "toy" in results:
        print(f"\n2-D toy   {'c':>2} {'y':>2} {'gap':>16} {'ED':>8} {'ED none':>8} "
              f"{'conf':>6} {'exact':>6}")
        for name, res in results["toy"].items():
            for r in res["rows"]:
                print(f"{name:9} {r['c']:>2} {r['y']:>2} {r['gap']:8.4f} +- {r['gap_se']:.4f} "
                      f"{r['ed']:8.4f} {r['ed_nothing']:8.4f} {r['confidence']:6.3f} "
                      f"{r['confidence_exact']:6.3f}")
            print(f"{name}: {res['train_seconds']:.1f} s fine-tuning")
    for key in sorted(k for k in results if k.startswith("digits")):
        r = results[key]
        print(f"\n{key}: y-accuracy {r['y_accuracy']:.3f} (rejection "
              f"{r['y_accuracy_rejection']:.3f}), digit accuracy {r['digit_accuracy']:.3f}, "
              f"FID {r['fid']:.3f} (pre-trained {r['fid_pretrained']:.3f}), gap "
              f"{r['gap']:.3f}; classifier acc {r['classifier_accuracy']:.3f} T "
              f"{r['temperature']:.2f}; {r['train_seconds']:.1f} s")
    if "multitask" in results:
        print("\nmulti-task  c  (y1,y2)  CTRL   rejection")
        for r in results["multitask"]["rows"]:
            print(f"{r['c']:>12} {str(tuple(r['y'])):>8} {r['joint_accuracy']:.3f}  "
                  f"{r['joint_accuracy_rejection']:.3f}")
        print(f"multi-task: {results['multitask']['train_seconds']:.1f} s fine-tuning")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["gaussian", "toy", "digits", "multitask"],
                        choices=["gaussian", "toy", "digits", "multitask"])
    parser.add_argument("--digits-buckets", nargs="*", type=int, default=[2])
    parser.add_argument("--profile", choices=["quick", "full"], default=None)
    parser.add_argument("--out", default="ctrl_benchmark.json")
    args = parser.parse_args()
    if args.profile:
        os.environ["CTRL_TEACH_PROFILE"] = args.profile
    results = {}
    for name in args.only:
        if name == "digits":
            for b in args.digits_buckets:
                results[f"digits_{b}_buckets"] = digits_outcome(b)
        else:
            results[name] = dict(gaussian=gaussian_outcome, toy=toy_outcome,
                                 multitask=multitask_outcome)[name]()
    print_tables(results)
    with open(args.out, "w") as fh:
        json.dump(dict(profile=os.environ.get("CTRL_TEACH_PROFILE", "auto"),
                       device=str(default_device()), threads=torch.get_num_threads(),
                       results=results), fh, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
