"""Random projections and feature maps of FAVOR+ (Choromanski et al. 2020, arXiv:2009.14794).

This module is the only place that computes a feature map phi(x) or draws a projection.

Softmax kernel (positive random features, paper eq. 7 with h(x) = exp(-|x|^2 / 2))::

    SM(x, y) = exp(x . y) = E_w[ phi(x) . phi(y) ],   phi(x) = exp(W x - |x|^2 / 2) / sqrt(m)

with the rows w_i of W (m, d) drawn N(0, I_d), here as stacked orthogonal blocks (ORF) whose
row norms are chi-distributed so each row is still marginally Gaussian. Attention uses
x = q / d^(1/4), y = k / d^(1/4), so exp(x . y) = exp(q . k / sqrt(d)).

FAVOR++ (Likhosherstov et al. 2022, arXiv:2205.15317, "optimal positive random features") adds a
free parameter A < 1/4 and stays unbiased for every such A::

    phi_A(x) = (1 - 4A)^(d/4) exp(A |w|^2 + sqrt(1 - 4A) w . x - |x|^2 / 2) / sqrt(m)

A = 0 is FAVOR+. The variance of the estimate is smallest at
A* = (1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)) / 16 <= 0, with rho = mean |x + y|^2 / d over the
query/key pairs (:func:`favorpp_coefficient`).

Generalised ReLU kernel: phi(x) = relu(W x) / sqrt(m) + eps.

Shapes: x is (..., L, d); the projection is (m, d); features are (..., L, m).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Scaling = Literal["gaussian", "sqrt_d"]


def gaussian_orthogonal_matrix(
    nb_features: int,
    dim: int,
    *,
    scaling: Scaling = "gaussian",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Orthogonal random features: ``(nb_features, dim)`` rows, orthogonal within blocks of ``dim``.

    Each block is Q^T from the QR decomposition of a ``dim x dim`` Gaussian matrix (sign-corrected
    so Q is Haar-distributed); the last block is truncated. Row norms are then set to the norms of
    independent Gaussian vectors (``scaling="gaussian"``, chi-distributed, so rows are marginally
    N(0, I)) or all to ``sqrt(dim)`` (``scaling="sqrt_d"``, regularised).
    """
    if nb_features < 1 or dim < 1:
        raise ValueError(f"nb_features and dim must be positive, got {nb_features}, {dim}")
    if scaling not in ("gaussian", "sqrt_d"):
        raise ValueError(f"scaling must be 'gaussian' or 'sqrt_d', got {scaling!r}")
    nb_blocks = math.ceil(nb_features / dim)
    # Draw on CPU in float64 so the result depends only on the generator's seed.
    gauss = torch.randn(nb_blocks, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)  # (nb, d, d) each
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar measure
    rows = q.transpose(-2, -1).reshape(nb_blocks * dim, dim)[:nb_features]  # (m, d)
    if scaling == "gaussian":
        norms = torch.randn(nb_features, dim, generator=generator, dtype=torch.float64).norm(dim=1)
    else:
        norms = torch.full((nb_features,), math.sqrt(dim), dtype=torch.float64)
    out = rows * norms.unsqueeze(1)
    return out.to(device=device, dtype=dtype or torch.get_default_dtype())


def iid_gaussian_matrix(
    nb_features: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Unstructured random features: ``(nb_features, dim)`` i.i.d. N(0, 1) entries (the paper's IID baseline)."""
    out = torch.randn(nb_features, dim, generator=generator, dtype=torch.float64)
    return out.to(device=device, dtype=dtype or torch.get_default_dtype())


def favorpp_coefficient(rho: Tensor) -> Tensor:
    """The variance-optimal FAVOR++ parameter ``A*`` for ``rho = mean |x + y|^2 / d`` (any shape).

    ``A* = (1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)) / 16``: 0 at rho = 0, negative above, always
    below 1/8 (where the estimator's variance is finite).
    """
    rho = rho.clamp_min(0)
    return (1 - 2 * rho - torch.sqrt((2 * rho + 1) ** 2 + 8 * rho)) / 16


def favorpp_statistic(q: Tensor, k: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
    """One batch's ``rho`` per head for :func:`favorpp_coefficient`: the mean over query/key pairs of
    ``|q' + k'|^2 / d``, i.e. ``(E|q'|^2 + E|k'|^2 + 2 E[q'] . E[k']) / d`` over real tokens.

    q, k: (B, H, L, d), unscaled (``x' = x / d^(1/4)``); key_padding_mask: (B, L) bool, True at real
    tokens. Returns (H,) in float32.
    """
    d = q.shape[-1]
    x, y = q.float() * d**-0.25, k.float() * d**-0.25  # (B, H, L, d)
    if key_padding_mask is None:
        w = torch.ones(x.shape[0], 1, x.shape[2], 1, device=x.device)
    else:
        w = key_padding_mask[:, None, :, None].float()  # (B, 1, L, 1): real tokens
    n = w.sum().clamp_min(1)
    sq_x = ((x * x).sum(-1, keepdim=True) * w).sum(dim=(0, 2, 3)) / n  # (H,)
    sq_y = ((y * y).sum(-1, keepdim=True) * w).sum(dim=(0, 2, 3)) / n
    mean_x, mean_y = (x * w).sum(dim=(0, 2)) / n, (y * w).sum(dim=(0, 2)) / n  # (H, d)
    return (sq_x + sq_y + 2 * (mean_x * mean_y).sum(-1)) / d  # (H,)


def _softmax_projection(xs: Tensor, projection: Tensor, a: Tensor | None, out: Tensor | None) -> Tensor:
    """``W x'`` (FAVOR+) or ``sqrt(1 - 4A) W x' + A |w|^2`` (FAVOR++) of already scaled x' (..., L, d):
    (..., L, m). With ``out`` (no gradient needed) the product is written into it and the FAVOR++
    terms are applied in place: the same values, no new (..., L, m) tensor."""
    proj = torch.matmul(xs, projection.t().to(xs.dtype), out=out)  # (..., L, m)
    if a is not None:
        a = a.to(xs.dtype)
        b = torch.sqrt(1 - 4 * a)  # (..., 1, 1)
        norms = (projection.to(xs.dtype) ** 2).sum(dim=-1)  # (m,)
        proj = proj * b + a * norms if out is None else proj.mul_(b).add_(a * norms)
    return proj


def softmax_log_terms(
    x: Tensor, projection: Tensor, a: Tensor | None = None, *, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The two parts of log phi(x): ``(proj, half_sq)`` with ``log(sqrt(m) phi(x)) = proj - half_sq``.

    ``proj`` (..., L, m) is ``W x'`` (FAVOR+), or ``sqrt(1 - 4A) W x' + A |w|^2`` (FAVOR++ with
    ``a`` = A broadcastable to (..., 1, 1), e.g. one value per head (H, 1, 1)); ``half_sq`` (..., L)
    is ``|x'|^2 / 2`` (minus ``log D = d/4 log(1 - 4A)`` for FAVOR++). ``x' = x / d^(1/4)``.
    ``out``: an (..., L, m) tensor to write ``proj`` into (inference only: no gradient).
    """
    d = x.shape[-1]
    x = x * d**-0.25  # (..., L, d)
    proj = _softmax_projection(x, projection, a, out)  # (..., L, m)
    half_sq = 0.5 * (x * x).sum(dim=-1)  # (..., L)
    if a is not None:
        half_sq = half_sq - (0.25 * d * torch.log(1 - 4 * a.to(x.dtype))).squeeze(-1)
    return proj, half_sq


def softmax_query_logits(
    x: Tensor, projection: Tensor, a: Tensor | None = None, *, out: Tensor | None = None
) -> Tensor:
    """``proj`` of :func:`softmax_log_terms` alone, (..., L, d) -> (..., L, m): log phi(x) up to a
    per-row constant, all a query needs (its |x'|^2 factor cancels in the attention ratio).
    ``out``: an (..., L, m) tensor to write into (inference only: no gradient)."""
    return _softmax_projection(x * x.shape[-1] ** -0.25, projection, a, out)


def softmax_feature_logits(x: Tensor, projection: Tensor, a: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Log-domain softmax features, for attention that tracks its own stabiliser.

    Returns ``(features, log_scale)``: ``features`` (..., L, m) are ``exp(proj - p) / sqrt(m)`` with
    ``p`` the position's largest projection, so every entry is in (0, 1/sqrt(m)]; ``log_scale``
    (..., L) is ``p - |x'|^2 / 2``. The true feature vector is ``features * exp(log_scale)``:
    the scale depends on position ``x`` alone, so a causal consumer can rescale without looking
    at later positions. ``p`` is a detached constant (gradients are those of the true features);
    ``|x'|^2`` keeps its gradient inside ``log_scale``. ``a``: FAVOR++ (:func:`softmax_log_terms`).
    """
    proj, half_sq = softmax_log_terms(x, projection, a)
    peak = proj.detach().amax(dim=-1, keepdim=True)  # (..., L, 1)
    # One subtraction and an in-place exp over the (L, m) block: this is the hot loop.
    features = torch.exp_(proj - (peak + 0.5 * math.log(projection.shape[0])))
    log_scale = peak.squeeze(-1) - half_sq  # (..., L)
    return features, log_scale


def softmax_features(x: Tensor, projection: Tensor, *, is_query: bool, a: Tensor | None = None) -> Tensor:
    """Positive random features of the softmax kernel, ``exp(W x' - |x'|^2/2) / sqrt(m)``.

    ``x`` is (..., L, d), queries or keys, *unscaled* (this divides by d^(1/4)); returns (..., L, m).

    Stabiliser: queries are divided by their own per-row factor, which cancels exactly in the
    attention ratio. Keys are divided by one maximum over all positions of the sequence (per
    leading index), which also cancels. That shared key maximum looks at every position, so
    causal attention must not use it: :func:`~protein_performer.attention.linear.favor_attention`
    uses :func:`softmax_feature_logits` and a running (prefix) maximum instead.
    """
    features, log_scale = softmax_feature_logits(x, projection, a)
    if is_query:
        return features
    shift = log_scale - log_scale.detach().amax(dim=-1, keepdim=True)  # (..., L), <= 0
    return features * torch.exp(shift).unsqueeze(-1)


def relu_features(x: Tensor, projection: Tensor, *, eps: float = 1e-3) -> Tensor:
    """Generalised-kernel features ``relu(W x') / sqrt(m) + eps`` (Performer-ReLU): (..., L, d) -> (..., L, m).

    ``x' = x / d^(1/4)`` as for softmax; ``eps`` keeps every feature vector strictly positive so
    attention normalisers never vanish.
    """
    x = x * x.shape[-1] ** -0.25
    proj = x @ projection.t().to(x.dtype)  # (..., L, m)
    return torch.relu(proj) * projection.shape[0] ** -0.5 + eps


def trig_features(x: Tensor, projection: Tensor) -> Tensor:
    """Trigonometric features of the softmax kernel (the paper's SM-trig baseline, can be negative).

    ``exp(|x'|^2/2) [sin(W x'), cos(W x')] / sqrt(m)``: (..., L, d) -> (..., L, 2m). Only for the
    approximation-error study; attention with it is unstable, as the paper shows.
    """
    x = x * x.shape[-1] ** -0.25
    proj = x @ projection.t().to(x.dtype)  # (..., L, m)
    h = torch.exp(0.5 * (x * x).sum(dim=-1, keepdim=True)) * projection.shape[0] ** -0.5
    return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1) * h
