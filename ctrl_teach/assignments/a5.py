"""Assignment 5 (Chapter 2): classifier guidance and classifier-free guidance, exactly.

The problem is the ring of the book's 2-D toy (condition ``c = 0``: eight Gaussians of std
0.2 on a circle of radius 2) with its *exact* denoiser (no training error), a 50-step DDPM
sampler, and a new soft label: component ``k`` of the ring carries ``y = 1`` with probability
``pi_k`` (:data:`LABEL_PROBS`). Because ``y`` depends on the point only through its component,
everything the chapter needs is closed form:

* the noisy classifier ``p_t(y = 1 | x_t) = sum_k gamma_k^t(x_t) pi_k`` (``gamma^t`` the
  responsibilities of the *noised* ring) is exact at every noise level
  (:class:`RingLabelClassifier`);
* the posterior ``p(x | y = 1)`` is the ring with weights ``w_k pi_k / Z``
  (:func:`posterior_mixture`), whose exact eps-network is the guided eps of scale 1, and whose
  component weights the guided samples must reproduce.

Questions (points):

* ``a5.q1`` (3) ``guided_eps(network, classifier, schedule, x, t, y, scale)``: the eps form
  ``eps - s sqrt(1 - abar_t) grad log p_phi(y | x_t, t)``;
* ``a5.q2`` (3) ``shift_coefficients(sampler)``: the coefficients of the gradient in the step
  mean, ``sigma_t^2`` (mean form) and the eps form's, per step;
* ``a5.q3`` (2) ``cfg_combine(eps_cond, eps_null, w)``: classifier-free guidance;
* ``a5.q4`` (3) ``guided_samples(form, scale, n, seed)``: samples of the guided sampler in
  either form, against the library and the exact posterior;
* ``a5.q5`` (2) ``answers``: what the measurements say (multiple choice).

Introduced in: Chapter 2 (Adding a control: guidance).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._core import CheckFailed, Question, choice_check, run_check
from ._grading import grader

__all__ = ["LABEL_PROBS", "T", "RingLabelClassifier", "make_problem", "ring_mixture",
           "posterior_mixture", "as_network", "component_frequencies", "mean_label_probability",
           "posterior_label_probability", "total_variation", "reference_samples",
           "check_guided_eps", "check_shift_coefficients", "check_cfg", "check_samples",
           "check_answers", "QUESTIONS", "grade"]

T = 50
RADIUS, STD, NUM_COMPONENTS = 2.0, 0.2, 8
# p(y = 1 | component k) = Phi(1.5 cos theta_k): "the right side of the ring", softly
LABEL_PROBS = tuple(round(0.5 * (1 + math.erf(1.5 * math.cos(2 * math.pi * k / 8) / 2**0.5)), 3)
                    for k in range(NUM_COMPONENTS))
TV_TOLERANCE = 0.05   # total variation of component frequencies, n = 4000 samples


def ring_mixture(weights=None):
    """The ring of the 2-D toy: eight Gaussians of std 0.2 on the circle of radius 2.

    Args:
        weights: optional ``(8,)`` component weights (default: equal).

    Returns:
        A :class:`~ctrl_teach.data.toys.GaussianMixture`.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    from ..data.toys import GaussianMixture

    angles = 2 * math.pi * torch.arange(NUM_COMPONENTS, dtype=torch.float64) / NUM_COMPONENTS
    means = RADIUS * torch.stack([angles.cos(), angles.sin()], 1)
    w = torch.ones(NUM_COMPONENTS) if weights is None else torch.as_tensor(weights)
    return GaussianMixture(w, means, torch.full((NUM_COMPONENTS,), STD))


def posterior_mixture(y: int = 1, label_probs=LABEL_PROBS):
    """The exact posterior ``p(x | y)``: the ring with weights ``pi_k`` (``y = 1``) or
    ``1 - pi_k`` (``y = 0``), normalised (Bayes' rule, eq. ``eq-guidance-target``).

    Args:
        y: the requested label, 0 or 1.
        label_probs: ``pi_k = p(y = 1 | component k)``.

    Returns:
        A :class:`~ctrl_teach.data.toys.GaussianMixture`.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    pi = torch.as_tensor(label_probs, dtype=torch.float32)
    return ring_mixture(pi if y == 1 else 1 - pi)


class RingLabelClassifier(nn.Module):
    """The exact noisy classifier of the soft ring label (eq. ``eq-noisy-classifier``):
    ``p_t(y = 1 | x_t) = sum_k gamma_k^t(x_t) pi_k``, ``gamma^t`` the responsibilities of
    the ring noised to level ``t``. ``clean=True`` gives the mistake of the chapter: the clean
    classifier ``p(y | x)`` evaluated at ``x_t`` whatever ``t`` is.

    Args:
        schedule: the forward process.
        label_probs: ``pi_k``.
        clean: ignore ``t`` (use ``t = 0``).

    Forward: ``(x_t, t, c=None) -> (N, 2)`` log-probabilities.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def __init__(self, schedule, label_probs=LABEL_PROBS, clean: bool = False):
        super().__init__()
        self.schedule, self.clean = schedule, bool(clean)
        pi = torch.as_tensor(label_probs, dtype=torch.float64)
        self.register_buffer("log_pi", torch.stack([(1 - pi).log(), pi.log()], 1))  # (K, 2)
        self.mixture = ring_mixture()
        self.num_labels, self.data_shape = 2, (2,)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c=None) -> torch.Tensor:
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        out = torch.empty(x.shape[0], 2, dtype=x.dtype, device=x.device)
        for tt in torch.unique(t):
            rows = t == tt
            a, b = (float(v) for v in self.schedule.signal_and_noise(0 if self.clean
                                                                     else int(tt)))
            log_gamma = torch.log_softmax(
                self.mixture.noised(a, b)._component_log_probs(x[rows].double()), dim=1)
            out[rows] = torch.logsumexp(log_gamma[:, :, None] + self.log_pi[None], 1).to(x.dtype)
        return out


def make_problem(num_steps: int | None = None, eta: float = 1.0):
    """The assignment's problem: schedule, exact denoiser of the ring, sampler, classifier.

    Args:
        num_steps: sampler steps (default: all ``T = 50``, DDPM).
        eta: the sampler's stochasticity (1: DDPM variance, 0: DDIM).

    Returns:
        ``(schedule, network, sampler, classifier)``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    from ..diffusion import DiffusionSampler, ExactMixtureDenoiser, NoiseSchedule

    schedule = NoiseSchedule.cosine(T, max_beta=0.8)
    network = ExactMixtureDenoiser(ring_mixture(), schedule)
    sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=eta)
    return schedule, network, sampler, RingLabelClassifier(schedule)


class _FunctionNetwork(nn.Module):
    def __init__(self, fn, data_shape):
        super().__init__()
        self.fn, self.data_shape, self.num_conditions = fn, tuple(data_shape), 0

    def forward(self, x, t, c=None):
        return self.fn(x, t)


def as_network(fn, data_shape=(2,)) -> nn.Module:
    """Wrap ``fn(x, t) -> eps`` as an eps-network the sampler accepts
    (``sampler.sample(as_network(fn), n, generator=g)``).

    Args:
        fn: the noise prediction as a function of ``(x_t, t)``.
        data_shape: the shape of one sample.

    Returns:
        An ``nn.Module`` with ``data_shape`` and ``num_conditions = 0``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    return _FunctionNetwork(fn, data_shape)


def component_frequencies(x: torch.Tensor) -> torch.Tensor:
    """The fraction of the samples nearest to each ring component (the components are 38
    standard deviations apart, so the nearest one is the one that drew the point).

    Args:
        x: ``(n, 2)`` samples.

    Returns:
        ``(8,)`` frequencies summing to one.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    means = ring_mixture().means.to(x)
    nearest = torch.cdist(x, means).argmin(1)
    return torch.bincount(nearest, minlength=NUM_COMPONENTS).double() / x.shape[0]


def mean_label_probability(x: torch.Tensor) -> float:
    """``E[p(y = 1 | x)]`` over the samples, with ``p(y = 1 | x) = pi_k`` of the nearest
    component: the probability that the label of a sample is 1. For the exact posterior it is
    :func:`posterior_label_probability`.

    Args:
        x: ``(n, 2)`` samples.

    Returns:
        A float in ``[0, 1]``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    pi = torch.tensor(LABEL_PROBS, dtype=torch.float64)
    return float((component_frequencies(x) * pi).sum())


def posterior_label_probability() -> float:
    """``E[p(y = 1 | x)]`` under the exact posterior: ``sum_k pi_k^2 / sum_k pi_k``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    pi = torch.tensor(LABEL_PROBS, dtype=torch.float64)
    return float((pi * pi).sum() / pi.sum())


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """``(1/2) sum_k |p_k - q_k|`` between two discrete laws.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    return 0.5 * float((torch.as_tensor(p).double() - torch.as_tensor(q).double()).abs().sum())


def _tensor(out, what):
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{what} must return a torch.Tensor, got {type(out).__name__}")
    return out


def _points(g, n):
    angle = 2 * math.pi * torch.rand(n, generator=g)
    radius = 2.5 * torch.rand(n, generator=g)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], 1)


# ---------------------------------------------------------------------------------------
# q1: guided_eps
# ---------------------------------------------------------------------------------------
def check_guided_eps(guided_eps, *, hidden: bool = False, verbose: bool = True):
    """Check ``guided_eps(network, classifier, schedule, x, t, y, scale)`` (eq. ``eq-cg-eps``)
    against :class:`~ctrl_teach.baselines.ClassifierGuided` and, at ``scale = 1``, against the
    exact eps-network of the posterior (:func:`posterior_mixture`).

    Args:
        guided_eps: the student's function.
        hidden: use the grader's points, noise levels, labels and scales.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (2 when the
        library matches but the exact posterior is not reproduced, which cannot happen for a
        correct formula).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def body():
        from ..baselines import ClassifierGuided
        from ..diffusion import ExactMixtureDenoiser

        schedule, network, _, clf = make_problem()
        g = torch.Generator().manual_seed(515 if hidden else 5)
        steps = (3, 17, 33, 48) if hidden else (1, 10, 25, 40, 50)
        cases = [(0, 0.7), (1, 2.5), (1, 1.0)] if hidden else [(1, 0.5), (1, 3.0), (1, 1.0)]
        for y, scale in cases:
            ref_net = ClassifierGuided(network, clf, schedule, y=y, scale=scale)
            for t_int in steps:
                x = _points(g, 64)
                t = torch.full((64,), t_int, dtype=torch.long)
                want = ref_net(x, t)
                got = _tensor(guided_eps(network, clf, schedule, x.clone(), t, y, scale),
                              "guided_eps").detach()
                if got.shape != want.shape:
                    raise CheckFailed(f"returned shape {tuple(got.shape)}, expected "
                                      f"{tuple(want.shape)} (one eps per point)")
                if torch.allclose(got, want, atol=1e-5, rtol=1e-4):
                    continue
                eps = network(x, t)
                diff, grad_dir = got - eps, want - eps
                _, b = schedule.signal_and_noise(t_int)
                b = float(b)
                if torch.allclose(diff, -grad_dir, atol=1e-5):
                    raise CheckFailed("the guidance term has the wrong sign: eps_hat = eps - s "
                                      "sqrt(1 - abar_t) grad log p(y | x_t) (minus: eps points "
                                      "*away* from the data, the score towards it)")
                if b > 0 and torch.allclose(diff, grad_dir / b, atol=1e-5):
                    raise CheckFailed("missing the factor sqrt(1 - abar_t): eps = -sqrt(1 - "
                                      "abar_t) x score, so the classifier's score enters eps "
                                      "multiplied by it")
                if torch.allclose(diff, grad_dir * b, atol=1e-5):
                    raise CheckFailed("you multiplied by 1 - abar_t: the factor is its square "
                                      "root, schedule.signal_and_noise(t)[1]")
                if torch.allclose(got, eps, atol=1e-6):
                    raise CheckFailed("your eps ignores the classifier: add the guidance term")
                raise CheckFailed(
                    f"differs from ClassifierGuided at t = {t_int}, y = {y}, scale = {scale} "
                    f"by up to {float((got - want).abs().max()):.3g}: take the gradient of "
                    "log p(y | x_t, t) = classifier(x, t)[:, y] with respect to x")
        # the exact answer: at s = 1 the guided eps is the posterior's exact eps-network
        y = 0 if hidden else 1
        exact = ExactMixtureDenoiser(posterior_mixture(y), schedule)
        for t_int in steps:
            x = _points(g, 64)
            t = torch.full((64,), t_int, dtype=torch.long)
            got = guided_eps(network, clf, schedule, x, t, y, 1.0).detach()
            if not torch.allclose(got, exact(x, t), atol=1e-4):
                raise CheckFailed("matches the library, but at s = 1 it is not the posterior's "
                                  "exact eps-network: report this to your instructor",
                                  partial=2 / 3)
        return (f"matches ClassifierGuided on {len(cases) * len(steps)} (y, s, t) cases; at s = 1 "
                "it is the exact eps-network of the posterior")

    return run_check("a5.q1", "guided_eps", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# q2: shift_coefficients
# ---------------------------------------------------------------------------------------
class _ZeroEps(nn.Module):
    data_shape, num_conditions = (1,), 0

    def forward(self, x, t, c=None):
        return torch.zeros_like(x)


class _LinearLogLik(nn.Module):
    """``log p(y | x) = x`` for both labels: its gradient is 1 everywhere."""

    num_labels = 2

    def forward(self, x, t, c=None):
        return x.expand(x.shape[0], 2)


def reference_shift_coefficients(sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """The coefficients of ``s grad log p`` in the step mean, *measured* on the library's
    samplers: the mean form (:func:`~ctrl_teach.baselines.classifier_guidance_control`) and the
    eps form (:class:`~ctrl_teach.baselines.ClassifierGuided`), with a classifier whose
    log-likelihood gradient is 1.

    Args:
        sampler: a :class:`~ctrl_teach.diffusion.DiffusionSampler` (without ``clip_x0``).

    Returns:
        ``(mean_form, eps_form)``, two float64 tensors of shape ``(num_steps,)``.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    from ..baselines import ClassifierGuided, classifier_guidance_control

    net, clf = _ZeroEps(), _LinearLogLik()
    guided = ClassifierGuided(net, clf, sampler.schedule, y=1, scale=1.0)
    control = classifier_guidance_control(clf, y=1, scale=1.0)
    x = torch.zeros(1, 1, dtype=torch.float64)
    mean_form, eps_form = [], []
    for i in range(sampler.num_steps):
        t = torch.full((1,), int(sampler.timesteps[i]), dtype=torch.long)
        plain = sampler.step_from_eps(x, net(x, t), i)
        shifted = sampler.step_from_eps(x, guided(x, t), i)
        eps_form.append(float(shifted.mean - plain.mean))
        mean_form.append(plain.std * float(control(x, plain)) if plain.std > 0 else 0.0)
    return (torch.tensor(mean_form, dtype=torch.float64),
            torch.tensor(eps_form, dtype=torch.float64))


def check_shift_coefficients(shift_coefficients, *, hidden: bool = False,
                             verbose: bool = True):
    """Check ``shift_coefficients(sampler) -> (mean_form, eps_form)`` against the coefficients
    measured on the library's guided samplers (:func:`reference_shift_coefficients`) and, for
    the DDPM sampler, the closed forms ``beta_t (1 - abar_{t-1}) / (1 - abar_t)`` and
    ``beta_t / sqrt(alpha_t)`` (Chapter 2, "Classifier guidance").

    Args:
        shift_coefficients: the student's function.
        hidden: use the grader's samplers (other step counts and ``eta``).
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (1.5 when only
        the mean form is right).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def body():
        from ..diffusion import DiffusionSampler

        schedule, *_ = make_problem()
        configs = [(None, 1.0), (12, 1.0), (20, 0.0), (7, 0.5)] if hidden else \
            [(None, 1.0), (10, 1.0), (10, 0.0)]
        for num_steps, eta in configs:
            sampler = DiffusionSampler(schedule, num_steps=num_steps, eta=eta)
            k = sampler.num_steps
            out = shift_coefficients(sampler)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise CheckFailed("must return a pair (mean_form, eps_form)")
            mean_form, eps_form = (torch.as_tensor(o, dtype=torch.float64).reshape(-1)
                                   for o in out)
            if mean_form.numel() != k or eps_form.numel() != k:
                raise CheckFailed(f"expected two tensors of length num_steps = {k}, got "
                                  f"{mean_form.numel()} and {eps_form.numel()}")
            ref_mean, ref_eps = reference_shift_coefficients(sampler)
            where = f"(num_steps = {k}, eta = {eta:g})"
            if not torch.allclose(mean_form, ref_mean, rtol=1e-4, atol=1e-7):
                if torch.allclose(mean_form, ref_mean.sqrt(), rtol=1e-4, atol=1e-7):
                    raise CheckFailed(f"mean form {where}: you returned sigma_t; the mean "
                                      "moves by s sigma_t^2 grad (a = s sigma_t grad in noise "
                                      "units, times sigma_t)")
                raise CheckFailed(f"mean form {where}: the coefficient is the step's variance "
                                  "sigma_t^2 = float(sampler.sigmas[i])**2")
            if not torch.allclose(eps_form, ref_eps, rtol=1e-4, atol=1e-7):
                raise CheckFailed(
                    f"eps form {where}: up to {float((eps_form - ref_eps).abs().max()):.3g} off."
                    " The step mean is sqrt(abar_t') x0_hat + c_t eps with x0_hat = (x - b_t "
                    "eps) / a_t and c_t = sqrt(1 - abar_t' - sigma_t^2); shifting eps by "
                    "-s b_t grad moves it by s b_t (sqrt(abar_t') b_t / a_t - c_t) grad "
                    "(or measure it with sampler.step_from_eps)", partial=0.5)
        # the exact answer for DDPM: posterior variance against beta_t / sqrt(alpha_t)
        sampler = DiffusionSampler(schedule)
        mean_form, eps_form = (torch.as_tensor(o, dtype=torch.float64)
                               for o in shift_coefficients(sampler))
        t = sampler.timesteps
        beta = 1 - schedule.alpha_bar[t] / schedule.alpha_bar[t - 1]
        tilde = beta * (1 - schedule.alpha_bar[t - 1]) / (1 - schedule.alpha_bar[t])
        if not (torch.allclose(mean_form, tilde, rtol=1e-6)
                and torch.allclose(eps_form, beta / (1 - beta).sqrt(), rtol=1e-6)):
            raise CheckFailed("right on the library's samplers but not the DDPM closed forms: "
                              "report this to your instructor")
        ratio = float((eps_form[:-1] / mean_form[:-1]).min())
        return (f"both coefficients right on {len(configs)} samplers; DDPM: posterior variance "
                f"and beta_t / sqrt(alpha_t), the eps form at least {ratio:.2f}x larger")

    return run_check("a5.q2", "shift_coefficients", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# q3: cfg_combine
# ---------------------------------------------------------------------------------------
def check_cfg(cfg_combine, *, hidden: bool = False, verbose: bool = True):
    """Check ``cfg_combine(eps_cond, eps_null, w)`` (eq. ``eq-cfg``) against
    :func:`~ctrl_teach.baselines.cfg_eps`, and the identity of exercise ``ex-guidance-cfg``
    with exact networks: ``cfg - eps_cond = -w sqrt(1 - abar_t) grad log p_t(y | x_t)``.

    Args:
        cfg_combine: the student's function.
        hidden: use the grader's inputs and weights.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 2 points.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def body():
        from ..baselines import cfg_eps
        from ..baselines._common import grad_wrt, pick_log_prob
        from ..diffusion import ExactMixtureDenoiser

        g = torch.Generator().manual_seed(808 if hidden else 8)
        weights = (2.0, 0.3, 5.0) if hidden else (0.5, 3.0, 0.0)
        for w in weights:
            cond, null = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
            got = _tensor(cfg_combine(cond.clone(), null.clone(), w), "cfg_combine")
            want = cfg_eps(cond, null, w)
            if got.shape == want.shape and torch.allclose(got, want, atol=1e-6):
                continue
            if torch.allclose(got, (1 + w) * null - w * cond, atol=1e-6) and w > 0:
                raise CheckFailed("the two predictions are swapped: (1 + w) eps_cond - w "
                                  "eps_null extrapolates *away* from the unconditional model")
            if torch.allclose(got, w * cond - (w - 1) * null, atol=1e-6) and w != 1:
                raise CheckFailed("that is Diffusers' convention with guidance_scale = w; the "
                                  "book's weight w means (1 + w) eps_cond - w eps_null")
            raise CheckFailed(f"w = {w}: expected (1 + w) eps_cond - w eps_null")
        schedule, network, _, clf = make_problem()
        y = 0 if hidden else 1
        cond_net = ExactMixtureDenoiser(posterior_mixture(y), schedule)
        worst = 0.0
        for t_int in ((7, 29, 44) if hidden else (5, 20, 40)):
            x = _points(g, 64)
            t = torch.full((64,), t_int, dtype=torch.long)
            w = max(weights)
            got = cfg_combine(cond_net(x, t), network(x, t), w)
            _, grad = grad_wrt(x, lambda z, t=t: pick_log_prob(clf(z, t), torch.full((64,), y)))
            b = float(schedule.signal_and_noise(t_int)[1])
            want = cond_net(x, t) - w * b * grad
            worst = max(worst, float((got - want).abs().max()))
        if worst > 1e-4:
            raise CheckFailed(f"matches cfg_eps but not the implicit-classifier identity "
                              f"(off by {worst:.2g}): report this to your instructor")
        return ("matches cfg_eps; with exact networks cfg - eps_cond = -w b_t grad log "
                f"p_t(y | x_t), the exact noisy classifier (max error {worst:.1e})")

    return run_check("a5.q3", "cfg_combine", 2, body, verbose)


# ---------------------------------------------------------------------------------------
# q4: guided_samples
# ---------------------------------------------------------------------------------------
def reference_samples(form: str, scale: float, n: int, seed: int, y: int = 1) -> torch.Tensor:
    """Guided samples of the library's samplers, ``form`` ``"eps"``
    (:class:`~ctrl_teach.baselines.ClassifierGuided`) or ``"mean"``
    (:func:`~ctrl_teach.baselines.classifier_guidance_control`).

    Args:
        form: ``"eps"`` or ``"mean"``.
        scale: the guidance scale ``s``.
        n: number of samples.
        seed: seeds ``torch.Generator().manual_seed(seed)``.
        y: the requested label.

    Returns:
        ``(n, 2)`` samples.

    Introduced in: Chapter 2 (Adding a control: guidance).
    """
    from ..baselines import ClassifierGuided, classifier_guidance_control

    schedule, network, sampler, clf = make_problem()
    g = torch.Generator().manual_seed(seed)
    if form == "eps":
        return sampler.sample(ClassifierGuided(network, clf, schedule, y=y, scale=scale), n,
                              generator=g)
    return sampler.sample(network, n, generator=g,
                          control=classifier_guidance_control(clf, y=y, scale=scale))


def check_samples(guided_samples, *, hidden: bool = False, verbose: bool = True):
    """Check ``guided_samples(form, scale, n, seed)``: draw for draw against the library's
    guided samplers (:func:`reference_samples`), and, for the eps form at ``s = 1``, the
    component frequencies against the exact posterior weights ``pi_k / sum pi`` (total
    variation below :data:`TV_TOLERANCE`).

    Args:
        guided_samples: the student's function.
        hidden: use the grader's seeds and scales.
        verbose: print the result line.

    Returns:
        A :class:`~ctrl_teach.assignments._core.CheckResult` out of 3 points (1.5 for the eps
        form alone).

    Introduced in: Chapter 2 (Adding a control: guidance).
    """

    def body():
        n = 4000
        seed = 4242 if hidden else 3
        x = _tensor(guided_samples("eps", 1.0, n, seed), "guided_samples")
        if x.shape != (n, 2):
            raise CheckFailed(f"returned shape {tuple(x.shape)}, expected ({n}, 2)")
        ref = reference_samples("eps", 1.0, n, seed)
        if not torch.allclose(x, ref, atol=1e-3):
            raise CheckFailed(
                "eps form, s = 1: not the library's samples for the same seed. Use "
                "sampler.sample(a5.as_network(lambda x, t: guided_eps(network, classifier, "
                "schedule, x, t, 1, scale)), n, generator=torch.Generator().manual_seed(seed))")
        post = posterior_mixture(1).weights.double()
        tv = total_variation(component_frequencies(x), post)
        if tv > TV_TOLERANCE:
            raise CheckFailed(f"eps form, s = 1: component frequencies {tv:.3f} away from the "
                              f"exact posterior weights (tolerance {TV_TOLERANCE})")
        for scale in ((1.0, 2.5) if hidden else (1.0,)):
            xm = _tensor(guided_samples("mean", scale, 1000, seed + 1), "guided_samples")
            if xm.shape != (1000, 2) or not torch.allclose(
                    xm, reference_samples("mean", scale, 1000, seed + 1), atol=1e-3):
                raise CheckFailed(
                    f"the eps form is right; the mean form (s = {scale}) is not the library's: "
                    "pass control=lambda x, step: scale * step.std * grad log p(y | x_t, "
                    "step.t) to sampler.sample", partial=0.5)
        if hidden:
            x2 = guided_samples("eps", 2.0, 1000, seed + 2)
            if not torch.allclose(x2, reference_samples("eps", 2.0, 1000, seed + 2), atol=1e-3):
                raise CheckFailed("the eps form at s = 2 is not the library's: the scale "
                                  "multiplies the guidance term", partial=0.5)
        return (f"both forms match the library draw for draw; eps form at s = 1 is {tv:.3f} "
                f"(total variation) from the exact posterior weights")

    return run_check("a5.q4", "guided_samples", 3, body, verbose)


# ---------------------------------------------------------------------------------------
# q5: answers
# ---------------------------------------------------------------------------------------
_ANSWERS = {
    "pushes_harder": ("eps", "compare the two coefficients of q2 at every noisy step"),
    "mean_form_at_s1": ("under", "compare the mean form's posterior mass with the eps form's: "
                                 "does it move less mass than the posterior, the same, or more?"),
    "clean_at_noisy": ("over", "the clean classifier at x_t has sharp gradients at high noise; "
                               "compare its frequencies with the posterior's"),
    "ddim_mean_form": ("nothing", "what is sigma_t^2 for a DDIM sampler (eta = 0)?"),
}

check_answers = choice_check("a5.q5", 2, _ANSWERS, "Chapter 2 (Adding a control: guidance).")


QUESTIONS = [
    Question("a5.q1", "guided_eps", 3, check_guided_eps, "classifier guidance, eps form"),
    Question("a5.q2", "shift_coefficients", 3, check_shift_coefficients,
             "mean form against eps form: the coefficients"),
    Question("a5.q3", "cfg_combine", 2, check_cfg, "classifier-free guidance"),
    Question("a5.q4", "guided_samples", 3, check_samples, "guided samples on the ring"),
    Question("a5.q5", "answers", 2, check_answers, "reading the measurements"),
]

grade = grader(QUESTIONS)  # grade(namespace, hidden=True, verbose=True)
