"""CTRL learning-outcome benchmark: both policy classes at several sampler lengths K.

Every outcome is measured for the mean-only and the variance-aware step (``--classes``) and for
each number of sampler steps in ``--steps`` (default 10 20 50), with seconds per iteration:

1. ``gaussian``: 1-D Gaussian prior (exact denoiser, a 50-step cosine schedule sampled with K
   DDPM-type steps) with a Gaussian-likelihood reward; fine-tuned mean/variance against the
   exact law of the class's best sampler, and the certificate gap against the closed-form
   floor of the mean-only class (:func:`~ctrl_teach.ctrl.gaussian_step_floor`).
2. ``toy``: ``load_pretrained("toy-gmm")`` (K steps, eta = 1, x0 clipped to [-3, 3]) with the
   probit reward Phi(x_1), alpha = 1, the head (``--variants head lora`` adds the paper's
   LoRA variant); per (c, y) (c = 0 ring, c = 1 grid) the certificate gap alpha log Z - J
   (+- SE), the energy distance to rejection samples of the exact target (and of doing
   nothing), the mean confidence against the exact target's.
3. ``digits``: ``load_pretrained("digits")`` (K-step ``digit_sampler``), y = ink-mass bucket
   (median split, and tertiles with ``--digits-buckets 2 3``), calibrated CNN reward, head
   with x0_hat input; y-accuracy under the true scorer against rejection sampling, digit
   accuracy (oracle), FID on the oracle's features, certificate gap.
4. ``multitask``: two classifiers from disjoint datasets (y1 = 1[x_1 > 0], y2 = 1[x_2 > 0])
   on toy-gmm; joint accuracy against rejection sampling with the product reward (K = 20,
   mean-only head only).

Sizes follow the profile (quick: as in the tests; full: longer fine-tuning, more evaluation
samples). On a 2-core CPU the quick digits sweep at K = 50 takes tens of minutes: pick
``--steps`` to fit.

Usage: python benchmarks/ctrl_benchmark.py [--only toy digits] [--digits-buckets 2 3]
       [--steps 10 20 50] [--classes mean-only variance-aware] [--variants head lora]
       [--profile quick|full] [--out ctrl_benchmark.json]
JSON: {"profile", "device", "threads", "steps", "classes", "results": {outcome: rows}}, one row
per (variant, class, K) with its metrics, ``train_seconds`` and ``seconds_per_iteration``.
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
    gaussian_step_floor,
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

#: the two policy classes: the name printed and the ``variance`` flag of the augmented model
CLASSES = {"mean-only": False, "variance-aware": True}


def timed_finetune(aug, reward, iterations, **kw):
    start = time.perf_counter()
    hist = finetune(aug, reward, iterations=iterations, progress=True, **kw)
    secs = time.perf_counter() - start
    return hist, dict(train_seconds=secs, seconds_per_iteration=secs / iterations)


def gaussian_outcome(steps, classes):
    y_obs, tau = 1.0, 0.5
    schedule = NoiseSchedule.cosine(50)
    net = ExactMixtureDenoiser(GaussianMixture([1.0], [[0.0]], [1.0]), schedule)
    reward = GaussianLikelihood([y_obs], tau)
    rows = []
    for num_steps in steps:
        sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=1.0)
        floor = gaussian_step_floor(sampler, 0.0, 1.0, reward, y=0)
        m_s, v_s = gaussian_sampler_moments(sampler, 0.0, 1.0)
        log_z = gaussian_log_evidence(m_s, v_s, y_obs, tau)
        for name in classes:
            with seeded_init(0):
                aug = HeadAugmentedModel(net, sampler, num_labels=1, width=64,
                                         variance=CLASSES[name])
            _, cost = timed_finetune(aug, reward, pick(300, 800), batch_size=256, lr=5e-3)
            x = sample(aug, 20000, y=0, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                out = rollout(aug, reward, y=torch.zeros(20000, dtype=torch.long),
                              generator=torch.Generator().manual_seed(2))
            gap, se = certificate_gap(log_z, 0.0, out.J)
            best = floor.optimal_moments if CLASSES[name] else floor.mean_only_moments
            rows.append(dict(policy_class=name, num_steps=num_steps, mean=float(x.mean()),
                             var=float(x.var()), mean_best=best[0], var_best=best[1],
                             gap=gap, gap_se=se, floor=floor.mean_only if not CLASSES[name]
                             else floor.initial, **cost))
    return rows


def toy_outcome(steps, classes, variants):
    pre = load_pretrained("toy-gmm")
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    rows = []
    for num_steps in steps:
        sampler = DiffusionSampler(pre.schedule, num_steps=num_steps, eta=1.0, clip_x0=3.0)
        for variant in variants:
            cls = HeadAugmentedModel if variant == "head" else LoRAAugmentedModel
            for name in classes:
                with seeded_init(0):
                    aug = cls(pre.network, sampler, num_labels=2, variance=CLASSES[name])
                iterations = pick(400, 1000)
                _, cost = timed_finetune(aug, reward, iterations, batch_size=128, lr=3e-3)
                for c in (0, 1):
                    for y in (0, 1):
                        res = evaluate_against_target(
                            aug, reward, c=c, y=y,
                            generator=torch.Generator().manual_seed(10 + 2 * c + y))
                        res.update(c=c, y=y)
                        rows.append(dict(variant=variant, policy_class=name,
                                         num_steps=num_steps, **res, **cost))
    return rows


def digits_outcome(num_buckets, steps, classes):
    pre = load_pretrained("digits")
    reward = fit_digit_reward("ink", num_buckets=num_buckets)
    oracle = load_digit_oracle()
    rows = []
    for num_steps in steps:
        for name in classes:
            with seeded_init(0):
                aug = HeadAugmentedModel(pre.network, digit_sampler(pre, num_steps=num_steps),
                                         num_buckets, x0_input=True, width=64,
                                         variance=CLASSES[name])
            _, cost = timed_finetune(aug, reward.reward, pick(1200, 3000), batch_size=64,
                                     lr=1e-2)
            res = evaluate_digits(aug, reward, oracle, per_pair=pick(50, 200),
                                  generator=torch.Generator().manual_seed(1))
            rows.append(dict(policy_class=name, num_steps=num_steps, **res, **cost,
                             temperature=reward.reward.temperature,
                             classifier_accuracy=reward.fit.val_accuracy))
    return rows


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
    _, cost = timed_finetune(aug, reward, pick(400, 1000), batch_size=128, lr=3e-3)
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
    return dict(rows=rows, **cost)


def print_tables(results):
    if "gaussian" in results:
        print(f"\n1-D Gaussian {'class':>15} {'K':>3} {'mean':>7} {'best':>7} {'var':>7} "
              f"{'best':>7} {'gap':>16} {'floor':>7} {'s/it':>7}")
        for r in results["gaussian"]:
            print(f"{'':12} {r['policy_class']:>15} {r['num_steps']:>3} {r['mean']:7.4f} "
                  f"{r['mean_best']:7.4f} {r['var']:7.4f} {r['var_best']:7.4f} "
                  f"{r['gap']:7.4f} +- {r['gap_se']:.4f} {r['floor']:7.4f} "
                  f"{r['seconds_per_iteration']:7.3f}")
    if "toy" in results:
        print(f"\n2-D toy {'class':>15} {'K':>3} {'c':>2} {'y':>2} {'gap':>16} {'ED':>8} "
              f"{'ED none':>8} {'conf':>6} {'exact':>6} {'s/it':>7}")
        for r in results["toy"]:
            print(f"{r['variant']:7} {r['policy_class']:>15} {r['num_steps']:>3} {r['c']:>2} "
                  f"{r['y']:>2} {r['gap']:7.4f} +- {r['gap_se']:.4f} {r['ed']:8.4f} "
                  f"{r['ed_nothing']:8.4f} {r['confidence']:6.3f} "
                  f"{r['confidence_exact']:6.3f} {r['seconds_per_iteration']:7.3f}")
    for key in sorted(k for k in results if k.startswith("digits")):
        print(f"\n{key}: {'class':>15} {'K':>3} {'y-acc':>6} {'rej.':>6} {'digit':>6} "
              f"{'rej.':>6} {'FID':>7} {'pre':>7} {'gap':>7} {'s/it':>7}")
        for r in results[key]:
            print(f"{'':{len(key) + 1}} {r['policy_class']:>15} {r['num_steps']:>3} "
                  f"{r['y_accuracy']:6.3f} {r['y_accuracy_rejection']:6.3f} "
                  f"{r['digit_accuracy']:6.3f} {r['digit_accuracy_rejection']:6.3f} "
                  f"{r['fid']:7.3f} {r['fid_pretrained']:7.3f} {r['gap']:7.3f} "
                  f"{r['seconds_per_iteration']:7.3f}")
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
    parser.add_argument("--steps", nargs="*", type=int, default=[10, 20, 50],
                        help="sampler steps K (default 10 20 50)")
    parser.add_argument("--classes", nargs="*", default=list(CLASSES), choices=list(CLASSES),
                        help="policy classes (default: both)")
    parser.add_argument("--variants", nargs="*", default=["head"], choices=["head", "lora"],
                        help="augmented models on the toy (default: head)")
    parser.add_argument("--profile", choices=["quick", "full"], default=None)
    parser.add_argument("--out", default="ctrl_benchmark.json")
    args = parser.parse_args()
    if args.profile:
        os.environ["CTRL_TEACH_PROFILE"] = args.profile
    if any(k < 2 for k in args.steps):
        parser.error(f"--steps must be at least 2, got {args.steps}")
    results = {}
    for name in args.only:
        if name == "digits":
            for b in args.digits_buckets:
                results[f"digits_{b}_buckets"] = digits_outcome(b, args.steps, args.classes)
        elif name == "gaussian":
            results[name] = gaussian_outcome(args.steps, args.classes)
        elif name == "toy":
            results[name] = toy_outcome(args.steps, args.classes, args.variants)
        else:
            results[name] = multitask_outcome()
    print_tables(results)
    with open(args.out, "w") as fh:
        json.dump(dict(profile=os.environ.get("CTRL_TEACH_PROFILE", "auto"),
                       device=str(default_device()), threads=torch.get_num_threads(),
                       steps=args.steps, classes=args.classes, results=results), fh, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
