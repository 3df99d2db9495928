"""Chapter 7's head input, measured: a head that reads x0_hat beside x_t against one that does not.

Chapter 7 fine-tunes a control head that reads the pre-trained model's x0_hat(x_t) besides x_t
(``x0_input=True``). This benchmark tests that choice at the chapter's budget: the ink reward of
the chapter (2 buckets, ``fit_digit_reward("ink", num_buckets=2, n=1400, iterations=1500)``),
the 10-step digit sampler, and for each seed both heads fine-tuned with the chapter's settings
(``--iterations`` 400, batch 64, lr 1e-2, width 64, the same seed for the head's initialisation
and for the fine-tuning). Each model is scored by ``evaluate_digits`` (50 samples per (c, y),
generator seed 1, as in the chapter): the certificate gap averaged over the 20 pairs with its
standard error, the y-accuracy under the true scorer against the exact target's, the digit
accuracy, the mean J of the last 20 % of the iterations and the seconds per iteration.

Usage: OMP_NUM_THREADS=1 python benchmarks/digits_head_benchmark.py [--seeds 0 1 2]
       [--iterations 400] [--out ctrl_teach/book_data/digits_head_cpu.json]
JSON: {"threads", "iterations", "command", "rows": [{seed, x0_input, gap, gap_se, y_accuracy,
y_accuracy_target, digit_accuracy, J_tail, seconds_per_iteration}], "summary": {x0_input: means
over seeds}, "difference": {gap, gap_se, seeds_x0_lower}}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from ctrl_teach.ctrl import (
    HeadAugmentedModel,
    digit_sampler,
    evaluate_digits,
    finetune,
    fit_digit_reward,
)
from ctrl_teach.pretrained import atomic_write_bytes, load_digit_oracle, load_pretrained
from ctrl_teach.profiles import seeded_init


def run_head(pre, sampler, reward_fit, oracle, *, x0_input: bool, seed: int,
             iterations: int) -> dict:
    """Fine-tune one head with Chapter 7's settings and score it against the exact target."""
    with seeded_init(seed):
        head = HeadAugmentedModel(pre.network, sampler, num_labels=2, x0_input=x0_input,
                                  width=64)
    start = time.perf_counter()
    hist = finetune(head, reward_fit.reward, iterations=iterations, batch_size=64, lr=1e-2,
                    seed=seed)
    seconds = time.perf_counter() - start
    res = evaluate_digits(head, reward_fit, oracle, per_pair=50,
                          generator=torch.Generator().manual_seed(1))
    pairs = res["pairs"]
    tail = hist.J[-max(1, iterations // 5):]
    return dict(seed=seed, x0_input=x0_input, gap=res["gap"],
                gap_se=math.sqrt(sum(p["gap_se"] ** 2 for p in pairs)) / len(pairs),
                y_accuracy=res["y_accuracy"], y_accuracy_target=res["y_accuracy_rejection"],
                digit_accuracy=res["digit_accuracy"], J_tail=sum(tail) / len(tail),
                seconds_per_iteration=seconds / iterations)


def summarise(rows: list[dict]) -> tuple[dict, dict]:
    """Means over seeds per head, and the paired gap difference (x0_hat head minus x_t only)."""
    keys = ("gap", "y_accuracy", "digit_accuracy", "J_tail", "seconds_per_iteration")
    summary = {}
    for x0 in (True, False):
        mine = [r for r in rows if r["x0_input"] is x0]
        summary[str(x0).lower()] = {k: sum(r[k] for r in mine) / len(mine) for k in keys}
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["x0_input"]] = r
    diffs = [(s[True]["gap"] - s[False]["gap"], s[True]["gap_se"] ** 2 + s[False]["gap_se"] ** 2)
             for s in by_seed.values() if len(s) == 2]
    n = len(diffs)
    difference = dict(gap=sum(d for d, _ in diffs) / n,
                      gap_se=math.sqrt(sum(v for _, v in diffs)) / n,
                      seeds_x0_lower=sum(d < 0 for d, _ in diffs), seeds=n)
    return summary, difference


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", default="_build/benchmarks/digits_head.json")
    args = parser.parse_args(argv)
    if args.iterations < 5:
        parser.error(f"--iterations must be at least 5, got {args.iterations}")
    reward_fit = fit_digit_reward("ink", num_buckets=2, n=1400, iterations=1500)
    pre = load_pretrained("digits")
    sampler = digit_sampler(pre, num_steps=10)
    oracle = load_digit_oracle()
    rows = []
    print("seed  reads x0_hat | gap +- SE       | y-acc (target) | digit acc | J tail | s/it")
    for seed in args.seeds:
        for x0 in (True, False):
            r = run_head(pre, sampler, reward_fit, oracle, x0_input=x0, seed=seed,
                         iterations=args.iterations)
            rows.append(r)
            print(f"{seed:4d}  {'yes' if x0 else 'no ':12s} | {r['gap']:.3f} +- {r['gap_se']:.3f}"
                  f"   | {r['y_accuracy']:.3f} ({r['y_accuracy_target']:.3f}) | "
                  f"{r['digit_accuracy']:.3f}     | {r['J_tail']:.3f} | "
                  f"{r['seconds_per_iteration']:.2f}", flush=True)
    summary, difference = summarise(rows)
    print(f"gap difference (x0_hat head - x_t only), mean over {difference['seeds']} seeds: "
          f"{difference['gap']:+.3f} +- {difference['gap_se']:.3f}; the x0_hat head is lower "
          f"for {difference['seeds_x0_lower']} of {difference['seeds']} seeds")
    out = dict(threads=torch.get_num_threads(), iterations=args.iterations,
               command="python benchmarks/digits_head_benchmark.py "
                       + " ".join(sys.argv[1:] if argv is None else argv),
               rows=rows, summary=summary, difference=difference)
    atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
