"""A small diffusers-format model that ships inside the package (``make weights`` retrains it).

``ctrl_teach/pretrained/diffusers/tiny-digits/`` holds a class-conditional ``UNet2DModel``
(8x8 digits, ``c`` = the digit, two levels of 16 and 32 channels, self-attention at 4x4) and
its ``DDPMScheduler`` (linear betas, ``T = 1000``, ``clip_sample``), trained in-library on the
scikit-learn digits with the simplified DDPM loss (Ho et al. 2020, Alg. 1). It is loaded with
the same calls as a public checkpoint::

    unet = UNet2DModel.from_pretrained(TINY_MODEL_DIR)
    scheduler = DDPMScheduler.from_pretrained(TINY_MODEL_DIR)

Run ``python -m ctrl_teach.diffusers_bridge.tiny_model --out DIR`` to retrain it.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .._checks import check_positive_int
from .._optim import cosine_lr_factor
from ..profiles import progress_bar, seeded_init
from ._require import require
from .adapter import DiffusersEpsNetwork, from_diffusers, schedule_from_scheduler

__all__ = ["TINY_MODEL_DIR", "TinyTraining", "build_tiny_unet", "build_tiny_scheduler",
           "train_tiny_unet", "save_tiny_unet", "load_tiny_unet", "main"]

TINY_MODEL_DIR = Path(__file__).resolve().parent.parent / "pretrained" / "diffusers" / "tiny-digits"
INFO_FILE = "ctrl_teach_training.json"


def build_tiny_unet(seed: int = 0):
    """The shipped architecture, freshly initialised under ``seeded_init(seed)``.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    diffusers = require("diffusers")
    with seeded_init(seed):
        return diffusers.UNet2DModel(
            sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
            block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
            attention_head_dim=8, num_class_embeds=10)


def build_tiny_scheduler():
    """The shipped ``DDPMScheduler``: linear betas 1e-4..0.02, ``T = 1000``, ``clip_sample``.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    diffusers = require("diffusers")
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                   clip_sample=True)


@dataclass
class TinyTraining:
    """What :func:`train_tiny_unet` returns.

    Attributes:
        unet: the trained (EMA) ``UNet2DModel``, frozen, eval mode.
        scheduler: its ``DDPMScheduler``.
        losses: the training losses.
        seconds: wall time.
        info: the recipe and metrics written next to the weights.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """

    unet: object
    scheduler: object
    losses: list
    seconds: float
    info: dict


def train_tiny_unet(seed: int = 0, iterations: int = 1500, batch_size: int = 128,
                    lr: float = 2e-3, ema_decay: float = 0.995,
                    progress: bool = False) -> TinyTraining:
    """Train the shipped UNet on the 8x8 digits (``c`` = digit) with the DDPM loss.

    Minimises ``|eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t, c)|^2`` with
    ``t`` uniform in ``1..T`` (Ho et al. 2020, Alg. 1, eq. 14) by Adam with a linear warm-up
    and cosine decay, keeping an exponential moving average of the weights. The forward
    process is the library's :meth:`~ctrl_teach.diffusion.NoiseSchedule.q_sample` on the
    scheduler's betas. The shipped model is the default recipe (1500 iterations; estimated 8 minutes
    on one idle CPU core, 31 minutes measured on a 2-core machine shared with ~8 other jobs).

    Args:
        seed: seeds the initialisation, the minibatches, ``t`` and the noise.
        iterations: Adam iterations.
        batch_size: minibatch size.
        lr: peak learning rate.
        ema_decay: the EMA's decay.
        progress: show a tqdm bar.

    Returns:
        A :class:`TinyTraining`.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    from ..data import load_digit_images

    iterations = check_positive_int("iterations", iterations)
    batch_size = check_positive_int("batch_size", batch_size)
    unet, scheduler = build_tiny_unet(seed), build_tiny_scheduler()
    schedule = schedule_from_scheduler(scheduler)
    net = DiffusersEpsNetwork(unet.train())
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    x, c = load_digit_images(split="all", size=8)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    warmup = max(1, iterations // 50)
    losses, start = [], time.perf_counter()
    for k in progress_bar(range(iterations), desc="training", enabled=progress):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        t = torch.randint(1, schedule.T + 1, (batch_size,), generator=gen)
        x_t, eps = schedule.q_sample(x[idx], t, generator=gen)
        loss = (net(x_t, t, c[idx]) - eps).pow(2).mean()
        for group in opt.param_groups:
            group["lr"] = lr * cosine_lr_factor(k, iterations, warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(pm, 1 - ema_decay)
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    info = dict(recipe=dict(seed=seed, iterations=iterations, batch_size=batch_size, lr=lr,
                            ema_decay=ema_decay, data="sklearn digits 8x8, split=all"),
                final_loss=sum(losses[-100:]) / len(losses[-100:]), seconds=round(seconds, 1))
    return TinyTraining(ema, scheduler, losses, seconds, info)


def evaluate_tiny_unet(unet, scheduler, *, num_steps: int = 10, per_class: int = 100,
                       seed: int = 1234) -> dict:
    """Digit-oracle accuracy of ``per_class`` samples of every digit (DDPM, ``num_steps``).

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    from ..pretrained import load_digit_oracle

    pre = from_diffusers(unet, scheduler, num_steps)
    oracle, gen, acc = load_digit_oracle(), torch.Generator().manual_seed(seed), []
    for c in range(10):
        x = pre.sample(per_class, c=c, generator=gen)
        acc.append(float((oracle.predict(x) == c).float().mean()))
    return dict(num_steps=num_steps, per_class=per_class,
                oracle_accuracy_mean=sum(acc) / len(acc), oracle_accuracy_per_class=acc)


def save_tiny_unet(training: TinyTraining, out_dir=TINY_MODEL_DIR, metrics=None) -> Path:
    """``save_pretrained`` the UNet (safetensors + config.json) and the scheduler into
    ``out_dir``, with the recipe and ``metrics`` in ``ctrl_teach_training.json``.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    training.unet.save_pretrained(out, safe_serialization=True)
    training.scheduler.save_pretrained(out)
    info = {**training.info, "metrics": metrics or {}}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)                     # safetensors writes 0600; package data is 0644
    return out


def load_tiny_unet(path=TINY_MODEL_DIR):
    """``(UNet2DModel.from_pretrained(path), DDPMScheduler.from_pretrained(path))``: the
    shipped model, read from its local directory (nothing is downloaded).

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    diffusers = require("diffusers")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no diffusers model in {path} (run `python -m "
                                f"ctrl_teach.diffusers_bridge.tiny_model --out {path}`)")
    unet = diffusers.UNet2DModel.from_pretrained(path, local_files_only=True)
    scheduler = diffusers.DDPMScheduler.from_pretrained(path, local_files_only=True)
    return unet.eval().requires_grad_(False), scheduler


def main(argv=None) -> None:
    """``python -m ctrl_teach.diffusers_bridge.tiny_model --out DIR [--seed S]``.

    Introduced in: Chapter 10 (CTRL on a real diffusion model).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(TINY_MODEL_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=1500)
    args = parser.parse_args(argv)
    training = train_tiny_unet(seed=args.seed, iterations=args.iterations, progress=True)
    metrics = evaluate_tiny_unet(training.unet, training.scheduler)
    out = save_tiny_unet(training, args.out, metrics)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"saved {out} ({size / 1e6:.2f} MB) in {training.seconds:.0f} s; final loss "
          f"{training.info['final_loss']:.4f}; oracle accuracy "
          f"{metrics['oracle_accuracy_mean']:.3f}")


if __name__ == "__main__":
    main()
