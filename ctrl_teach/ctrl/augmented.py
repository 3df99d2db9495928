"""The augmented model: frozen pre-trained network + zero-initialised ``y``-conditioning.

Both variants share one interface, ``augmented.step(x_t, i, c, y) -> (step, a)``: the
fine-tuned Gaussian step ``N(mean_pre(x_t) + sigma_t a, sigma_t^2 diag(s^2))`` and the control
``a`` in units of the step's noise. With the pre-trained variance (``s = 1``, the default,
"mean-only") the step's KL is ``|a|^2 / 2``; a variance-aware model (``variance=True``) also
learns ``log s`` (``step.log_scale``, zero at initialisation) and pays
``sum_i [(s_i^2 + a_i^2 - 1) / 2 - log s_i]`` (:func:`control_kl`). The soft-optimal discrete
step is narrower than the pre-trained one, so a mean-only policy has a floor that shrinks only
with the step size (Chapter 4, "What a Gaussian step can represent"). The final noise-free step
(``sigma = 0``) is never controlled: its KL price would be infinite, so ``a = 0`` there and the
pre-trained mean is used.

* :class:`HeadAugmentedModel`: ``a = ControlHead(x_t, t, c, y)`` with a zero last layer.
* :class:`LoRAAugmentedModel`: the paper's variant, a zero label embedding added to the time
  embedding (``extra_emb``) plus LoRA adapters; ``a = (mean_theta - mean_pre) / sigma_t``.

At initialisation both reproduce the pre-trained sampler bit for bit.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .._checks import (
    check_eps_network,
    check_labels,
    check_positive_float,
    check_positive_int,
)
from ..diffusion import DiffusionSampler, GaussianStep, time_embedding

__all__ = ["ControlHead", "AugmentedModel", "HeadAugmentedModel", "LoRALinear", "LoRAConv2d",
           "LoRAAugmentedModel", "pair_index", "control_kl"]


def control_kl(a: torch.Tensor, log_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Exact KL of a fine-tuned step to the pre-trained one, in noise units, per row.

    ``KL(N(mu + sigma a, sigma^2 diag(s^2)) || N(mu, sigma^2 I)) =
    sum_i [(s_i^2 + a_i^2 - 1) / 2 - log s_i]``, which is ``|a|^2 / 2`` for ``s = 1`` (the
    book's eq. ``eq-step-kl``).

    Args:
        a: ``(N, ...)`` the control (mean shift in units of ``sigma``).
        log_scale: ``None`` (``s = 1``) or ``(N, ...)`` ``log s``.

    Returns:
        ``(N,)`` KL values.

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """
    if log_scale is None:
        return 0.5 * a.flatten(1).pow(2).sum(1)
    kl = 0.5 * ((2 * log_scale).exp() + a.pow(2) - 1) - log_scale
    return kl.flatten(1).sum(1)


def _bounded(h: torch.Tensor, bound: float | None) -> torch.Tensor:
    """``bound tanh(h / bound)``: a soft bound that is the identity near 0."""
    return h if bound is None else bound * torch.tanh(h / bound)


def pair_index(c, y, num_labels: int, num_conditions: int):
    """Row of the ``(c, y)`` pair in a table of ``(num_conditions + 1) * num_labels`` rows.

    ``c * num_labels + y`` (row-major; the extra block ``c = num_conditions`` is the null
    condition), or ``y`` alone for an unconditional model or ``c = None``. Every per-pair
    embedding of the augmented models (label embeddings, the learned initial law) uses it.

    Args:
        c: ``None`` or a long tensor ``(N,)`` of conditions.
        y: a long tensor ``(N,)`` of labels.
        num_labels: ``K``.
        num_conditions: ``C`` (0: unconditional).

    Returns:
        A long tensor ``(N,)``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """
    return y if c is None or num_conditions == 0 else c * num_labels + y


class ControlHead(nn.Module):
    """``a(x_t, t, c, y)``: MLP (flat data) or small conv net (images), last layer zero.

    Args:
        data_shape: ``(d,)`` or ``(C, H, W)``.
        num_timesteps: ``T`` of the schedule.
        num_conditions: number of conditions ``c`` (0 = none).
        num_labels: number of labels ``y``.
        width: hidden width.
        emb_dim: embedding size.
        max_control: soft bound ``a = m tanh(h / m)`` per coordinate (None: unbounded). An
            unbounded MLP extrapolates linearly, and a rare trajectory pushed far out can feed
            back into ever larger controls (KL in the thousands); the bound prevents it.
        input_copies: the input holds this many tensors of ``data_shape`` stacked along the
            channel (image) or feature (flat) axis, e.g. 2 for ``[x_t, x0_hat]``.
        variance: also output ``log s`` (the log factor on the step's std), bounded by
            ``max_log_scale tanh(h / max_log_scale)``; its last layer is zero too.
        max_log_scale: the soft bound of ``|log s|`` (2: ``s`` in about ``[0.14, 7.4]``).
        depth: number of hidden layers of the flat MLP.
        fourier_features: flat data only: also feed ``[cos(B x), sin(B x)]`` for a fixed
            random ``B`` of this many rows (0: raw ``x`` only, the head before issue 11).
            Random Fourier features (Tancik et al., 2020) let a small MLP bend its output
            around tight modes; on the 2-D toys they lower the certificate gap at the same
            cost per iteration (``benchmarks/head_benchmark.py`` prints both heads).
        fourier_scale: std of ``B``'s entries (the features' frequency, per unit of ``x``).
            ``B`` comes from its own generator (seed 0), so it is the same in every run and
            is not stored in checkpoints.
    Returns (forward): ``(N, *data_shape)`` control in noise units, or ``(a, log_s)`` with
    ``variance=True``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, data_shape, num_timesteps: int, num_conditions: int, num_labels: int,
                 width: int = 128, emb_dim: int = 32, max_control: float | None = 5.0,
                 input_copies: int = 1, variance: bool = False, max_log_scale: float = 2.0,
                 depth: int = 2, fourier_features: int = 64, fourier_scale: float = 2.0):
        super().__init__()
        self.max_control = max_control
        self.variance = bool(variance)
        self.max_log_scale = float(max_log_scale)
        outputs = 2 if self.variance else 1
        self.data_shape = tuple(data_shape)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.num_conditions = int(num_conditions)
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.emb_dim = emb_dim
        self.label = nn.Embedding((num_conditions + 1) * num_labels, emb_dim)
        self.image = len(self.data_shape) == 3
        copies = check_positive_int("input_copies", input_copies)
        if self.image:
            ch = self.data_shape[0]
            self.emb = nn.Linear(2 * emb_dim, width)
            self.inp = nn.Conv2d(copies * ch, width, 3, padding=1)
            self.mid = nn.Conv2d(width, width, 3, padding=1)
            self.out = nn.Conv2d(width, outputs * ch, 3, padding=1)
        else:
            d = math.prod(self.data_shape)
            m = fourier_features
            if isinstance(m, bool) or not isinstance(m, int) or m < 0:
                raise ValueError(f"fourier_features must be an int >= 0, got {m!r}")
            # A fixed frequency matrix, drawn from its own generator (no global RNG).
            g = torch.Generator().manual_seed(0)
            self.register_buffer("frequencies",
                                 check_positive_float("fourier_scale", fourier_scale)
                                 * torch.randn(m, copies * d, generator=g),
                                 persistent=False)
            layers = [nn.Linear(copies * d + 2 * m + 2 * emb_dim, width), nn.SiLU()]
            for _ in range(check_positive_int("depth", depth) - 1):
                layers += [nn.Linear(width, width), nn.SiLU()]
            self.net = nn.Sequential(*layers)
            self.out = nn.Linear(width, outputs * d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, c, y):
        temb = time_embedding(t, self.num_timesteps, self.emb_dim)
        idx = pair_index(c, y, self.num_labels, self.num_conditions)
        emb = torch.cat([temb, self.label(idx)], dim=1)
        if self.image:
            h = nn.functional.silu(self.inp(x) + self.emb(emb)[:, :, None, None])
            out = self.out(nn.functional.silu(self.mid(h)))
            parts = out.chunk(2, dim=1) if self.variance else (out,)
        else:
            flat = x.flatten(1)
            proj = flat @ self.frequencies.T
            out = self.out(self.net(torch.cat([flat, proj.cos(), proj.sin(), emb], dim=1)))
            parts = out.chunk(2, dim=1) if self.variance else (out,)
            parts = tuple(p.reshape(x.shape[0], *self.data_shape) for p in parts)
        a = _bounded(parts[0], self.max_control)
        if not self.variance:
            return a
        return a, _bounded(parts[1], self.max_log_scale)


class AugmentedModel(nn.Module):
    """Common base: frozen ``network`` + ``sampler`` + trainable ``y``-conditioning.

    Args:
        network: the frozen pre-trained eps-network.
        sampler: the :class:`~ctrl_teach.diffusion.DiffusionSampler` to fine-tune.
        num_labels: ``K``, the number of labels ``y``.
        learn_initial: also learn a tilted initial law (:meth:`initial_state`).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, network: nn.Module, sampler: DiffusionSampler, num_labels: int,
                 learn_initial: bool = False):
        super().__init__()
        if not isinstance(sampler, DiffusionSampler):
            raise ValueError(f"sampler must be a DiffusionSampler, got {type(sampler).__name__}")
        check_eps_network("network", network)
        self.network = network.requires_grad_(False).eval()
        self.sampler = sampler
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.data_shape = tuple(network.data_shape)
        self.num_conditions = int(network.num_conditions)
        # optional tilted initial law nu_theta = N(m[c, y], diag(s[c, y])^2), zero-initialised
        self.init_mean = self.init_log_std = None
        if learn_initial:
            rows, d = (self.num_conditions + 1) * self.num_labels, math.prod(self.data_shape)
            self.init_mean = nn.Parameter(torch.zeros(rows, d))
            self.init_log_std = nn.Parameter(torch.zeros(rows, d))

    def initial_state(self, z: torch.Tensor, c, y) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_T = m + s z`` and ``KL(nu_theta || N(0, I))`` per row (0 without a tilt).

        ``KL = sum_d (s^2 + m^2 - 1 - 2 log s) / 2``: the initial-law term of the path KL,
        which removes the initial-value bias alpha KL(nu || nu*) (related-methods 5.4).
        """
        if self.init_mean is None:
            return z, torch.zeros(z.shape[0], device=z.device)
        m, ls = self._initial_law(c, y)
        x = (m + ls.exp() * z.flatten(1)).view_as(z)
        kl = 0.5 * ((2 * ls).exp() + m**2 - 1 - 2 * ls).sum(1)
        return x, kl

    def _initial_law(self, c, y):
        """The learned initial law's mean ``m`` and log std per row of ``(c, y)``."""
        idx = pair_index(c, y, self.num_labels, self.num_conditions)
        return self.init_mean[idx], self.init_log_std[idx]

    def initial_log_prob(self, x: torch.Tensor, c, y) -> torch.Tensor:
        """``log nu_theta(x_T)`` per row under the learned initial law ``N(m, diag(s^2))``
        (a score-function gradient needs it; the fixed start has nothing to learn)."""
        if self.init_mean is None:
            raise ValueError("initial_log_prob needs a learned initial law (learn_initial=True)")
        m, ls = self._initial_law(c, y)
        return torch.distributions.Normal(m, ls.exp()).log_prob(x.flatten(1)).sum(1)

    def prepare_labels(self, c, y, n: int, device):
        """Validate ``c`` (None / int / ``(n,)``) and ``y`` (int / ``(n,)``); move to device."""
        c = self.sampler.prepare_condition(self.network, c, n, device)
        y = check_labels("y", y, self.num_labels, batch=n).to(device)
        return c, y

    def pretrained_step(self, x_t, i: int, c) -> GaussianStep:
        """The frozen pre-trained step (never under ``no_grad``: gradients flow through it)."""
        return self.sampler.step(self.network, x_t, i, c)

    def step(self, x_t, i: int, c, y) -> tuple[GaussianStep, torch.Tensor]:
        """Fine-tuned step ``N(mean_pre + sigma a, sigma^2 diag(s^2))`` and control ``a``.

        ``step.log_scale`` is ``log s`` (``None`` for a mean-only model); the step's KL is
        :func:`control_kl` ``(a, step.log_scale)``.
        """
        raise NotImplementedError

    def trainable_parameters(self):
        """The parameters fine-tuning updates (the frozen network is excluded)."""
        return [p for p in self.parameters() if p.requires_grad]


class HeadAugmentedModel(AugmentedModel):
    """``mean = mean_pre(x_t) + sigma_t a_phi(x_t, t, c, y)`` with a :class:`ControlHead`.

    Args:
        network: frozen pre-trained eps-network.
        sampler: the sampler to fine-tune.
        num_labels: ``K``.
        head: optional custom head (default ``ControlHead(...)``).
        learn_initial: also learn a tilted initial Gaussian (:meth:`initial_state`).
        x0_input: feed the head ``[x_t, x0_hat(x_t)]`` (the pre-trained prediction of the clean
            sample) instead of ``x_t`` alone. The reward reads ``x_0``, so on images this
            feature makes the control much easier to learn (Chapter 7); a custom ``head`` must
            then accept two stacked copies of the data shape.
        variance: also learn the step's std factor ``s`` (variance-aware class): the head
            outputs ``(a, log s)``, both zero at initialisation.
        head_kwargs: passed to :class:`ControlHead` (``width``, ``max_control``, ...).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, network, sampler, num_labels: int, head: nn.Module | None = None,
                 learn_initial: bool = False, x0_input: bool = False, variance: bool = False,
                 **head_kwargs):
        super().__init__(network, sampler, num_labels, learn_initial)
        self.x0_input = bool(x0_input)
        self.variance = bool(variance)
        self.head = head if head is not None else ControlHead(
            self.data_shape, sampler.schedule.T, self.num_conditions, num_labels,
            input_copies=2 if self.x0_input else 1, variance=self.variance, **head_kwargs)

    def step(self, x_t, i, c, y):
        step = self.pretrained_step(x_t, i, c)
        if step.std == 0:
            return step, torch.zeros_like(x_t)
        t = torch.full((x_t.shape[0],), step.t, dtype=torch.long, device=x_t.device)
        out = self.head(torch.cat([x_t, step.x0_hat], 1) if self.x0_input else x_t, t, c, y)
        a, step.log_scale = out if self.variance else (out, None)
        step.mean = step.mean + step.std * a
        return step, a


class LoRALinear(nn.Module):
    """``W x + b + (alpha / r) B A x`` with ``B`` zero-initialised (Hu et al. 2021, eq. 3).

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, base: nn.Linear, rank: int = 4, scale: float = 1.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Linear(base.in_features, rank, bias=False)
        self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.zeros_(self.up.weight)
        self.scale = scale

    def forward(self, x):
        return self.base(x) + self.scale * self.up(self.down(x))


class LoRAConv2d(nn.Module):
    """Conv2d with a low-rank ``1x1 (up) o kxk (down)`` residual, ``up`` zero-initialised.

    Introduced in: Chapter 7 (CTRL on images).
    """

    def __init__(self, base: nn.Conv2d, rank: int = 4, scale: float = 1.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride,
                              base.padding, bias=False)
        self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)
        self.scale = scale

    def forward(self, x):
        return self.base(x) + self.scale * self.up(self.down(x))


def _add_lora(module: nn.Module, rank: int, conv: bool):
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LoRALinear(child, rank))
        elif conv and isinstance(child, nn.Conv2d):
            setattr(module, name, LoRAConv2d(child, rank))
        else:
            _add_lora(child, rank, conv)


class LoRAAugmentedModel(AugmentedModel):
    """The paper's augmented model: ``eps_theta(x_t, emb_t + E[c, y])`` with LoRA adapters.

    The adapted copy of the network gets a zero-initialised label embedding (passed as
    ``extra_emb``) and LoRA on every ``nn.Linear`` (and ``nn.Conv2d`` if ``conv``). The step
    is the sampler's step of the adapted network; ``a = (mean_theta - mean_pre) / sigma_t``.

    Args:
        network: frozen pre-trained :class:`~ctrl_teach.diffusion.EpsilonNetwork`.
        sampler: the sampler to fine-tune.
        num_labels: ``K``.
        rank: LoRA rank ``r``.
        conv: also adapt every ``nn.Conv2d``.
        learn_initial: also learn a tilted initial law.
        variance: also learn ``log s`` per step, ``(c, y)`` pair and coordinate (a
            zero-initialised table, bounded by ``max_log_scale tanh(. / max_log_scale)``; the
            adapted network only predicts the noise, so ``s`` does not depend on ``x_t``).
        max_log_scale: the soft bound of ``|log s|``.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, network, sampler, num_labels: int, rank: int = 4, conv: bool = False,
                 learn_initial: bool = False, variance: bool = False,
                 max_log_scale: float = 2.0):
        super().__init__(network, sampler, num_labels, learn_initial)
        self.variance, self.max_log_scale = bool(variance), float(max_log_scale)
        self.log_scale = None
        if self.variance:
            rows = (self.num_conditions + 1) * num_labels
            self.log_scale = nn.Parameter(torch.zeros(sampler.num_steps, rows,
                                                      *self.data_shape))
        if not hasattr(network, "emb_dim"):
            raise ValueError("network must be an EpsilonNetwork (with emb_dim / extra_emb)")
        self.adapted = copy.deepcopy(network)
        _add_lora(self.adapted, check_positive_int("rank", rank), conv)
        self.label = nn.Embedding((self.num_conditions + 1) * num_labels,
                                  network.emb_dim)
        nn.init.zeros_(self.label.weight)

    def step(self, x_t, i, c, y):
        pre = self.pretrained_step(x_t, i, c)
        if pre.std == 0:
            return pre, torch.zeros_like(x_t)
        idx = pair_index(c, y, self.num_labels, self.num_conditions)
        t = torch.full((x_t.shape[0],), pre.t, dtype=torch.long, device=x_t.device)
        eps = self.adapted(x_t, t, c, extra_emb=self.label(idx))
        step = self.sampler.step_from_eps(x_t, eps, i)
        if self.variance:
            step.log_scale = _bounded(self.log_scale[i][idx], self.max_log_scale)
        return step, (step.mean - pre.mean) / step.std
