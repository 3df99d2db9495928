"""CTRL learning-outcome benchmark on the 2-D toy: a table and a JSON file.

Fine-tunes ``load_pretrained("toy-gmm")`` (20-step eta=1 sampler, x0 clipped to [-3, 3])
towards the probit reward p(y=1 | x) = Phi(x_1) with alpha = 1, for each augmented-model
variant, and reports per (c, y): the certificate gap alpha log Z - J (+- SE), the energy
distance to rejection samples of the exact target (and of doing nothing), and the mean
classifier confidence against the exact target's.

Usage: OMP_NUM_THREADS=1 python benchmarks/ctrl_benchmark.py [--iterations N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ctrl_teach.ctrl import HeadAugmentedModel, LoRAAugmentedModel, ProbitClassifier, finetune
from ctrl_teach.ctrl.references import evaluate_against_target
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import load_pretrained


def evaluate(net, sampler, reward, aug, seed=10):
    return [evaluate_against_target(net, sampler, reward, aug, c, y,
                                    torch.Generator().manual_seed(seed + 2 * c + y))
            for c in (0, 1) for y in (0, 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="ctrl_benchmark.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pre = load_pretrained("toy-gmm")
    sampler = DiffusionSampler(pre.schedule, num_steps=args.steps, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0)
    results = {}
    for name, cls in (("head", HeadAugmentedModel), ("lora", LoRAAugmentedModel)):
        torch.manual_seed(0)
        aug = cls(pre.network, sampler, num_labels=2)
        start = time.perf_counter()
        hist = finetune(aug, reward, iterations=args.iterations, batch_size=128, lr=3e-3,
                        seed=0, progress=True)
        results[name] = dict(train_seconds=time.perf_counter() - start,
                             final_J=sum(hist.J[-20:]) / 20,
                             rows=evaluate(pre.network, sampler, reward, aug))
    print(f"{'model':6} {'c':>2} {'y':>2} {'gap':>16} {'ED':>8} {'ED none':>8} "
          f"{'conf':>6} {'exact':>6}")
    for name, res in results.items():
        for r in res["rows"]:
            print(f"{name:6} {r['c']:>2} {r['y']:>2} {r['gap']:8.4f} +- {r['gap_se']:.4f} "
                  f"{r['ed']:8.4f} {r['ed_nothing']:8.4f} {r['confidence']:6.3f} "
                  f"{r['confidence_exact']:6.3f}")
        print(f"{name}: {res['train_seconds']:.1f} s training, final J {res['final_J']:.4f}")
    with open(args.out, "w") as fh:
        json.dump(dict(args=vars(args), results=results), fh, indent=2)


if __name__ == "__main__":
    main()
