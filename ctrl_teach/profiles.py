"""Run profiles and device selection (Preface: "How to run this book").

Two profiles keep every chapter, test and benchmark valid on two kinds of machine:

* ``quick``: a 2-core CPU (CI, a laptop). Small sample sizes and short training budgets.
* ``full``: a GPU (Colab). The sizes quoted in the book's "full" runtime boxes.

Select one with the environment variable ``CTRL_TEACH_PROFILE`` (``quick`` or ``full``).
Without it the profile is ``full`` when CUDA is available and ``quick`` otherwise.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

__all__ = ["profile", "pick", "default_device", "seed_everything", "gaussian_noise",
           "seeded_init", "make_generator", "progress_bar"]

_PROFILES = ("quick", "full")


def profile() -> str:
    """Return the active profile name, ``"quick"`` or ``"full"``.

    Introduced in: Preface (How to run this book).
    """
    name = os.environ.get("CTRL_TEACH_PROFILE", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "quick"
    if name not in _PROFILES:
        raise ValueError(f"CTRL_TEACH_PROFILE must be one of {list(_PROFILES)}, got {name!r}")
    return name


def pick(quick, full):
    """Return ``quick`` or ``full`` according to :func:`profile` (e.g. a sample size).

    Args:
        quick: the value for the quick profile (2-core CPU).
        full: the value for the full profile (GPU).

    Introduced in: Preface (How to run this book).
    """
    return quick if profile() == "quick" else full


def default_device(verbose: bool = False) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    Args:
        verbose: print the choice and the profile.

    Introduced in: Preface (How to run this book).
    """
    if torch.cuda.is_available():
        dev = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    if verbose:
        print(f"ctrl_teach: using device {dev} (profile {profile()})")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``.

    The one function that reseeds the global generators, on purpose: call it at the top of a
    script or notebook of your own. Library functions never do.

    Args:
        seed: the seed.

    Introduced in: Preface (How to run this book).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded_init(seed: int):
    """Run a block (typically module construction) under ``torch.manual_seed(seed)`` without
    touching the caller's random state: ``torch.random.fork_rng`` saves the global CPU (and
    initialised CUDA) generators on entry and restores them on exit.

    Library functions that build a network from a ``seed`` use it, so their initial weights
    are reproducible and a call never reseeds the caller's global RNG.

    Args:
        seed: the seed of the block.

    Introduced in: Preface (How to run this book).
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def make_generator(generator: torch.Generator | None = None, seed: int = 0) -> torch.Generator:
    """``generator`` if one is given, else a fresh CPU generator seeded with ``seed``.

    Args:
        generator: a ``torch.Generator`` or ``None``.
        seed: the seed of the fresh generator.

    Introduced in: Preface (How to run this book).
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    return torch.Generator().manual_seed(int(seed))


def progress_bar(iterable, *, desc: str, enabled: bool = True, leave: bool = False):
    """A ``tqdm.auto`` bar over ``iterable``: a live widget in Jupyter and Colab, text in a
    terminal. It is disabled when ``enabled`` is false or the environment variable
    ``CTRL_TEACH_PROGRESS`` is ``0`` (``make book`` and ``make test`` set it, so executed
    pages carry no progress output).

    Args:
        iterable: what to iterate over.
        desc: the bar's label.
        enabled: show the bar at all.
        leave: keep the finished bar on screen.

    Introduced in: Preface (How to run this book).
    """
    from tqdm.auto import tqdm

    quiet = os.environ.get("CTRL_TEACH_PROGRESS", "1").strip() == "0"
    return tqdm(iterable, desc=desc, leave=leave, disable=quiet or not enabled)


def gaussian_noise(shape, generator: torch.Generator | None = None, device=None,
                   dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, reproducible from ``generator``.

    The noise is drawn on the generator's device and then moved, so a CPU generator gives
    the same numbers whatever ``device`` is (CPU and GPU runs then share their seeds).

    Args:
        shape: the tensor shape.
        generator: a ``torch.Generator`` (``None``: the global RNG).
        device: where the noise goes.
        dtype: its dtype.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    gen_device = generator.device if generator is not None else device
    z = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return z.to(device) if device is not None else z
