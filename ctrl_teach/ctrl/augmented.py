"""The augmented model: frozen pre-trained network + zero-initialised ``y``-conditioning.

Both variants share one interface, ``augmented.step(x_t, i, c, y) -> (step, a)``: the
fine-tuned Gaussian step ``N(mean_pre(x_t) + sigma_t a, sigma_t^2 I)`` and the control ``a``
in units of the step's noise, so ``KL_t = |a|^2 / 2`` exactly. The final noise-free step
(``sigma = 0``) is never controlled: ``a = 0`` there and the pre-trained mean is used.

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

from .._checks import check_eps_network, check_labels, check_positive_int
from ..diffusion import DiffusionSampler, GaussianStep, time_embedding

__all__ = ["ControlHead", "AugmentedModel", "HeadAugmentedModel", "LoRALinear", "LoRAConv2d",
           "LoRAAugmentedModel", "pair_index"]


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
    Returns (forward): ``(N, *data_shape)`` control in noise units.

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, data_shape, num_timesteps: int, num_conditions: int, num_labels: int,
                 width: int = 128, emb_dim: int = 32, max_control: float | None = 5.0,
                 input_copies: int = 1):
        super().__init__()
        self.max_control = max_control
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
            self.out = nn.Conv2d(width, ch, 3, padding=1)
        else:
            d = math.prod(self.data_shape)
            self.net = nn.Sequential(nn.Linear(copies * d + 2 * emb_dim, width), nn.SiLU(),
                                     nn.Linear(width, width), nn.SiLU())
            self.out = nn.Linear(width, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, c, y):
        temb = time_embedding(t, self.num_timesteps, self.emb_dim)
        idx = pair_index(c, y, self.num_labels, self.num_conditions)
        emb = torch.cat([temb, self.label(idx)], dim=1)
        if self.image:
            h = nn.functional.silu(self.inp(x) + self.emb(emb)[:, :, None, None])
            a = self.out(nn.functional.silu(self.mid(h)))
        else:
            a = self.out(self.net(torch.cat([x.flatten(1), emb], dim=1)))
            a = a.view(x.shape[0], *self.data_shape)
        if self.max_control is not None:
            a = self.max_control * torch.tanh(a / self.max_control)
        return a


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
        idx = pair_index(c, y, self.num_labels, self.num_conditions)
        m, ls = self.init_mean[idx], self.init_log_std[idx]
        x = (m + ls.exp() * z.flatten(1)).view_as(z)
        kl = 0.5 * ((2 * ls).exp() + m**2 - 1 - 2 * ls).sum(1)
        return x, kl

    def prepare_labels(self, c, y, n: int, device):
        """Validate ``c`` (None / int / ``(n,)``) and ``y`` (int / ``(n,)``); move to device."""
        c = self.sampler.prepare_condition(self.network, c, n, device)
        y = check_labels("y", y, self.num_labels, batch=n).to(device)
        return c, y

    def pretrained_step(self, x_t, i: int, c) -> GaussianStep:
        """The frozen pre-trained step (never under ``no_grad``: gradients flow through it)."""
        return self.sampler.step(self.network, x_t, i, c)

    def step(self, x_t, i: int, c, y) -> tuple[GaussianStep, torch.Tensor]:
        """Fine-tuned step ``N(mean_pre + sigma a, sigma^2)`` and control ``a`` (eq. KL_t)."""
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

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, network, sampler, num_labels: int, head: nn.Module | None = None,
                 learn_initial: bool = False, x0_input: bool = False, **head_kwargs):
        super().__init__(network, sampler, num_labels, learn_initial)
        self.x0_input = bool(x0_input)
        self.head = head if head is not None else ControlHead(
            self.data_shape, sampler.schedule.T, self.num_conditions, num_labels,
            input_copies=2 if self.x0_input else 1, **head_kwargs)

    def step(self, x_t, i, c, y):
        step = self.pretrained_step(x_t, i, c)
        if step.std == 0:
            return step, torch.zeros_like(x_t)
        t = torch.full((x_t.shape[0],), step.t, dtype=torch.long, device=x_t.device)
        a = self.head(torch.cat([x_t, step.x0_hat], 1) if self.x0_input else x_t, t, c, y)
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

    Introduced in: Chapter 5 (CTRL on 2-D data).
    """

    def __init__(self, network, sampler, num_labels: int, rank: int = 4, conv: bool = False,
                 learn_initial: bool = False):
        super().__init__(network, sampler, num_labels, learn_initial)
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
        return step, (step.mean - pre.mean) / step.std
