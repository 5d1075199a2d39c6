"""Monotone rational-quadratic splines: typed wrappers over nflows' spline functions.

A rational-quadratic (RQ) spline (Durkan, Bekasov, Murray, Papamakarios, "Neural
Spline Flows", arXiv 1906.04087; Gregory & Delbourgo 1982) maps the interval
[−B, B] onto itself with K bins. Bin k has width w_k, height h_k and knot
derivatives δ_k, δ_{k+1} > 0; with ξ ∈ [0, 1] the position inside the bin and
s_k = h_k / w_k,

    y = y_k + h_k (s_k ξ² + δ_k ξ(1−ξ)) / (s_k + (δ_{k+1} + δ_k − 2 s_k) ξ(1−ξ)),

which is strictly increasing, has an analytic inverse (the root of a quadratic) and an
analytic derivative. The evaluation itself is nflows' (``nflows.transforms.splines.
rational_quadratic``); this module fixes the parameter layout and sums log-dets.

Parameters per transformed coordinate, in the last axis of ``params``:

* ``linear_tails=True`` (unconstrained): 3K − 1 numbers — K widths, K heights, K − 1
  interior derivatives. Outside [−B, B] the map is the identity (log-det 0) and the
  boundary derivatives are fixed to 1, so the map is C¹ on the whole real line.
* ``linear_tails=False`` (bounded): 3K + 1 numbers — K widths, K heights and all
  K + 1 knot derivatives; inputs must lie in [−B, B].

Widths and heights are softmaxes of their parameters scaled to 2B (with nflows'
minimum bin size 10⁻³ of the interval); derivatives are δ = δ_min + softplus(θ + c)
with δ_min = 10⁻³ and c = log(e^{1−δ_min} − 1). The offset c makes **all-zero
parameters the exact identity** (uniform bins, every δ = 1), so a conditioner with a
zero last layer starts as the identity map. Circular splines (for angles) will sit
next to these with the same signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from nflows.transforms.base import InputOutsideDomain
from nflows.transforms.splines.rational_quadratic import (
    DEFAULT_MIN_DERIVATIVE,
    rational_quadratic_spline,
    unconstrained_rational_quadratic_spline,
)
from torch import Tensor

IDENTITY_DERIVATIVE_OFFSET = math.log(math.expm1(1.0 - DEFAULT_MIN_DERIVATIVE))
"""c such that δ_min + softplus(0 + c) = 1: zero parameters give unit knot slopes."""


def n_spline_params(n_bins: int, linear_tails: bool = True) -> int:
    """Parameters per coordinate: 3K − 1 with linear tails, 3K + 1 on a bounded interval."""
    if n_bins < 1:
        raise ValueError(f"a spline needs at least one bin, got n_bins={n_bins}")
    return 3 * n_bins - 1 if linear_tails else 3 * n_bins + 1


def _split(params: Tensor, linear_tails: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``params: [..., P]`` → (widths [..., K], heights [..., K], derivatives [..., K∓1])."""
    p = params.shape[-1]
    n_bins = (p + 1) // 3 if linear_tails else (p - 1) // 3
    if n_spline_params(n_bins, linear_tails) != p:
        kind = "3K-1 (linear tails)" if linear_tails else "3K+1 (bounded)"
        raise ValueError(f"spline parameters must number {kind} per coordinate, got {p}")
    widths = params[..., :n_bins]
    heights = params[..., n_bins : 2 * n_bins]
    derivatives = params[..., 2 * n_bins :] + IDENTITY_DERIVATIVE_OFFSET
    return widths, heights, derivatives


def _spline(
    x: Tensor, params: Tensor, bound: float, inverse: bool, linear_tails: bool
) -> tuple[Tensor, Tensor]:
    if params.shape[:-1] != x.shape:
        raise ValueError(
            f"spline params must have shape {[*x.shape, '(P)']}, got {list(params.shape)}"
        )
    w, h, d = _split(params, linear_tails)
    y, ld = retry_in_float64(
        lambda *t: _nflows_spline(*t, bound, inverse, linear_tails),
        x,
        w,
        h,
        d,
        inverse=inverse,
        domain=None if linear_tails else (-bound, bound),
    )
    return y, ld.reshape(x.shape[0], -1).sum(dim=1)


def retry_in_float64(
    spline: Callable[..., tuple[Tensor, Tensor]],
    x: Tensor,
    *params: Tensor,
    inverse: bool,
    domain: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """``spline(x, *params)``, redone in float64 when nflows' inverse trips on rounding.

    The inverse is the root of a ξ² + b ξ + c in the input's bin, and nflows asserts
    b² − 4ac ≥ 0. Exactly it holds everywhere in the bin; in float32 it rounds below zero
    for an input within a few ulp of a knot next to a steep or flat bin. float64 recovers
    the root; ``(y, log-derivative)`` come back in the input's dtype. ``domain`` is the
    spline's interval, if bounded: x passed its float32 check, but a float32 end (float32's
    π lies above float64's) can fall outside it in float64, so x is clamped onto it there
    (the gradient kept: the clamp only undoes rounding).
    """
    try:
        return spline(x, *params)
    except AssertionError:
        if not inverse or x.dtype == torch.float64:
            raise
        wide = x.to(torch.float64)
        if domain is not None:
            wide = wide.detach().clamp(*domain) + (wide - wide.detach())
        y, ld = spline(wide, *(p.to(torch.float64) for p in params))
        return y.to(x.dtype), ld.to(x.dtype)


def _nflows_spline(
    x: Tensor, w: Tensor, h: Tensor, d: Tensor, bound: float, inverse: bool, linear_tails: bool
) -> tuple[Tensor, Tensor]:
    """nflows' spline with linear tails outside [−B, B], or bounded to it."""
    if linear_tails:
        return unconstrained_rational_quadratic_spline(
            x, w, h, d, inverse=inverse, tails="linear", tail_bound=bound
        )
    try:
        return rational_quadratic_spline(
            x, w, h, d, inverse=inverse, left=-bound, right=bound, bottom=-bound, top=bound
        )
    except InputOutsideDomain:
        raise ValueError(
            f"bounded spline input outside [-{bound}, {bound}]: use linear_tails=True "
            "or a larger bound"
        ) from None


def rq_spline_forward(
    x: Tensor, params: Tensor, bound: float, linear_tails: bool = True
) -> tuple[Tensor, Tensor]:
    """Apply the spline elementwise: ``y = g(x)`` and log|dy/dx| summed per sample.

    Args:
        x: ``[B, ...]`` inputs, one spline per entry.
        params: ``[B, ..., P]`` unnormalised parameters, P = :func:`n_spline_params`.
        bound: the spline acts on [−bound, bound].
        linear_tails: identity outside the interval (else inputs must lie inside it).

    Returns:
        ``(y: [B, ...], logdet: [B])``.

    Example:
        >>> import torch
        >>> x = torch.randn(3, 2, dtype=torch.float64)
        >>> y, ld = rq_spline_forward(x, torch.zeros(3, 2, 23, dtype=torch.float64), 5.0)
        >>> bool(torch.allclose(y, x)) and bool(torch.allclose(ld, torch.zeros_like(ld)))
        True
    """
    return _spline(x, params, bound, False, linear_tails)


def bounded_rq_spline(
    x: Tensor, params: Tensor, bound: float, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """The bounded spline (no linear tails) on [−B, B], rejecting inputs outside it.

    A sample with an input outside [−B, B] (or not finite), or with spline parameters that
    are not finite (a conditioner fed such an input), is outside the flow's support: its
    log-det is −∞ (zero density; its output is the input), so it weighs nothing instead of
    stopping the batch. Such elements enter the spline as the interior point 0 with
    identity parameters, so they cannot disturb the others. ``params: [B, ..., 3K + 1]``.

    Returns:
        ``(y: [B, ...], logdet: [B])`` with logdet = −∞ on rows with an input outside.
    """
    usable = (x.abs() <= bound) & torch.isfinite(params).all(dim=-1)
    safe_x = torch.where(usable, x, torch.zeros_like(x))
    safe_params = torch.where(usable[..., None], params, torch.zeros_like(params))
    y, ld = _spline(safe_x, safe_params, bound, inverse, linear_tails=False)
    rows_usable = usable.reshape(x.shape[0], -1).all(dim=1)
    y = torch.where(usable, y, x)
    return y, torch.where(rows_usable, ld, torch.full_like(ld, -math.inf))


def rq_spline_inverse(
    y: Tensor, params: Tensor, bound: float, linear_tails: bool = True
) -> tuple[Tensor, Tensor]:
    """Invert :func:`rq_spline_forward`: ``x = g⁻¹(y)`` and log|dx/dy| ``[B]``."""
    return _spline(y, params, bound, True, linear_tails)
