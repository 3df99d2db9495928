"""CTRL fine-tuning on several processes with torch.distributed (README, "Several GPUs").

The same ``finetune`` call as on one process: under ``torchrun`` each rank draws
``batch_size // N`` trajectories from its own generator, the gradients are averaged over the
ranks before clipping, and rank 0 reports the global history (``ctrl_teach.ctrl.distributed``).
The problem is the shipped 2-D toy (``load_pretrained("toy-gmm")``, conditions c in {0, 1})
with the known probit reward p(y=1 | x) = Phi(x_1); rank 0 then scores every (c, y) against
the exact target: the certificate alpha log Z - J >= 0 (eq. ``eq-certificate``) is close to 0
when fine-tuning has reached the soft-optimal policy.

    torchrun --nproc_per_node=2 examples/finetune_distributed.py                  # CPU, gloo
    torchrun --nproc_per_node=4 examples/finetune_distributed.py --backend nccl   # 4 GPUs
    python examples/finetune_distributed.py                                       # 1 process
"""

from __future__ import annotations

import argparse
import time

import torch

from ctrl_teach.ctrl import HeadAugmentedModel, ProbitClassifier, evaluate_against_target, finetune
from ctrl_teach.ctrl.distributed import init_distributed
from ctrl_teach.diffusion import DiffusionSampler
from ctrl_teach.pretrained import load_pretrained
from ctrl_teach.profiles import seeded_init


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                   help="gloo (CPU) or nccl (one GPU per process); default: nccl with CUDA")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128, help="global batch (all ranks)")
    p.add_argument("--num-steps", type=int, default=20, help="sampler steps K")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-candidates", type=int, default=20000,
                   help="pre-trained samples for alpha log Z and the rejection target")
    return p.parse_args(argv)


def main(argv=None) -> dict | None:
    """Fine-tune on every rank, then (rank 0) print J and the certificate per (c, y).

    Returns:
        On rank 0, ``{"J": final J, "gaps": {"c=.., y=..": (gap, se)}, "seconds": ...}``;
        ``None`` on the other ranks.
    """
    args = parse_args(argv)
    rank, world_size, device = init_distributed(args.backend)
    pre = load_pretrained("toy-gmm", device=device)
    # clip_x0 as in tests/test_ctrl_toy.py: the unclipped sampler has rare huge outliers
    sampler = DiffusionSampler(pre.schedule, num_steps=args.num_steps, eta=1.0, clip_x0=3.0)
    reward = ProbitClassifier([1.0, 0.0], 0.0, 1.0).to(device)
    with seeded_init(args.seed):   # the same head on every rank (finetune broadcasts rank 0's)
        aug = HeadAugmentedModel(pre.network, sampler, num_labels=2).to(device)
    start = time.perf_counter()
    hist = finetune(aug, reward, iterations=args.iterations, batch_size=args.batch_size,
                    lr=args.lr, seed=args.seed, progress=True)
    seconds = time.perf_counter() - start
    if world_size > 1:   # every rank took the same steps: check that the parameters agree
        import torch.distributed as dist

        flat = torch.cat([p.detach().reshape(-1) for p in aug.trainable_parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        same = torch.tensor([float(torch.equal(flat, ref))], device=device)
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
    if rank != 0:
        if world_size > 1:
            dist.destroy_process_group()
        return None
    tail = hist.J[-20:]
    J = sum(tail) / len(tail)
    print(f"{world_size} process(es) on {device}, global batch {args.batch_size} "
          f"({args.batch_size // world_size} per rank), {len(hist.J)} iterations, K = "
          f"{args.num_steps}: {seconds:.1f} s")
    if world_size > 1:
        print(f"parameters identical on every rank: {bool(same.item())}")
    print(f"J (rank-averaged, mean of the last {len(tail)} iterations): {J:.3f} "
          f"(first iteration {hist.J[0]:.3f})")
    gaps = {}
    for c in (0, 1):
        for y in (0, 1):
            g = torch.Generator().manual_seed(10 + 2 * c + y)
            r = evaluate_against_target(aug, reward, c=c, y=y, generator=g,
                                        num_candidates=args.num_candidates)
            gaps[f"c={c}, y={y}"] = (r["gap"], r["gap_se"])
            print(f"c={c}, y={y}: alpha log Z = {r['alpha_log_z']:.3f}, certificate "
                  f"alpha log Z - J = {r['gap']:.3f} +- {r['gap_se']:.3f}; confidence "
                  f"{r['confidence']:.2f} (exact target {r['confidence_exact']:.2f})")
    if world_size > 1:
        dist.destroy_process_group()
    return {"J": J, "gaps": gaps, "seconds": seconds}


if __name__ == "__main__":
    main()
