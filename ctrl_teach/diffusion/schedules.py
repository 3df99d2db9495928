"""Variance-preserving noise schedules (Chapter 1, "The forward process").

Discrete time follows DDPM: steps ``t = 1..T``, with ``beta_t`` the per-step noise,
``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s<=t} alpha_s``. The forward process has
the closed form (Ho et al. 2020, eq. 4)

    q(x_t | x_0) = N( sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I ).

``alpha_bar`` is stored with index 0 meaning "clean data" (``alpha_bar[0] = 1``), so
``alpha_bar[t]`` is the value at step ``t`` for ``t = 0..T``.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_float, check_positive_int, check_tensor
from ..profiles import gaussian_noise

__all__ = ["NoiseSchedule"]


class NoiseSchedule:
    """A VP schedule defined by its betas.

    Args:
        betas: tensor ``(T,)`` with ``0 < beta_t < 1``; ``betas[t-1]`` is ``beta_t``.
        kind: a label kept in :meth:`to_config` (``"linear"``, ``"cosine"`` or ``"custom"``).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, betas: torch.Tensor, kind: str = "custom", **params):
        betas = check_tensor("betas", torch.as_tensor(betas, dtype=torch.float64), ndim=1)
        if betas.numel() < 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must be a non-empty 1-D tensor with 0 < beta_t < 1")
        self.kind = kind
        self.params = dict(params)
        self.betas = betas
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar])

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """Linear betas from ``beta_start`` to ``beta_end`` (DDPM).

        The endpoints are quoted for ``T = 1000`` and rescaled by ``1000 / T`` so that a
        shorter chain covers the same noise range (Nichol & Dhariwal 2021, Sec. 3.2).
        A small ``beta_end`` leaves signal at ``t = T``: ``alpha_bar_T`` is then not tiny.
        """
        T = check_positive_int("T", T)
        beta_start = check_positive_float("beta_start", beta_start)
        beta_end = check_positive_float("beta_end", beta_end)
        scale = 1000.0 / T
        betas = torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64)
        if betas.max() >= 1:
            raise ValueError(f"beta_end * 1000 / T must be < 1, got {float(betas.max()):.3f}")
        return cls(betas, kind="linear", T=T, beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def cosine(cls, T: int, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Cosine schedule ``alpha_bar(t) = f(t)/f(0)``, ``f(t) = cos^2(((t/T + s)/(1+s)) pi/2)``.

        Nichol & Dhariwal 2021, eq. 17; betas are clipped at ``max_beta``. Their 0.999 makes
        the first reverse step ill-conditioned: its mean is about ``(x - eps) / sqrt(1 - beta_T)``,
        so an error in ``eps`` at ``t = T`` is amplified by
        ``beta_T / (sqrt(1 - abar_T) sqrt(1 - beta_T))``, about 32 for 0.999. The book's models
        use 0.8 (amplification ~1.8, ``alpha_bar_T`` still below 1e-4 for ``T = 100``).
        """
        T = check_positive_int("T", T)
        s = check_positive_float("s", s)
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        return cls(betas, kind="cosine", T=T, s=s, max_beta=max_beta)

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        """Rebuild a schedule from :meth:`to_config` output."""
        if not isinstance(config, dict) or "kind" not in config:
            raise ValueError(f"config must be a dict with a 'kind' key, got {config!r}")
        params = {k: v for k, v in config.items() if k != "kind"}
        if config["kind"] == "linear":
            return cls.linear(**params)
        if config["kind"] == "cosine":
            return cls.cosine(**params)
        raise ValueError(f"config['kind'] must be 'linear' or 'cosine', got {config['kind']!r}")

    def to_config(self) -> dict:
        """A JSON-serialisable description (used by checkpoints)."""
        if self.kind not in ("linear", "cosine"):
            raise ValueError("only linear and cosine schedules can be serialised")
        return {"kind": self.kind, **self.params}

    # -- closed-form forward process -------------------------------------------------------
    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.numel()

    def _index(self, t) -> torch.Tensor:
        t = torch.as_tensor(t).cpu()
        if t.is_floating_point() or (t < 0).any() or (t > self.T).any():
            raise ValueError(f"t must be integer steps in 0..{self.T}, got {t.tolist()}")
        return t.long()

    def signal_and_noise(self, t, dtype=torch.float32, device=None):
        """``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`` for integer steps ``t``."""
        ab = self.alpha_bar[self._index(t)]
        signal, noise = ab.sqrt(), (1 - ab).sqrt()
        return signal.to(device=device, dtype=dtype), noise.to(device=device, dtype=dtype)

    def predict_x0(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate of the clean sample, ``x0_hat = (x_t - sqrt(1 - abar_t) eps) /
        sqrt(abar_t)`` (Ho et al. 2020, eq. 15; the one implementation in the library).

        Args:
            x_t: ``(B, ...)`` noisy states.
            t: an int step or a long tensor ``(B,)`` of steps in ``0..T``.
            eps: ``(B, ...)`` the noise prediction ``eps_theta(x_t, t, c)``.

        Returns:
            ``x0_hat`` shaped like ``x_t``.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        a, b = self.signal_and_noise(t, dtype=x_t.dtype, device=x_t.device)
        shape = (-1,) + (1,) * (x_t.ndim - 1) if a.ndim else ()
        return (x_t - b.reshape(shape) * eps) / a.reshape(shape)

    def q_moments(self, x0: torch.Tensor, t):
        """Mean and std of ``q(x_t | x_0)``: ``sqrt(alpha_bar_t) x_0`` and ``sqrt(1-alpha_bar_t)``.

        Args:
            x0: ``(B, ...)`` clean data.
            t: an int or a long tensor ``(B,)`` of steps in ``0..T``.
        Returns:
            ``(mean, std)`` with ``mean`` shaped like ``x0`` and ``std`` broadcastable to it.
        """
        check_tensor("x0", x0)
        a, s = self.signal_and_noise(t, dtype=x0.dtype, device=x0.device)
        shape = (-1,) + (1,) * (x0.ndim - 1) if a.ndim else ()
        a, s = a.reshape(shape), s.reshape(shape)
        return a * x0, s

    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None, generator=None):
        """Draw ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (Ho et al. eq. 4).

        Returns ``(x_t, eps)`` so a training loss can regress ``eps``.
        """
        mean, std = self.q_moments(x0, t)
        if noise is None:
            noise = gaussian_noise(x0.shape, generator, x0.device, x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        return mean + std * noise, noise

    def __repr__(self) -> str:
        return (f"NoiseSchedule(kind={self.kind!r}, T={self.T}, "
                f"alpha_bar_T={float(self.alpha_bar[-1]):.2e})")
