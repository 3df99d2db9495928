"""Sample-based distances between distributions: energy distance, MMD and Fréchet distance.

All three take two samples, each of shape (N, ...); anything after the first axis is
flattened, so images (N, 1, H, W) can be passed directly. Computations run in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_positive_float, check_positive_int, check_tensor

__all__ = ["energy_distance", "mmd_rbf", "frechet_distance"]

_CHUNK = 1024  # rows per block of a pairwise matrix, to bound memory


def _as_samples(x_name: str, x, y_name: str, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two samples, flatten them to (n, d) and (m, d) float64 with n, m >= 2."""
    x = check_tensor(x_name, x).detach()
    y = check_tensor(y_name, y).detach()
    for name, t in ((x_name, x), (y_name, y)):
        if t.ndim < 1 or t.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, ...) with N >= 2, got {tuple(t.shape)}")
    x = x.reshape(len(x), -1).double()
    y = y.reshape(len(y), -1).double().to(x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of features, got "
            f"{x.shape[1]} and {y.shape[1]}"
        )
    return x, y


def _subsample(x: torch.Tensor, max_samples: int, generator) -> torch.Tensor:
    """At most max_samples rows of x, drawn without replacement."""
    if len(x) <= max_samples:
        return x
    idx = torch.randperm(len(x), generator=generator)[:max_samples]
    return x[idx.to(x.device)]


def _pair_sum(a: torch.Tensor, b: torch.Tensor, fn) -> torch.Tensor:
    """sum_{i,j} fn(|a_i - b_j|), computed in row blocks."""
    total = a.new_zeros(())
    for start in range(0, len(a), _CHUNK):
        total = total + fn(torch.cdist(a[start : start + _CHUNK], b)).sum()
    return total


def _pair_mean(a: torch.Tensor, b: torch.Tensor, fn, same: bool) -> torch.Tensor:
    """Mean of fn(|a_i - b_j|) over all pairs, or over i != j when a is b (``same``)."""
    total = _pair_sum(a, b, fn)
    if not same:
        return total / (len(a) * len(b))
    diagonal = len(a) * fn(a.new_zeros(()))
    return (total - diagonal) / (len(a) * (len(a) - 1))


def energy_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    max_samples: int = 4000,
    generator: torch.Generator | None = None,
) -> float:
    r"""Energy distance ``E(X, Y) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Euclidean norms).

    The within-sample terms are U-statistics (pairs i != j), so the estimate is unbiased and
    close to 0 (possibly slightly negative) for two samples of the same law. For point
    masses, ``E(delta_a, delta_b) = 2 |a - b|``.

    Args:
        x: (n, ...) sample, n >= 2 (flattened to (n, d)).
        y: (m, ...) sample, m >= 2, same number of features d.
        max_samples: each sample larger than this is subsampled to it without replacement.
        generator: optional ``torch.Generator`` for the subsampling.

    Returns:
        The estimate as a Python float.

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    x, y = _prepare_pair(x, y, max_samples, generator)
    exy = _pair_mean(x, y, lambda d: d, same=False)
    exx = _pair_mean(x, x, lambda d: d, same=True)
    eyy = _pair_mean(y, y, lambda d: d, same=True)
    return float(2 * exy - exx - eyy)


def _prepare_pair(x, y, max_samples, generator):
    """Check and flatten two samples, then subsample each to at most ``max_samples`` rows."""
    x, y = _as_samples("x", x, "y", y)
    max_samples = check_positive_int("max_samples", max_samples)
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    return _subsample(x, max_samples, generator), _subsample(y, max_samples, generator)


def _median_bandwidth(x: torch.Tensor, y: torch.Tensor, max_points: int = 500) -> float:
    """Median of pairwise distances (i < j) among the first max_points rows of x and of y."""
    pooled = torch.cat([x[:max_points], y[:max_points]])
    dist = torch.pdist(pooled)
    h = float(dist.median())
    if h <= 0:
        raise ValueError("bandwidth: the median pairwise distance is 0; pass bandwidth explicitly")
    return h


def mmd_rbf(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidth: float | None = None,
    max_samples: int = 4000,
    generator: torch.Generator | None = None,
) -> float:
    r"""Unbiased squared MMD with the Gaussian kernel ``k(a, b) = exp(-|a - b|^2 / (2 h^2))``.

    MMD^2 = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).
    When ``bandwidth`` is None, h is the median heuristic: the median pairwise distance in
    the pooled sample (the first 500 rows of each sample, after subsampling).

    Args:
        x: (n, ...) sample, n >= 2 (flattened to (n, d)).
        y: (m, ...) sample, m >= 2, same number of features d.
        bandwidth: kernel width h > 0, or None for the median heuristic.
        max_samples: each sample larger than this is subsampled to it without replacement.
        generator: optional ``torch.Generator`` for the subsampling.

    Returns:
        The estimate as a Python float (near 0, possibly negative, for equal laws).

    Introduced in: Chapter 1 (Diffusion models as stochastic processes).
    """
    x, y = _prepare_pair(x, y, max_samples, generator)
    if bandwidth is None:
        h = _median_bandwidth(x, y)
    else:
        h = check_positive_float("bandwidth", bandwidth)

    def kernel(dist):
        return torch.exp(-dist.pow(2) / (2 * h**2))

    kxx = _pair_mean(x, x, kernel, same=True)
    kyy = _pair_mean(y, y, kernel, same=True)
    kxy = _pair_mean(x, y, kernel, same=False)
    return float(kxx + kyy - 2 * kxy)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = np.linalg.eigh(a)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets ("FID" on any features).

    ``d^2 = |mu_a - mu_b|^2 + Tr(Sigma_a + Sigma_b - 2 (Sigma_a Sigma_b)^{1/2})``, with
    unbiased sample covariances. Tr (\Sigma_a \Sigma_b)^{1/2} is computed exactly as
    \sum_i \sqrt{\lambda_i} over the eigenvalues of the symmetric PSD matrix
    \Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2} (same spectrum as \Sigma_a \Sigma_b), so no complex
    parts arise. The result is clipped at 0 against round-off.

    Args:
        feats_a: (n, ...) features, n >= 2 (flattened to (n, d)).
        feats_b: (m, ...) features, m >= 2, same d.

    Returns:
        d^2 as a Python float (0 for identical feature sets, up to round-off).

    Introduced in: Chapter 7 (CTRL on images).
    """
    a, b = _as_samples("feats_a", feats_a, "feats_b", feats_b)
    a, b = a.cpu().numpy(), b.cpu().numpy()
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt
    return float(max(value, 0.0))
