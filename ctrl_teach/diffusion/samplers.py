"""Reverse-time samplers that expose every step as a Gaussian (Chapter 1, "Sampling").

A reverse step from ``t`` to an earlier ``t' < t`` is the Gaussian

    p(x_{t'} | x_t) = N( mu_t(x_t), sigma_t^2 I ),

    mu_t = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma_t^2) eps_theta(x_t, t),
    x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t),
    sigma_t = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})

(Song et al. 2021, DDIM eq. 12 and 16). With every step visited and ``eta = 1`` this is
exactly DDPM's ancestral sampler with the posterior variance ``beta_tilde_t`` (Ho et al.
2020, eq. 7); ``eta = 0`` is deterministic DDIM. The last step lands on ``t' = 0`` where
``sigma = 0``: it is noise-free, so it can never be "controlled" at finite KL.

Because each step is returned as a :class:`GaussianStep`, later chapters can add a control
to the mean (``mean + sigma * a``) and compute the per-step KL ``|a|^2 / 2`` exactly.

:meth:`DiffusionSampler.run_chain` is the library's one reverse-chain loop: the pre-trained
sampler, CTRL's fine-tuned sampler and its differentiable rollouts, and the Monte Carlo soft
value all call it with their own step function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._checks import check_labels, check_positive_float, check_positive_int, check_tensor
from ..profiles import gaussian_noise, progress_bar
from .schedules import NoiseSchedule

__all__ = ["GaussianStep", "ChainResult", "DiffusionSampler", "gaussian_kl", "model_device"]


@dataclass
class GaussianStep:
    """One reverse step ``N(mean, std^2 diag(s^2))`` from step ``t`` to ``t_prev``.

    Attributes:
        mean: ``(B, ...)`` the step mean ``mu_t(x_t)``.
        std: the scalar step std ``sigma_t`` (0 for the final step or for DDIM with eta=0).
        log_scale: ``None`` (the pre-trained variance, ``s = 1``) or ``(B, ...)`` the log of a
            per-coordinate factor ``s`` on the std, set by a variance-aware fine-tuned step.
        t: the integer step of ``x_t``.
        t_prev: the integer step it goes to.
        eps: the noise prediction used.
        x0_hat: the implied clean estimate.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    mean: torch.Tensor
    std: float
    t: int
    t_prev: int
    eps: torch.Tensor
    x0_hat: torch.Tensor
    log_scale: torch.Tensor | None = None

    def sample(self, generator: torch.Generator | None = None, noise=None) -> torch.Tensor:
        """Reparameterised draw ``x_{t'} = mean + std * s * z`` with ``z ~ N(0, I)``.

        Args:
            generator: a ``torch.Generator`` for ``z`` (ignored when ``noise`` is given).
            noise: ``z`` itself, shaped like ``mean``.
        """
        if self.std == 0:
            return self.mean
        if noise is None:
            noise = gaussian_noise(self.mean.shape, generator, self.mean.device, self.mean.dtype)
        if self.log_scale is not None:
            noise = self.log_scale.exp() * noise
        return self.mean + self.std * noise

    def log_prob(self, x_next: torch.Tensor) -> torch.Tensor:
        """``log N(x_next; mean, std^2 diag(s^2))`` summed over coordinates, ``(B,)``.

        The density a score-function (REINFORCE) gradient differentiates; undefined for a
        noise-free step (``std = 0``).
        """
        if self.std == 0:
            raise ValueError("log_prob needs a noisy step (std > 0); this step is noise-free")
        std = self.std if self.log_scale is None else self.std * self.log_scale.exp()
        return torch.distributions.Normal(self.mean, std).log_prob(x_next).flatten(1).sum(1)


@dataclass
class ChainResult:
    """What :meth:`DiffusionSampler.run_chain` returns.

    Attributes:
        x: the final state ``x_0``.
        extras: what the step function returned beside each step, one entry per step.
        trajectory: every state from the start to ``x_0`` (``None`` unless asked for).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    x: torch.Tensor
    extras: list = field(default_factory=list)
    trajectory: torch.Tensor | None = None


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for an empty module).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: float) -> torch.Tensor:
    """KL between two Gaussians with a shared isotropic std, summed over data dimensions.

    ``KL(N(m_p, s^2 I) || N(m_q, s^2 I)) = |m_p - m_q|^2 / (2 s^2)``  (one value per row;
    the book's eq. ``eq-step-kl``). Two Gaussians with the same mean and ``s = 0`` are point
    masses at different places unless the means agree, so the KL is infinite there: the
    final, noise-free step cannot be controlled at finite price, and ``std = 0`` raises.

    Args:
        mean_p: ``(N, ...)`` means of the first Gaussian.
        mean_q: ``(N, ...)`` means of the second.
        std: the shared standard deviation ``s > 0``.

    Returns:
        ``(N,)`` KL values.

    Introduced in: Chapter 3 (Control as reinforcement learning).
    """
    if mean_p.shape != mean_q.shape:
        raise ValueError(f"mean_p and mean_q must have the same shape, got "
                         f"{tuple(mean_p.shape)} and {tuple(mean_q.shape)}")
    std = check_positive_float("std", std)
    diff = (mean_p - mean_q).flatten(start_dim=1)
    return diff.pow(2).sum(dim=1) / (2 * std**2)


class DiffusionSampler:
    """DDPM / DDIM(eta) sampler over ``num_steps`` evenly spaced steps of a schedule.

    Implements the generalised reverse step of DDIM (Song et al. 2021, eq. 12) with the
    variance of their eq. 16; see the module docstring.

    Args:
        schedule: the :class:`NoiseSchedule` the network was trained with.
        num_steps: number of reverse steps ``K`` (default: all ``T``, i.e. DDPM).
        eta: DDIM's stochasticity; 1 gives the DDPM posterior variance, 0 is deterministic.
        clip_x0: if set, clamp ``x0_hat`` to ``[-clip_x0, clip_x0]`` (images in [-1, 1]).
        rederive_eps: with ``clip_x0``, recompute ``eps`` from the clipped ``x0_hat`` (the
            default; DDPM's posterior mean and Glide do this) or keep the network's ``eps`` in
            the direction term (diffusers' ``DDIMScheduler.step`` with its default
            ``use_clipped_model_output=False``).

    The visited steps are ``T = tau_K > ... > tau_1 > tau_0 = 0``; step ``i`` (``i = 0..K-1``)
    goes from ``tau_{K-i}`` to ``tau_{K-i-1}``.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, schedule: NoiseSchedule, num_steps: int | None = None, eta: float = 1.0,
                 clip_x0: float | None = None, rederive_eps: bool = True):
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        K = schedule.T if num_steps is None else check_positive_int("num_steps", num_steps)
        if K > schedule.T:
            raise ValueError(f"num_steps must be <= T = {schedule.T}, got {K}")
        self.schedule = schedule
        self.eta = check_positive_float("eta", eta, allow_zero=True)
        self.clip_x0 = None if clip_x0 is None else check_positive_float("clip_x0", clip_x0)
        self.rederive_eps = bool(rederive_eps)
        taus = torch.linspace(schedule.T, 0, K + 1, dtype=torch.float64).round().long()
        self._set_grid(taus[:-1], taus[1:])

    def _set_grid(self, timesteps: torch.Tensor, prev_timesteps: torch.Tensor) -> None:
        """Store the visited steps (step ``i`` goes from ``timesteps[i]`` to
        ``prev_timesteps[i]``) and their DDIM eq. 16 stds ``sigma_t(eta)``."""
        self.timesteps = timesteps            # t for step i
        self.prev_timesteps = prev_timesteps  # t' for step i
        ab = self.schedule.alpha_bar[self.timesteps]
        abp = self.schedule.alpha_bar[self.prev_timesteps]
        self.sigmas = self.eta * ((1 - abp) / (1 - ab) * (1 - ab / abp)).clamp(min=0).sqrt()

    @classmethod
    def from_timesteps(cls, schedule: NoiseSchedule, timesteps, prev_timesteps, eta: float = 1.0,
                       clip_x0: float | None = None,
                       rederive_eps: bool = True) -> DiffusionSampler:
        """A sampler over an explicit grid: step ``i`` goes from ``timesteps[i]`` to
        ``prev_timesteps[i]`` with the step of DDIM eq. 12 and the std of eq. 16.

        Used to reproduce another library's timestep spacing exactly (diffusers'
        ``"leading"`` / ``"trailing"`` / ``"linspace"`` grids, see
        :func:`ctrl_teach.diffusers_bridge.sampler_from_scheduler`). ``prev_timesteps[i]`` need
        not equal ``timesteps[i + 1]`` (diffusers' DDIM always steps back by
        ``T // num_steps``); each step is still one exact Gaussian.

        Args:
            schedule: the :class:`NoiseSchedule`.
            timesteps: ``(K,)`` strictly decreasing integer steps in ``1..T``.
            prev_timesteps: ``(K,)`` integer steps with ``0 <= prev_timesteps[i] <=
                timesteps[i]``.
            eta: DDIM's stochasticity.
            clip_x0: optional clamp of ``x0_hat``.
            rederive_eps: see the class docstring.

        Returns:
            A :class:`DiffusionSampler`.

        Introduced in: Chapter 10 (CTRL on a real diffusion model).
        """
        t = torch.as_tensor(timesteps).long().reshape(-1)
        tp = torch.as_tensor(prev_timesteps).long().reshape(-1)
        if t.numel() < 1 or t.shape != tp.shape:
            raise ValueError(f"timesteps and prev_timesteps must be non-empty and of equal "
                             f"length, got {t.numel()} and {tp.numel()}")
        if (t < 1).any() or (t > schedule.T).any() or (t[1:] >= t[:-1]).any():
            raise ValueError(f"timesteps must strictly decrease within 1..{schedule.T}, "
                             f"got {t.tolist()}")
        if (tp < 0).any() or (tp > t).any():
            raise ValueError(f"prev_timesteps must satisfy 0 <= prev_timesteps[i] <= "
                             f"timesteps[i], got {tp.tolist()}")
        sampler = cls(schedule, t.numel(), eta, clip_x0, rederive_eps)
        sampler._set_grid(t, tp)
        return sampler

    @classmethod
    def ddpm(cls, schedule: NoiseSchedule, clip_x0: float | None = None) -> DiffusionSampler:
        """Ancestral DDPM sampling over all ``T`` steps (eta = 1)."""
        return cls(schedule, None, 1.0, clip_x0)

    @classmethod
    def ddim(cls, schedule: NoiseSchedule, num_steps: int, eta: float = 0.0,
             clip_x0: float | None = None) -> DiffusionSampler:
        """DDIM over ``num_steps`` evenly spaced steps with stochasticity ``eta``."""
        return cls(schedule, num_steps, eta, clip_x0)

    @property
    def num_steps(self) -> int:
        """Number of reverse steps ``K``."""
        return self.timesteps.numel()

    def step_from_eps(self, x_t: torch.Tensor, eps: torch.Tensor, i: int) -> GaussianStep:
        """The Gaussian of step ``i`` given a noise prediction ``eps`` (DDIM eq. 12).

        Args:
            x_t: ``(B, ...)`` states before step ``i``.
            eps: ``(B, ...)`` the noise prediction at ``x_t``.
            i: the step index ``0..K-1``.

        Returns:
            The step as a :class:`GaussianStep`.
        """
        t, tp = int(self.timesteps[i]), int(self.prev_timesteps[i])
        ab, abp = self.schedule.alpha_bar[t], self.schedule.alpha_bar[tp]
        sigma = float(self.sigmas[i])
        x0_hat = self.schedule.predict_x0(x_t, t, eps)
        if self.clip_x0 is not None:
            x0_hat = x0_hat.clamp(-self.clip_x0, self.clip_x0)
            if self.rederive_eps:
                eps = (x_t - ab.sqrt().item() * x0_hat) / (1 - ab).sqrt().item()
        direction = float((1 - abp - sigma**2).clamp(min=0).sqrt())
        mean = abp.sqrt().item() * x0_hat + direction * eps
        return GaussianStep(mean=mean, std=sigma, t=t, t_prev=tp, eps=eps, x0_hat=x0_hat)

    def step(self, model: torch.nn.Module, x_t: torch.Tensor, i: int, c=None) -> GaussianStep:
        """Evaluate ``model(x_t, t, c)`` and return step ``i`` as a :class:`GaussianStep`.

        Args:
            model: the eps-network.
            x_t: ``(B, ...)`` states before step ``i``.
            i: the step index ``0..K-1``.
            c: ``None`` or a long tensor ``(B,)`` of conditions (see :meth:`prepare_condition`).
        """
        t = torch.full((x_t.shape[0],), int(self.timesteps[i]), dtype=torch.long,
                       device=x_t.device)
        return self.step_from_eps(x_t, model(x_t, t, c), i)

    def prepare_condition(self, model: torch.nn.Module, c, n: int, device):
        """Validate the condition ``c`` for ``model``; ``None`` means the null label.

        Args:
            model: an eps-network with ``num_conditions`` (0: unconditional).
            c: ``None``, an int or ``(n,)`` integers in ``0..num_conditions - 1``.
            n: the batch size.
            device: where the labels go.

        Returns:
            ``None`` (unconditional model) or a long tensor ``(n,)``.
        """
        num = getattr(model, "num_conditions", 0)
        if num == 0:
            if c is not None:
                raise ValueError(f"c must be None: the pre-trained model is unconditional "
                                 f"(num_conditions=0), got {c!r}")
            return None
        if c is None:
            return torch.full((n,), num, dtype=torch.long, device=device)  # null label
        return check_labels("c", c, num, batch=n).to(device)

    def run_chain(
        self,
        step_fn: Callable[[torch.Tensor, int], tuple[GaussianStep, object]],
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        first_step: int = 0,
        wrap: Callable | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> ChainResult:
        """Run the reverse chain ``x <- mean_i(x) + sigma_i z_i`` for steps ``first_step..K-1``.

        The library's one reverse-chain loop (Ho et al. 2020, Alg. 2 with the step of DDIM
        eq. 12). The noise ``z_i ~ N(0, I)`` is drawn from ``generator`` before step ``i`` is
        evaluated, and only for steps with ``sigma_i > 0``, so every caller that uses the same
        generator sees the same noise stream (at initialisation the fine-tuned chain
        reproduces the pre-trained samples exactly).

        Args:
            step_fn: ``step_fn(x_t, i) -> (GaussianStep, extra)``; ``extra`` (anything, e.g.
                the control of a fine-tuned step) is collected in :attr:`ChainResult.extras`.
            x: ``(B, ...)`` the start state (``x_T`` for ``first_step = 0``).
            generator: a ``torch.Generator`` for the noise.
            first_step: the first step index to run (a value function starts mid-chain).
            wrap: optional ``wrap(i, one_step, x) -> (x', extra)`` that runs
                ``one_step(x) -> (x', extra)`` its own way (under ``no_grad``, or with
                gradient checkpointing, as CTRL's rollout does).
            return_trajectory: also keep every state.
            progress: show a tqdm bar.

        Returns:
            A :class:`ChainResult`.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        extras, states = [], [x] if return_trajectory else None
        steps = progress_bar(range(first_step, self.num_steps), desc="sampling",
                             enabled=progress)
        for i in steps:
            noise = (gaussian_noise(x.shape, generator, x.device, x.dtype)
                     if float(self.sigmas[i]) > 0 else None)

            def one_step(x_in, i=i, noise=noise):
                step, extra = step_fn(x_in, i)
                return step.sample(noise=noise), extra

            x, extra = one_step(x) if wrap is None else wrap(i, one_step, x)
            extras.append(extra)
            if return_trajectory:
                states.append(x)
        return ChainResult(x, extras, torch.stack(states) if return_trajectory else None)

    def sample(
        self,
        model: torch.nn.Module,
        n: int,
        *,
        c=None,
        x_T: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        control: Callable[[torch.Tensor, GaussianStep], torch.Tensor] | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ):
        """Draw ``n`` samples of ``p(x | c)`` by running the reverse chain from ``x_T ~ N(0, I)``.

        Args:
            model: an epsilon-network ``model(x, t, c)`` with attributes ``data_shape``
                and ``num_conditions`` (see :mod:`ctrl_teach.diffusion.networks`).
            n: number of samples.
            c: ``None``, an int or a long tensor ``(n,)`` of condition labels.
            x_T: optional starting noise ``(n, *data_shape)``.
            generator: a ``torch.Generator`` for reproducible noise.
            control: optional ``control(x_t, step) -> a`` in units of the step's noise; the
                step mean becomes ``mean + step.std * a`` (so the step's KL is ``|a|^2/2``).
            return_trajectory: also return every state, a tensor ``(K + 1, n, *data_shape)``
                from ``x_T`` to ``x_0``.
            progress: show a tqdm bar.

        Returns:
            ``x_0`` of shape ``(n, *data_shape)``, or ``(x_0, trajectory)``.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        n = check_positive_int("n", n)
        device = model_device(model)
        shape = (n, *model.data_shape)
        if x_T is None:
            x = gaussian_noise(shape, generator, device)
        else:
            x = check_tensor("x_T", x_T, shape=shape).to(device)
        c = self.prepare_condition(model, c, n, device)

        def step_fn(x_t, i):
            step = self.step(model, x_t, i, c)
            if control is not None and step.std > 0:
                step.mean = step.mean + step.std * control(x_t, step)
            return step, None

        with torch.no_grad():
            out = self.run_chain(step_fn, x, generator=generator,
                                 return_trajectory=return_trajectory, progress=progress)
        return (out.x, out.trajectory) if return_trajectory else out.x

    def __repr__(self) -> str:
        return f"DiffusionSampler(T={self.schedule.T}, num_steps={self.num_steps}, eta={self.eta})"
