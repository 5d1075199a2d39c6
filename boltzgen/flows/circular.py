"""Circular splines and couplings for internal coordinates (torsions on the circle).

A circular rational-quadratic spline (Rezende, Papamakarios, Racanière, Albergo,
Kanwar, Shanahan, Cranmer, "Normalizing flows on tori and spheres", arXiv 2002.02428)
is a monotone RQ spline (Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows",
arXiv 1906.04087) on [−π, π] with fixed end knots g(±π) = ±π and **one shared
derivative** δ₀ = δ_K at both ends. It is then a diffeomorphism of the circle: g is
continuous across the identification −π ≡ π, and so is g′, hence the pushed-forward
density p(g⁻¹(y)) / g′(g⁻¹(y)) has no jump at ±π. Parameters per coordinate: K widths,
K heights, 1 boundary derivative and K − 1 interior derivatives (3K numbers); zeros
give the identity (see :mod:`boltzgen.flows.splines` for the parametrisation).

:class:`MixedCoupling` transforms a vector of internal coordinates in which a mask marks
the torsions: those get circular splines followed by a conditioned rotation
y = wrap(g(x) + s) (rotations make the circular family closed under the choice of the
fixed point; log-det unchanged), the others linear-tail RQ splines on
[−tail_bound, tail_bound]. The conditioner sees each conditioning torsion as
(cos φ, sin φ), so it is a smooth function on the torus (Köhler, Krämer, Noé, "Smooth
normalizing flows", arXiv 2110.00351). With :class:`MixedPrior` (uniform on torsions,
normal elsewhere) and :mod:`boltzgen.flows.internal`, these make a Boltzmann generator
in internal coordinates (Noé et al., "Boltzmann generators", arXiv 1812.01729).
"""

from __future__ import annotations

import math

import torch
from nflows.transforms.base import InputOutsideDomain
from nflows.transforms.splines.rational_quadratic import rational_quadratic_spline
from torch import Tensor, nn

from boltzgen.flows.base import Prior, Sequential
from boltzgen.flows.coupling import Coupling, _check_mask, alternating_masks, conditioner
from boltzgen.flows.splines import (
    IDENTITY_DERIVATIVE_OFFSET,
    bounded_rq_spline,
    n_spline_params,
    retry_in_float64,
    rq_spline_forward,
    rq_spline_inverse,
)


def n_circular_params(n_bins: int) -> int:
    """Parameters per coordinate of a circular spline with K bins: 3K."""
    if n_bins < 1:
        raise ValueError(f"a spline needs at least one bin, got n_bins={n_bins}")
    return 3 * n_bins


def wrap(angle: Tensor) -> Tensor:
    """Angles mapped to (−π, π]: a − 2π ⌈(a − π) / 2π⌉ (the identity on (−π, π]).

    The result is clamped to [−π, π] (gradient kept): in float32, a − 2πk rounds up to one
    ulp past ±π for some |a| > π, which a circular spline would refuse.
    """
    return _onto_circle(angle - 2 * math.pi * torch.ceil((angle - math.pi) / (2 * math.pi)))


def _onto_circle(angle: Tensor) -> Tensor:
    """``angle`` clamped to [−π, π] with the gradient of the identity: it only undoes rounding.

    Written as clamp(a) + (a − a) with all but the middle a detached: the clamp exactly; the
    form a + (clamp − a) rounds to one ulp past π when a is far from the circle.
    """
    return angle.detach().clamp(-math.pi, math.pi) + (angle - angle.detach())


def circular_rq_spline(x: Tensor, params: Tensor, inverse: bool = False) -> tuple[Tensor, Tensor]:
    """The circular RQ spline y = g(x) on [−π, π] (or x = g⁻¹(y)), elementwise.

    Args:
        x: ``[B, ...]`` angles in [−π, π] (radians).
        params: ``[B, ..., 3K]`` unnormalised parameters: K widths, K heights, the
            boundary derivative, K − 1 interior derivatives. Zeros give the identity.
        inverse: evaluate g⁻¹ instead of g.

    Returns:
        ``(y: [B, ...], logdet: [B])``, logdet = Σ log|dy/dx| over the non-batch axes.

    Example:
        >>> x = torch.linspace(-math.pi, math.pi, 5, dtype=torch.float64)[None]
        >>> y, ld = circular_rq_spline(x, torch.randn(1, 5, 12, dtype=torch.float64))
        >>> bool(torch.allclose(y[0, [0, -1]], x[0, [0, -1]]))
        True
    """
    y, ld = circular_rq_spline_elementwise(x, params, inverse)
    return y, ld.reshape(x.shape[0], -1).sum(dim=1)


def circular_rq_spline_elementwise(
    x: Tensor, params: Tensor, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """:func:`circular_rq_spline` with the log-derivative of every element, ``[B, ...]``.

    Returns ``(y, log|dy/dx|)`` (``log|dx/dy|`` of g⁻¹ with ``inverse``), both shaped as x.
    The spline maps [−π, π] onto itself; y is clamped to it (its gradient kept), so that
    rounding (a few ulp in float32) never puts an angle outside the next circular layer's domain.
    An element whose angle or parameters are not finite (a diverged configuration) is outside
    the support: its output is its input and its log-derivative −∞.
    """
    if params.shape[:-1] != x.shape or params.shape[-1] % 3 != 0:
        raise ValueError(
            f"circular spline params must have shape {[*x.shape, '3K']}, got {list(params.shape)}"
        )
    usable = torch.isfinite(x) & torch.isfinite(params).all(dim=-1)
    y, ld = _circular_spline(
        torch.where(usable, x, torch.zeros_like(x)),
        torch.where(usable[..., None], params, torch.zeros_like(params)),
        inverse,
    )
    return torch.where(usable, y, x), torch.where(usable, ld, torch.full_like(ld, -math.inf))


def _circular_spline(x: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
    """nflows' spline on [−π, π] with periodic boundary derivatives, y clamped onto it."""
    k = params.shape[-1] // 3
    widths, heights = params[..., :k], params[..., k : 2 * k]
    boundary = params[..., 2 * k : 2 * k + 1]
    derivatives = torch.cat([boundary, params[..., 2 * k + 1 :], boundary], dim=-1)

    def spline(x: Tensor, w: Tensor, h: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        pi = math.pi
        return rational_quadratic_spline(
            x, w, h, d, inverse=inverse, left=-pi, right=pi, bottom=-pi, top=pi
        )

    derivatives = derivatives + IDENTITY_DERIVATIVE_OFFSET
    circle = (-math.pi, math.pi)
    try:
        y, ld = retry_in_float64(
            spline, x, widths, heights, derivatives, inverse=inverse, domain=circle
        )
    except InputOutsideDomain:
        raise ValueError("circular spline input outside [-pi, pi]: wrap angles first") from None
    return _onto_circle(y), ld


class TorsionFeatures(nn.Module):
    """``[B, n] → [B, n + n_torsions]``: non-periodic entries as they are, torsions as (cos, sin).

    Args:
        torsion_mask: ``[n]`` bool, the periodic inputs.
    """

    def __init__(self, torsion_mask: Tensor):
        super().__init__()
        mask = torch.as_tensor(torsion_mask, dtype=torch.bool)
        self.register_buffer("periodic", mask.nonzero()[:, 0])
        self.register_buffer("linear", (~mask).nonzero()[:, 0])
        self.n_out = mask.numel() + int(mask.sum())

    def forward(self, x: Tensor) -> Tensor:
        angles = x[:, self.periodic]
        return torch.cat([x[:, self.linear], angles.cos(), angles.sin()], dim=1)


class MixedCoupling(Coupling):
    """Coupling on internal coordinates: circular splines on torsions, RQ splines elsewhere.

    For the transformed half (``mask``): torsions (``torsion_mask``) map as
    y = wrap(g_circ(x; θ) + s) with a conditioned rotation s (if ``circular_shift``),
    other coordinates as y = g_RQ(x; θ) with linear tails outside ±``tail_bound``.
    log|det| = Σ log g′. θ and s come from an MLP of the conditioning half, fed
    torsions as (cos, sin). Starts as the identity (zero last layer).

    Args:
        dim: D.
        mask: ``[D]`` bool, ``True`` = transformed by this layer.
        torsion_mask: ``[D]`` bool, ``True`` = periodic in (−π, π].
        hidden: conditioner width.
        n_layers: conditioner depth.
        n_bins: K, bins of every spline.
        tail_bound: interval of the non-periodic splines.
        circular_shift: learn the rotation s of each transformed torsion.
        linear_tails: non-periodic splines are the identity outside ±``tail_bound``;
            ``False``: bounded splines on [−B, B] (3K + 1 parameters) that map the
            interval onto itself, so a flow whose prior lives in [−B, B] never leaves it
            (inputs outside give log-det −∞, see :func:`bounded_rq_spline`).
        dtype: parameter dtype.
        generator: the initialiser's generator.

    Example:
        >>> layer = MixedCoupling(4, torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
        >>> z = torch.rand(8, 4, dtype=torch.float64) * 2 - 1
        >>> x, logdet = layer(z)  # x: [8, 4], logdet: [8]
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor,
        torsion_mask: Tensor,
        hidden: int = 64,
        n_layers: int = 2,
        n_bins: int = 8,
        tail_bound: float = 5.0,
        circular_shift: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
        linear_tails: bool = True,
    ):
        mask = _check_mask(mask, dim)
        periodic = torch.as_tensor(torsion_mask, dtype=torch.bool)
        if periodic.shape != (dim,):
            raise ValueError(f"torsion_mask must have shape [{dim}], got {list(periodic.shape)}")
        t_periodic = periodic[mask]
        n_circ, n_lin = int(t_periodic.sum()), int((~t_periodic).sum())
        p_circ = n_circular_params(n_bins) + int(circular_shift)
        p_lin = n_spline_params(n_bins, linear_tails)
        features = TorsionFeatures(periodic[~mask])
        n_out = n_circ * p_circ + n_lin * p_lin
        mlp = conditioner(features.n_out, n_out, hidden, n_layers, dtype, generator)
        super().__init__(mask, nn.Sequential(features, mlp))
        self.n_circ, self.n_lin, self.p_circ, self.p_lin = n_circ, n_lin, p_circ, p_lin
        self.circular_shift, self.linear_tails = circular_shift, linear_tails
        self.tail_bound = float(tail_bound)
        self.register_buffer("t_circ", t_periodic.nonzero()[:, 0])
        self.register_buffer("t_lin", (~t_periodic).nonzero()[:, 0])
        self.register_buffer("t_unpermute", torch.argsort(torch.cat([self.t_circ, self.t_lin])))

    def _params(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        b, cut = theta.shape[0], self.n_circ * self.p_circ
        circ = theta[:, :cut].reshape(b, self.n_circ, self.p_circ)
        return circ, theta[:, cut:].reshape(b, self.n_lin, self.p_lin)

    def _transform(self, v: Tensor, theta: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        circ, lin = self._params(theta)
        logdet = v.new_zeros(v.shape[0])
        y_circ, y_lin = v[:, self.t_circ], v[:, self.t_lin]
        if self.n_circ:
            y_circ, ld = self._circular(y_circ, circ, inverse)
            logdet = logdet + ld
        if self.n_lin:
            y_lin, ld = self._interval(y_lin, lin, inverse)
            logdet = logdet + ld
        return torch.cat([y_circ, y_lin], dim=1)[:, self.t_unpermute], logdet

    def _interval(self, v: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if not self.linear_tails:
            return bounded_rq_spline(v, params, self.tail_bound, inverse)
        spline = rq_spline_inverse if inverse else rq_spline_forward
        return spline(v, params, self.tail_bound)

    def _circular(self, v: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if not self.circular_shift:
            return circular_rq_spline(v, params, inverse)
        shift = params[..., -1]
        if inverse:
            return circular_rq_spline(wrap(v - shift), params[..., :-1], inverse=True)
        y, ld = circular_rq_spline(v, params[..., :-1])
        return wrap(y + shift), ld

    def _forward_t(self, z_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z_t, theta, inverse=False)

    def _inverse_t(self, x_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x_t, theta, inverse=True)


class CircularSplineCoupling(MixedCoupling):
    """:class:`MixedCoupling` on a torus: every coordinate is an angle in (−π, π].

    Example:
        >>> layer = CircularSplineCoupling(2, torch.tensor([True, False]))
        >>> x, logdet = layer(torch.rand(8, 2, dtype=torch.float64) * 6 - 3)
    """

    def __init__(
        self,
        dim: int,
        mask: Tensor,
        hidden: int = 64,
        n_layers: int = 2,
        n_bins: int = 8,
        circular_shift: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        torsions = torch.ones(dim, dtype=torch.bool)
        super().__init__(
            dim, mask, torsions, hidden, n_layers, n_bins, 1.0, circular_shift, dtype, generator
        )


class MixedPrior(Prior):
    """Uniform on (−π, π] for torsions, standard normal (optionally truncated) elsewhere.

    log p(z) = −n_t log 2π − ½|z_rest|² − (D − n_t)/2 · log 2π, and −∞ for a torsion
    outside [−π, π]. With ``bound`` B the normal part is truncated to [−B, B]: each
    coordinate has density φ(z) / (Φ(B) − Φ(−B)) there and 0 outside, sampled exactly
    by the inverse CDF, so bounded splines on [−B, B] never see an input outside.

    Args:
        torsion_mask: ``[D]`` bool, the periodic coordinates.
        dtype: dtype of the samples.
        bound: B, or ``None`` for the untruncated normal.
    """

    def __init__(
        self, torsion_mask: Tensor, dtype: torch.dtype = torch.float64, bound: float | None = None
    ):
        super().__init__()
        mask = torch.as_tensor(torsion_mask, dtype=torch.bool)
        if mask.dim() != 1:
            raise ValueError(f"torsion_mask must have shape [D], got {list(mask.shape)}")
        if bound is not None and not bound > 0:
            raise ValueError(f"bound must be positive or None, got {bound}")
        self.dim = mask.numel()
        self.dtype = dtype
        self.bound = bound
        self.register_buffer("mask", mask)

    def _mass(self) -> float:
        """Φ(B) − Φ(−B) = erf(B / √2), the normal mass kept by the truncation."""
        return 1.0 if self.bound is None else math.erf(self.bound / math.sqrt(2.0))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        shape, device = (n, self.dim), self.mask.device
        if self.bound is None:
            normal = torch.randn(shape, generator=generator, dtype=self.dtype, device=device)
        else:
            v = torch.rand(shape, generator=generator, dtype=self.dtype, device=device)
            normal = math.sqrt(2.0) * torch.erfinv((2 * v - 1) * self._mass())
            normal = normal.clamp(-self.bound, self.bound)
        uniform = torch.rand(shape, generator=generator, dtype=self.dtype, device=device)
        return torch.where(self.mask, (2 * uniform - 1) * math.pi, normal)

    def log_prob(self, z: Tensor) -> Tensor:
        log_2pi = math.log(2 * math.pi)
        gauss = -0.5 * (z * z + log_2pi) - math.log(self._mass())
        if self.bound is not None:
            gauss = gauss.masked_fill(z.abs() > self.bound, -math.inf)
        # a torsion wrapped to ±π may come out a few ulps beyond it: still on the circle
        edge = math.pi * (1.0 + 4.0 * torch.finfo(z.dtype).eps)
        uniform = torch.full_like(z, -log_2pi).masked_fill(z.abs() > edge, -math.inf)
        return torch.where(self.mask, uniform, gauss).sum(dim=1)


def make_internal_flow(
    dim: int,
    torsion_mask: Tensor,
    n_layers: int = 4,
    hidden: int = 64,
    n_bins: int = 8,
    tail_bound: float = 5.0,
    conditioner_layers: int = 2,
    circular_shift: bool = True,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    linear_tails: bool = True,
) -> Sequential:
    """``n_layers`` :class:`MixedCoupling` layers on :func:`alternating_masks`; the identity.

    Meant for a latent of :class:`MixedPrior` and internal coordinates after it, e.g. a
    Boltzmann generator for alanine dipeptide (D = 60)::

        ic = FixedFrameInternalCoordinates(ZMatrix.from_topology(topology))
        q, _ = ic.inverse(x_md)
        mask = ic.layout.torsion_mask
        flow = Sequential(
            make_internal_flow(ic.dim, mask),
            StandardizeInternal.from_data(q, mask),
            ic,
        )
        prior = MixedPrior(mask)

    Non-periodic coordinates should be on the unit scale (``StandardizeInternal``).
    ``linear_tails=False`` gives bounded splines on ±``tail_bound`` (pair it with
    ``MixedPrior(mask, bound=tail_bound)``).
    """
    generator = torch.Generator().manual_seed(seed)
    return Sequential(
        *(
            MixedCoupling(
                dim,
                mask,
                torsion_mask,
                hidden,
                conditioner_layers,
                n_bins,
                tail_bound,
                circular_shift,
                dtype,
                generator,
                linear_tails,
            )
            for mask in alternating_masks(dim, n_layers)
        )
    )
