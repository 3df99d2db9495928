"""Pathwise against score-function gradients (issue 11): which estimator reaches the optimum?

The same objective, the same variance-aware head and the same budget, fine-tuned with
``finetune(..., gradient=...)``:

* ``full``: CTRL's pathwise gradient through the whole chain;
* ``hybrid-half``: ``gradient="hybrid"``, score function on the first ``K // 2`` noisy steps;
* ``hybrid-all``: ``gradient="hybrid"``, score function on every noisy step (the reward is
  never differentiated: DPOK's estimator, with CTRL's exact per-step KL).

Problems: ``tight6`` (six tight modes whose weights the label changes, the stress family's
hard case: ``stress_family("quick")[0]``), ``line`` (smooth, conditional:
``stress_family("quick")[1]``), ``toy`` (the shipped ``toy-gmm`` with the probit reward, 20
steps: ring for c = 0, grid for c = 1) and ``digits`` (ink buckets, 10 steps, mean-only head
with the pre-trained x0_hat input, as Chapter 7). Per problem and mode it prints the largest
certificate gap (+- SE) over the ``(c, y)`` pairs, the largest ``|confidence - exact|`` (for
digits: y-accuracy against rejection sampling and the digit accuracy) and the fine-tuning
seconds per iteration; the JSON holds every pair.

Usage: python benchmarks/gradient_benchmark.py [--only tight6 line toy digits]
       [--modes full hybrid-half hybrid-all] [--iterations 1000] [--digits-buckets 3]
       [--out _build/benchmarks/gradient.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ctrl_teach.ctrl import (
    HeadAugmentedModel,
    ProbitClassifier,
    digit_sampler,
    evaluate_against_target,
    evaluate_digits,
    finetune,
    fit_digit_reward,
)
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.experiments.stress import make_stress_problem, stress_family
from ctrl_teach.pretrained import atomic_write_bytes, load_digit_oracle, load_pretrained
from ctrl_teach.profiles import make_generator, seeded_init

MODES = {"full": lambda K: dict(gradient="full"),
         "hybrid-half": lambda K: dict(gradient="hybrid", score_steps=K // 2),
         "hybrid-all": lambda K: dict(gradient="hybrid", score_steps=K)}


def _points_problem(name):
    """(network, sampler, reward, alpha, pairs, lr) of a 2-D problem."""
    if name in ("tight6", "line"):
        p = make_stress_problem(**stress_family("quick")[0 if name == "tight6" else 1])
        return p.network, p.sampler, p.reward, p.alpha, p.pairs, 3e-3
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=20, eta=1.0, clip_x0=3.0)
    pairs = [(c, y) for c in (0, 1) for y in (0, 1)]
    return pre.network, sampler, ProbitClassifier([1.0, 0.0], 0.0, 1.0), 1.0, pairs, 3e-3


def run_points(name, mode, iterations, seed=0):
    network, sampler, reward, alpha, pairs, lr = _points_problem(name)
    with seeded_init(seed):
        aug = HeadAugmentedModel(network, sampler, num_labels=reward.num_labels, variance=True)
    hist = finetune(aug, reward, iterations=iterations, batch_size=128, lr=lr, alpha=alpha,
                    seed=seed, **MODES[mode](sampler.num_steps))
    g = make_generator(seed=seed + 1)
    rows = []
    for c, y in pairs:
        r = evaluate_against_target(aug, reward, c=c, y=y, alpha=alpha, generator=g,
                                    num_candidates=10000, num_samples=2000)
        rows.append(dict(c=c, y=y, **{k: r[k] for k in ("gap", "gap_se", "ed", "confidence",
                                                         "confidence_exact")}))
    worst = max(rows, key=lambda r: r["gap"])
    summary = (f"gap {worst['gap']:6.3f} +- {worst['gap_se']:.3f}   |dconf| "
               f"{max(abs(r['confidence'] - r['confidence_exact']) for r in rows):.3f}")
    return dict(pairs=rows, seconds_per_iteration=hist.wall_time / iterations), summary


def run_digits(mode, iterations, buckets, seed=0):
    pre = load_pretrained("digits")
    reward = fit_digit_reward("ink", num_buckets=buckets)
    sampler = digit_sampler(pre)
    with seeded_init(seed):
        aug = HeadAugmentedModel(pre.network, sampler, buckets, x0_input=True, width=64)
    hist = finetune(aug, reward.reward, iterations=iterations, batch_size=64, lr=1e-2,
                    seed=seed, **MODES[mode](sampler.num_steps))
    res = evaluate_digits(aug, reward, load_digit_oracle(),
                          generator=torch.Generator().manual_seed(seed + 1))
    res = {k: v for k, v in res.items() if k != "pairs"}
    summary = (f"y-acc {res['y_accuracy']:.3f} (rejection {res['y_accuracy_rejection']:.3f})"
               f"   digit acc {res['digit_accuracy']:.3f}   gap {res['gap']:.2f}")
    return dict(res, seconds_per_iteration=hist.wall_time / iterations), summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["tight6", "line", "toy", "digits"],
                        choices=("tight6", "line", "toy", "digits"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=tuple(MODES))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--digits-buckets", type=int, default=3)
    parser.add_argument("--out", default="_build/benchmarks/gradient.json")
    args = parser.parse_args(argv)
    out = dict(threads=torch.get_num_threads(), iterations=args.iterations, results={})
    print(f"{'problem':8s} {'mode':12s} {'s/it':>6s}  result ({args.iterations} iterations)")
    for name in args.only:
        for mode in args.modes:
            start = time.perf_counter()
            if name == "digits":
                row, summary = run_digits(mode, args.iterations, args.digits_buckets)
            else:
                row, summary = run_points(name, mode, args.iterations)
            row["seconds"] = time.perf_counter() - start
            out["results"][f"{name}/{mode}"] = row
            print(f"{name:8s} {mode:12s} {row['seconds_per_iteration']:6.3f}  {summary}",
                  flush=True)
            atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
