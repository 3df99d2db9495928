"""The shipped pre-trained models and the recipes that reproduce them (Chapter 1).

Every model lives in ``ctrl_teach/pretrained/weights/NAME.pt`` + ``NAME.json``; nothing is
downloaded. ``load_pretrained(name)`` rebuilds the network and its schedule from the JSON and
loads the verified weights. ``retrain(name)`` reruns the seeded recipe and overwrites the
files atomically (``make weights`` or ``python -m ctrl_teach.pretrained retrain all``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .._checks import check_choice
from ..diffusion import (
    DiffusionSampler,
    EpsilonNetwork,
    MLPDenoiser,
    NoiseSchedule,
    UNetDenoiser,
    build_network,
    train_denoiser,
)
from ..profiles import seeded_init
from .checkpoints import CheckpointError, load_checkpoint, read_meta, save_checkpoint

__all__ = ["WEIGHTS_DIR", "PRETRAINED_NAMES", "PretrainedDiffusion", "load_pretrained",
           "load_digit_oracle", "retrain", "describe"]

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class _Recipe:
    """How one shipped model is built, trained and evaluated."""

    description: str
    make_network: callable
    make_schedule: callable
    sampler: dict                      # DiffusionSampler keyword arguments
    train: dict = field(default_factory=dict)
    seed: int = 0


def _toy_data(name: str, n: int, seed: int):
    from ..data import load_toy

    return load_toy(name).sample_joint(n, generator=torch.Generator().manual_seed(seed))


def _digit_data():
    from ..data import load_digit_images

    return load_digit_images(split="all")


def _toy_recipe(description: str) -> _Recipe:
    """The recipe shared by the 2-D toys: MLP denoiser, cosine schedule T=100, DDPM."""
    return _Recipe(
        description=description,
        make_network=lambda: MLPDenoiser(data_dim=2, num_timesteps=100, num_conditions=2),
        make_schedule=lambda: NoiseSchedule.cosine(100, max_beta=0.8),
        sampler=dict(num_steps=None, eta=1.0),
        train=dict(iterations=4000, batch_size=512, lr=2e-3, ema_decay=0.995),
    )


_RECIPES = {
    "toy-gmm": _toy_recipe(
        "2-D toy 'gmm' (c=0 ring of 8 Gaussians, c=1 3x3 grid); MLP, cosine T=100"),
    "toy-shapes": _toy_recipe(
        "2-D toy 'shapes' (c=0 two moons, c=1 two circles); MLP, cosine T=100"),
    "digits": _Recipe(
        description="sklearn 8x8 digits, c = digit class; U-Net, cosine T=100",
        make_network=lambda: UNetDenoiser(image_size=8, channels=1, num_timesteps=100,
                                          num_conditions=10, base_channels=32,
                                          channel_mults=(1, 2)),
        make_schedule=lambda: NoiseSchedule.cosine(100, max_beta=0.8),
        sampler=dict(num_steps=None, eta=1.0, clip_x0=1.0),
        train=dict(iterations=6000, batch_size=128, lr=1e-3, ema_decay=0.999),
    ),
}

PRETRAINED_NAMES = (*_RECIPES, "digit-oracle")


@dataclass
class PretrainedDiffusion:
    """A loaded pre-trained diffusion model: network + schedule + its default sampler.

    Attributes:
        name: the registry name (``"custom"`` for :func:`~ctrl_teach.ctrl.pretrain_on_points`).
        network: the frozen eps-network.
        schedule: its :class:`~ctrl_teach.diffusion.NoiseSchedule`.
        sampler: its default :class:`~ctrl_teach.diffusion.DiffusionSampler`.
        meta: the checkpoint's JSON.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    name: str
    network: EpsilonNetwork
    schedule: NoiseSchedule
    sampler: DiffusionSampler
    meta: dict

    def sample(self, n: int, *, c=None, generator=None, **kwargs) -> torch.Tensor:
        """``self.sampler.sample(self.network, n, c=c, ...)``: draws from ``p_pre(x | c)``."""
        return self.sampler.sample(self.network, n, c=c, generator=generator, **kwargs)

    def with_sampler(self, sampler: DiffusionSampler) -> PretrainedDiffusion:
        """The same frozen network and schedule with another default sampler (a new object).

        ``p_pre`` is the law of the sampler's chain, so choosing a shorter chain (for
        example 20 DDPM steps for fine-tuning) changes the pre-trained model that CTRL
        conditions; the original object keeps its own sampler.

        Args:
            sampler: a :class:`~ctrl_teach.diffusion.DiffusionSampler` on ``self.schedule``.

        Returns:
            A new :class:`PretrainedDiffusion` sharing ``network``, ``schedule`` and ``meta``.

        Introduced in: Chapter 5 (CTRL on 2-D data).
        """
        if not isinstance(sampler, DiffusionSampler):
            raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
        return replace(self, sampler=sampler)


def _stem(name: str, weights_dir) -> Path:
    return Path(weights_dir) / name


def load_pretrained(name: str, device=None, weights_dir=WEIGHTS_DIR) -> PretrainedDiffusion:
    """Load a shipped diffusion model by name (``"toy-gmm"``, ``"toy-shapes"``, ``"digits"``).

    The weights are verified against the SHA-256 in their JSON and read with
    ``torch.load(weights_only=True)``; the network is frozen (``requires_grad=False``) and in
    eval mode. Never downloads anything.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_choice("name", name, tuple(_RECIPES))
    stem = _stem(name, weights_dir)
    meta = read_meta(stem)
    try:
        network = build_network(meta["network"])
        schedule = NoiseSchedule.from_config(meta["schedule"])
        sampler = DiffusionSampler(schedule, **meta["sampler"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{stem.with_suffix('.json')}: invalid description ({err})") from None
    load_checkpoint(stem, network, meta, device)
    network.eval().requires_grad_(False)
    return PretrainedDiffusion(name, network, schedule, sampler, meta)


def load_digit_oracle(device=None, weights_dir=WEIGHTS_DIR):
    """Load the shipped digit classifier used only to *evaluate* generated digits.

    Introduced in: Chapter 7 (CTRL on images).
    """
    from ..evaluation.digit_oracle import DigitOracle

    stem = _stem("digit-oracle", weights_dir)
    meta = read_meta(stem)
    try:
        model = DigitOracle(**{k: v for k, v in meta["network"].items() if k != "class"})
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{stem.with_suffix('.json')}: invalid description ({err})") from None
    load_checkpoint(stem, model, meta, device)
    return model.eval().requires_grad_(False)


def describe(name: str, weights_dir=WEIGHTS_DIR) -> dict:
    """The JSON description of a shipped model (recipe, metrics measured at training time).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_choice("name", name, PRETRAINED_NAMES)
    return read_meta(_stem(name, weights_dir))


def _evaluate_toy(model: PretrainedDiffusion, toy_name: str, n: int = 2000) -> dict:
    from ..data import load_toy
    from ..evaluation import energy_distance

    toy, gen = load_toy(toy_name), torch.Generator().manual_seed(1234)
    out = {}
    for c, cname in enumerate(toy.condition_names):
        x = model.sample(n, c=c, generator=gen).cpu()
        out[f"energy_distance_{cname}"] = energy_distance(x, toy.sample(n, c, generator=gen))
    return out


def _evaluate_digits(model: PretrainedDiffusion, per_class: int = 100) -> dict:
    oracle = load_digit_oracle()
    gen = torch.Generator().manual_seed(1234)
    cond = torch.arange(10).repeat_interleave(per_class)
    x = model.sample(len(cond), c=cond, generator=gen).cpu()
    correct = (oracle.predict(x) == cond).float().reshape(10, per_class).mean(1)
    return {"oracle_accuracy_per_class": [round(float(a), 4) for a in correct],
            "oracle_accuracy_mean": float(correct.mean())}


def retrain(name: str, weights_dir=WEIGHTS_DIR, device=None, iterations: int | None = None,
            progress: bool = True) -> dict:
    """Rerun the seeded recipe for ``name``, save the checkpoint atomically, return its JSON.

    Args:
        name: one of :data:`PRETRAINED_NAMES`.
        weights_dir: where the checkpoint is written.
        device: where to train.
        iterations: overrides the recipe's training budget (for quick reproducibility
            tests; epochs for the digit oracle).
        progress: show progress.

    Retrain ``digit-oracle`` before ``digits``: the digits model is evaluated by it.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_choice("name", name, PRETRAINED_NAMES)
    start = time.perf_counter()
    if name == "digit-oracle":
        from ..evaluation.digit_oracle import train_digit_oracle

        kwargs = {} if iterations is None else {"epochs": iterations}
        oracle_fit = train_digit_oracle(seed=0, device=device or "cpu", progress=progress,
                                        **kwargs)
        model, acc = oracle_fit.model, oracle_fit.test_accuracy
        meta = {"name": name, "network": model.config,
                "description": "CNN digit classifier, trained on the train split only",
                "metrics": {"held_out_accuracy": acc},
                "training": {"seed": 0, **kwargs}}
        save_checkpoint(_stem(name, weights_dir), model.cpu(), meta)
        meta["training"]["seconds"] = time.perf_counter() - start
        return meta

    recipe = _RECIPES[name]
    train_kwargs = dict(recipe.train, **({} if iterations is None else
                                         {"iterations": iterations}))
    with seeded_init(recipe.seed):  # the initial weights are part of the recipe
        network = recipe.make_network()
    schedule = recipe.make_schedule()
    if name.startswith("toy-"):
        x, c = _toy_data(name.removeprefix("toy-"), 40_000, recipe.seed)
    else:
        x, c = _digit_data()  # all 1797 digits; the seed enters through training
    result = train_denoiser(network, schedule, x, c=c, seed=recipe.seed, device=device,
                            progress=progress, **train_kwargs)
    model = PretrainedDiffusion(name, result.model.eval(), schedule,
                                DiffusionSampler(schedule, **recipe.sampler), {})
    metrics = (_evaluate_toy(model, name.removeprefix("toy-")) if name.startswith("toy-")
               else _evaluate_digits(model))
    meta = {"name": name, "description": recipe.description, "network": network.config,
            "schedule": schedule.to_config(), "sampler": recipe.sampler, "metrics": metrics,
            "training": {"seed": recipe.seed, "seconds": round(result.seconds, 1),
                         "final_loss": sum(result.losses[-100:]) / len(result.losses[-100:]),
                         **train_kwargs}}
    save_checkpoint(_stem(name, weights_dir), result.model.cpu(), meta)
    return meta
