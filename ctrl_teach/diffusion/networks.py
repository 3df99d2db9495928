"""Epsilon-prediction networks (Chapter 1, "Learning to denoise").

Both networks share one interface, ``model(x, t, c=None, extra_emb=None) -> eps_hat``:

* ``x``: ``(B, *data_shape)`` noisy inputs ``x_t``;
* ``t``: ``(B,)`` integer steps in ``1..T``;
* ``c``: ``(B,)`` condition labels in ``0..num_conditions`` where the extra index
  ``num_conditions`` is the *null* label (used for classifier-free guidance);
* ``extra_emb``: an optional ``(B, emb_dim)`` vector added to the time embedding. CTRL's
  augmented model (Chapter 5) injects its zero-initialised ``y``-embedding here, exactly as
  the official code adds ``class_embedding`` to the UNet's time embedding.

The time embedding is ``MLP(sinusoid(1000 t / T))`` (Ho et al. 2020, Appendix B; Vaswani et
al. 2017 for the sinusoid); a condition adds a learned embedding ``E[c]`` to it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_nonnegative_int, check_positive_int

__all__ = ["sinusoidal_embedding", "time_embedding", "EpsilonNetwork", "MLPDenoiser",
           "UNetDenoiser", "build_network"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k / (dim/2))``; shape ``(B, dim)``
    (the sinusoidal position encoding of Vaswani et al. 2017, Sec. 3.5).

    Args:
        t: ``(B,)`` positions (already rescaled; see :func:`time_embedding`).
        dim: embedding size.
        max_period: the longest period.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def time_embedding(t: torch.Tensor, num_timesteps: int, dim: int) -> torch.Tensor:
    """``sinusoid(1000 t / T)``: the step ``t`` of a ``T``-step schedule rescaled to the range
    ``0..1000`` of DDPM before the sinusoid (Ho et al. 2020, Appendix B), so a network sees the
    same frequencies whatever ``T`` is. Every time-conditioned module of the library (the
    denoisers, CTRL's control head, the noisy classifiers) embeds time with this function.

    Args:
        t: ``(B,)`` integer steps.
        num_timesteps: ``T`` of the schedule.
        dim: embedding size.

    Returns:
        ``(B, dim)`` embeddings.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    return sinusoidal_embedding(t * (1000.0 / num_timesteps), dim)


class EpsilonNetwork(nn.Module):
    """Shared time/condition embedding and input checks of the two denoisers.

    Subclasses implement ``denoise(x, emb)``. ``config`` holds the constructor arguments so
    that :func:`build_network` can rebuild the network from a checkpoint's JSON.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, data_shape, num_timesteps: int, num_conditions: int, emb_dim: int):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.num_conditions = check_nonnegative_int("num_conditions", num_conditions)
        self.emb_dim = check_positive_int("emb_dim", emb_dim)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(),
                                      nn.Linear(emb_dim, emb_dim))
        # one extra row: the null label
        self.cond_embed = nn.Embedding(num_conditions + 1, emb_dim) if num_conditions else None

    def embed(self, t: torch.Tensor, c=None, extra_emb=None) -> torch.Tensor:
        """``emb = MLP(sinusoid(1000 t / T)) + E[c] + extra_emb``, shape ``(B, emb_dim)``."""
        emb = self.time_mlp(time_embedding(t, self.num_timesteps, self.emb_dim))
        if self.cond_embed is not None:
            if c is None:
                c = torch.full_like(t, self.num_conditions)
            emb = emb + self.cond_embed(c)
        elif c is not None:
            raise ValueError("c must be None for an unconditional network")
        if extra_emb is not None:
            if extra_emb.shape != emb.shape:
                raise ValueError(f"extra_emb must have shape {tuple(emb.shape)}, "
                                 f"got {tuple(extra_emb.shape)}")
            emb = emb + extra_emb
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None, extra_emb=None):
        """Predict the noise ``eps`` in ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.data_shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.data_shape))}),"
                             f" got {got}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must be a tensor of shape ({x.shape[0]},)")
        if c is not None and (not isinstance(c, torch.Tensor) or c.shape != t.shape):
            raise ValueError(f"c must be None or a long tensor of shape ({x.shape[0]},)")
        return self.denoise(x, self.embed(t, c, extra_emb))

    @property
    def config(self) -> dict:
        """Constructor arguments plus the class name (JSON-serialisable)."""
        return {"class": type(self).__name__, **self._config}


class _ResidualMLPBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h, emb):
        z = torch.nn.functional.silu(self.fc1(self.norm(h)) + self.emb(emb))
        return h + self.fc2(torch.nn.functional.silu(z))


class MLPDenoiser(EpsilonNetwork):
    """Residual MLP epsilon-network for low-dimensional data (2-D toys).

    Args:
        data_dim: dimension ``d`` of the data.
        num_timesteps: ``T`` of the schedule it is trained with.
        num_conditions: number of condition labels ``c`` (0 = unconditional).
        width: hidden width.
        depth: number of residual blocks.
        emb_dim: embedding size.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, data_dim: int = 2, num_timesteps: int = 50, num_conditions: int = 0,
                 width: int = 128, depth: int = 3, emb_dim: int = 64):
        super().__init__((check_positive_int("data_dim", data_dim),), num_timesteps,
                         num_conditions, emb_dim)
        self._config = dict(data_dim=data_dim, num_timesteps=num_timesteps,
                            num_conditions=num_conditions, width=width, depth=depth,
                            emb_dim=emb_dim)
        self.inp = nn.Linear(data_dim, check_positive_int("width", width))
        self.blocks = nn.ModuleList(_ResidualMLPBlock(width, emb_dim)
                                    for _ in range(check_positive_int("depth", depth)))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, data_dim))

    def denoise(self, x, emb):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding added as a per-channel bias."""

    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(min(8, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(torch.nn.functional.silu(self.norm2(h)))
        return self.skip(x) + h


class UNetDenoiser(EpsilonNetwork):
    """A small convolutional U-Net for ``channels x image_size x image_size`` images.

    Each resolution level has one residual block; resolution halves between levels
    (``channel_mults`` sets the widths), with skip connections from the down path.

    Args:
        image_size: 8 or 16 (any size divisible by ``2^(levels-1)`` works).
        channels: image channels (1 for digits).
        num_timesteps: ``T`` of the schedule.
        num_conditions: number of conditions ``c`` (0 = unconditional).
        base_channels: width of the first level.
        channel_mults: widths ``base_channels * m`` per level.
        emb_dim: embedding size.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, image_size: int = 8, channels: int = 1, num_timesteps: int = 100,
                 num_conditions: int = 10, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2), emb_dim: int = 128):
        image_size = check_positive_int("image_size", image_size)
        channels = check_positive_int("channels", channels)
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(f"image_size must be divisible by 2^(len(channel_mults)-1), "
                             f"got {image_size} with channel_mults={channel_mults}")
        super().__init__((channels, image_size, image_size), num_timesteps, num_conditions,
                         emb_dim)
        self._config = dict(image_size=image_size, channels=channels,
                            num_timesteps=num_timesteps, num_conditions=num_conditions,
                            base_channels=base_channels, channel_mults=list(channel_mults),
                            emb_dim=emb_dim)
        widths = [check_positive_int("base_channels", base_channels) * m for m in channel_mults]
        self.inp = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = widths[0]
        for w in widths:
            self.down.append(_ResBlock(cin, w, emb_dim))
            cin = w
        self.mid = _ResBlock(cin, cin, emb_dim)
        self.up = nn.ModuleList(_ResBlock(cin + w if i == 0 else widths[-i] + w, w, emb_dim)
                                for i, w in enumerate(reversed(widths)))
        self.out = nn.Sequential(nn.GroupNorm(min(8, widths[0]), widths[0]), nn.SiLU(),
                                 nn.Conv2d(widths[0], channels, 3, padding=1))

    def denoise(self, x, emb):
        f = torch.nn.functional
        h = self.inp(x)
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                h = f.avg_pool2d(h, 2)
            h = block(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for level, block in enumerate(self.up):
            if level > 0:
                h = f.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


_NETWORKS = {"MLPDenoiser": MLPDenoiser, "UNetDenoiser": UNetDenoiser}


def build_network(config: dict) -> EpsilonNetwork:
    """Rebuild a network from its ``config`` (the inverse of ``EpsilonNetwork.config``).

    Args:
        config: the dict of :attr:`EpsilonNetwork.config` (a checkpoint's ``network`` entry).

    Returns:
        A freshly initialised network of that class and shape.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    if not isinstance(config, dict) or config.get("class") not in _NETWORKS:
        raise ValueError(f"config['class'] must be one of {list(_NETWORKS)}, got "
                         f"{config.get('class') if isinstance(config, dict) else config!r}")
    kwargs = {k: v for k, v in config.items() if k != "class"}
    if "channel_mults" in kwargs:
        kwargs["channel_mults"] = tuple(kwargs["channel_mults"])
    try:
        return _NETWORKS[config["class"]](**kwargs)
    except TypeError as err:
        raise ValueError(f"config has unexpected keys for {config['class']}: {err}") from None
