"""Conditional 2-D toy distributions with exact, cheap, seeded samplers.

Two families, each a conditional law p(x | c) over points x in R^2:

* ``"gmm"``: c = 0 "ring" (8 Gaussians on a circle), c = 1 "grid" (3 x 3 Gaussians).
  Both are exact Gaussian mixtures, so log-densities, scores and the noised laws used by a
  diffusion model are available in closed form (:class:`GaussianMixture`).
* ``"shapes"``: c = 0 "moons", c = 1 "circles" (scikit-learn generators, fixed affine map).
  No closed-form density; used to show that nothing in CTRL needs one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .._checks import (
    check_choice,
    check_labels,
    check_nonnegative_int,
    check_positive_float,
    check_tensor,
)

__all__ = ["GaussianMixture", "ConditionalToy", "load_toy", "TOY_NAMES"]

TOY_NAMES = ("gmm", "shapes")


class GaussianMixture:
    r"""Isotropic Gaussian mixture p(x) = \sum_k w_k N(x; \mu_k, \sigma_k^2 I), float32.

    Args:
        weights: (K,) non-negative mixture weights with a positive sum (normalised here).
        means: (K, d) component means \mu_k.
        stds: (K,) positive component standard deviations \sigma_k.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    def __init__(self, weights, means, stds):
        weights = torch.as_tensor(weights, dtype=torch.float32)
        means = torch.as_tensor(means, dtype=torch.float32)
        stds = torch.as_tensor(stds, dtype=torch.float32)
        means = check_tensor("means", means, ndim=2)
        k = means.shape[0]
        if k < 1:
            raise ValueError("means must hold at least one component, got shape (0, d)")
        weights = check_tensor("weights", weights, shape=(k,))
        stds = check_tensor("stds", stds, shape=(k,))
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        if (stds <= 0).any():
            raise ValueError("stds must be strictly positive")
        self.weights = weights / weights.sum()
        self.means = means
        self.stds = stds

    @property
    def dim(self) -> int:
        """Dimension d of the points."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """Number of components K."""
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture(num_components={self.num_components}, dim={self.dim})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Draw k ~ Categorical(w), then x = \mu_k + \sigma_k \varepsilon, \varepsilon ~ N(0, I).

        Args:
            n: number of samples (>= 0).
            generator: optional CPU ``torch.Generator`` for reproducibility.

        Returns:
            (n, d) float32 tensor.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        n = check_nonnegative_int("n", n)
        u = torch.rand(n, generator=generator)
        comp = torch.searchsorted(torch.cumsum(self.weights, 0), u, right=True)
        comp = comp.clamp_max(self.num_components - 1)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.means[comp] + self.stds[comp, None] * noise

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(n, K) matrix of log w_k + log N(x; mu_k, sigma_k^2 I)."""
        x = check_tensor("x", x, shape=(None, self.dim))
        means = self.means.to(x)
        var = self.stds.to(x) ** 2
        sq = torch.cdist(x, means) ** 2
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(self.weights.to(x)) + log_norm - sq / (2 * var)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r"""log p(x) = \log \sum_k w_k N(x; \mu_k, \sigma_k^2 I) (stable logsumexp).

        Args:
            x: (n, d) points.

        Returns:
            (n,) log-densities.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        return torch.logsumexp(self._component_log_probs(x), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        r"""Posterior component probabilities \gamma_k(x) = w_k N_k(x) / \sum_j w_j N_j(x).

        Args:
            x: (n, d) points.

        Returns:
            (n, K) rows summing to 1.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        return torch.softmax(self._component_log_probs(x), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        r"""Score \nabla_x \log p(x) = \sum_k \gamma_k(x) (\mu_k - x) / \sigma_k^2.

        Args:
            x: (n, d) points.

        Returns:
            (n, d) score vectors.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        gamma = self.responsibilities(x)
        var = self.stds.to(x) ** 2
        diff = self.means.to(x)[None, :, :] - x[:, None, :]
        return ((gamma / var)[:, :, None] * diff).sum(dim=1)

    def noised(self, a: float, s: float) -> GaussianMixture:
        r"""Law of a X + s \varepsilon for X ~ p, \varepsilon ~ N(0, I) independent.

        Each component maps to N(a \mu_k, (a^2 \sigma_k^2 + s^2) I) with the same weight, which
        gives exact noisy marginals p_t (a = \sqrt{\bar\alpha_t}, s = \sqrt{1 - \bar\alpha_t}).

        Args:
            a: finite signal scale.
            s: noise standard deviation (>= 0); a and s may not both be 0.

        Returns:
            A new :class:`GaussianMixture`.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        try:
            a = float(a)
        except (TypeError, ValueError):
            raise ValueError(f"a must be a finite number, got {a!r}") from None
        if not math.isfinite(a):
            raise ValueError(f"a must be a finite number, got {a!r}")
        s = check_positive_float("s", s, allow_zero=True)
        if a == 0 and s == 0:
            raise ValueError("a and s must not both be 0 (the result would be a point mass)")
        stds = torch.sqrt(a**2 * self.stds**2 + s**2)
        return GaussianMixture(self.weights, a * self.means, stds)


Sampler = Callable[[int, torch.Generator | None], torch.Tensor]


class ConditionalToy:
    r"""A conditional law p(x | c) over 2-D points, c in {0, ..., num_conditions - 1}.

    Args:
        name: family name, e.g. ``"gmm"``.
        condition_names: one human-readable name per condition.
        samplers: one function ``f(n, generator) -> (n, 2)`` per condition.
        mixtures: optional exact :class:`GaussianMixture` per condition (or None).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """

    dim = 2

    def __init__(
        self,
        name: str,
        condition_names: Sequence[str],
        samplers: Sequence[Sampler],
        mixtures: Sequence[GaussianMixture | None] | None = None,
    ):
        if len(condition_names) != len(samplers) or not samplers:
            raise ValueError("samplers must be non-empty with one entry per condition name")
        if mixtures is not None and len(mixtures) != len(samplers):
            raise ValueError("mixtures must have one entry per condition")
        self.name = name
        self.condition_names = list(condition_names)
        self.num_conditions = len(self.condition_names)
        self._samplers = list(samplers)
        self._mixtures = list(mixtures) if mixtures is not None else [None] * len(samplers)

    def __repr__(self) -> str:
        return f"ConditionalToy({self.name!r}, conditions={self.condition_names})"

    def sample(self, n: int, c, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Draw x_i ~ p(x | c_i) independently.

        Args:
            n: number of samples (>= 0).
            c: an int condition (shared by all samples) or a long tensor of shape (n,).
            generator: optional CPU ``torch.Generator``; the same seed gives the same points.

        Returns:
            (n, 2) float32 tensor; row i follows the condition c_i.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        n = check_nonnegative_int("n", n)
        c = check_labels("c", c, self.num_conditions, batch=n)
        x = torch.empty(n, self.dim)
        for k, sampler in enumerate(self._samplers):
            idx = (c == k).nonzero().squeeze(1)
            if idx.numel():
                x[idx] = sampler(idx.numel(), generator)
        return x

    def sample_joint(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Draw (x, c) ~ p(x | c) Uniform(c).

        Args:
            n: number of pairs (>= 0).
            generator: optional CPU ``torch.Generator``.

        Returns:
            x: (n, 2) points; c: (n,) long conditions.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        n = check_nonnegative_int("n", n)
        c = torch.randint(0, self.num_conditions, (n,), generator=generator)
        return self.sample(n, c, generator=generator), c

    def mixture(self, c: int) -> GaussianMixture | None:
        """The exact density p(x | c) when it is a Gaussian mixture, else ``None``.

        Args:
            c: condition index.

        Returns:
            :class:`GaussianMixture` or ``None``.

        Introduced in: Chapter 1 (Diffusion models as stochastic processes).
        """
        if isinstance(c, bool) or not isinstance(c, int):
            raise ValueError(f"c must be an int condition index, got {c!r}")
        check_labels("c", c, self.num_conditions)
        return self._mixtures[c]


def _ring(num: int = 8, radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    angles = 2 * math.pi * torch.arange(num) / num
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.ones(num), means, torch.full((num,), std))


def _grid(coords=(-1.5, 0.0, 1.5), std: float = 0.2) -> GaussianMixture:
    g = torch.tensor(coords)
    means = torch.cartesian_prod(g, g)
    return GaussianMixture(torch.ones(len(means)), means, torch.full((len(means),), std))


def _sklearn_sampler(kind: str, shift: Sequence[float], scale: float) -> Sampler:
    """Wrap make_moons / make_circles with the fixed affine map x -> scale * (x - shift)."""

    def sample(n: int, generator: torch.Generator | None) -> torch.Tensor:
        from sklearn.datasets import make_circles, make_moons

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if kind == "moons":
            pts, _ = make_moons(n_samples=n, noise=0.08, random_state=seed)
        else:
            pts, _ = make_circles(n_samples=n, noise=0.05, factor=0.5, random_state=seed)
        pts = torch.as_tensor(pts, dtype=torch.float32)
        return scale * (pts - torch.tensor(shift, dtype=torch.float32))

    return sample


def load_toy(name: str) -> ConditionalToy:
    r"""Build a conditional toy by name.

    * ``"gmm"``: c=0 "ring": 8 equal-weight N(\mu_k, 0.2^2 I), \mu_k = 2(\cos, \sin)(2\pi k/8);
      c=1 "grid": 9 equal-weight N(\mu, 0.2^2 I), \mu in {-1.5, 0, 1.5}^2.
    * ``"shapes"``: c=0 "moons" = 1.5 (m - (0.5, 0.25)) with m ~ make_moons(noise=0.08);
      c=1 "circles" = 2 z with z ~ make_circles(factor=0.5, noise=0.05) (radii 2 and 1).
      The maps are fixed constants, chosen so both shapes are roughly centred with scale ~1.

    Args:
        name: one of :data:`TOY_NAMES`.

    Returns:
        :class:`ConditionalToy`.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    check_choice("name", name, TOY_NAMES)
    if name == "gmm":
        mixtures = [_ring(), _grid()]
        return ConditionalToy("gmm", ["ring", "grid"], [m.sample for m in mixtures], mixtures)
    samplers = [
        _sklearn_sampler("moons", shift=(0.5, 0.25), scale=1.5),
        _sklearn_sampler("circles", shift=(0.0, 0.0), scale=2.0),
    ]
    return ConditionalToy("shapes", ["moons", "circles"], samplers)
