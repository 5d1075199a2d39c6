"""A flow on the periodic box that is equivariant under permutations of same-species particles.

Each layer transforms one Cartesian axis a of every particle, conditioned on the other
axes of all particles (Wirnsberger, Ballard, Papamakarios, Abercrombie, Racanière,
Pritzel, Rezende, Blundell, "Targeted free energy estimation via learned mappings",
arXiv 2002.04913, and "Normalizing flows for atomic solids", arXiv 2111.08696). The axis
is an angle θ = 2π x_a / L_a − π on the circle; particle i's angle goes through a circular
rational-quadratic spline g_i and a rotation s_i (Rezende et al., "Normalizing flows on
tori and spheres", arXiv 2002.02428),

    θ'_i = wrap(g_i(θ_i) + s_i),      log|det| = Σ_i log g_i′(θ_i),

so the map is a diffeomorphism of the torus and positions stay in the box. The parameters
of g_i and s_i come from a permutation-equivariant conditioner: particle i sees its own
species and the (cos, sin) of its other-axis angles, and a sum over all particles j of
messages from the periodic differences of their other-axis angles and j's species
(a DeepSets/message-passing network). Relabelling particles of one species therefore
relabels the outputs. Translations along the transformed axis are not a symmetry of a layer.
Stacking layers over axes 0, 1, …, d − 1 (repeated) gives the flow; the conditioner's last
layer starts at zero, so a fresh flow is the identity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flow, Sequential
from boltzgen.flows.circular import circular_rq_spline, n_circular_params, wrap


class EquivariantConditioner(nn.Module):
    """Per-particle outputs ``[B, N, n_out]`` from the other-axis angles ``[B, N, d − 1]``."""

    def __init__(self, n_species: int, n_axes: int, n_out: int, hidden: int):
        super().__init__()
        self.n_species = n_species
        pair_in = 2 * n_axes + n_species
        self.message = nn.Sequential(
            nn.Linear(pair_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.update = nn.Sequential(
            nn.Linear(hidden + 2 * n_axes + n_species, hidden), nn.SiLU(), nn.Linear(hidden, n_out)
        )
        nn.init.zeros_(self.update[-1].weight)
        nn.init.zeros_(self.update[-1].bias)

    def forward(self, angles: Tensor, species: Tensor) -> Tensor:
        b, n, _ = angles.shape
        one_hot = nn.functional.one_hot(species, self.n_species).to(angles).expand(b, n, -1)
        diff = angles[:, None, :, :] - angles[:, :, None, :]
        pair = torch.cat([diff.cos(), diff.sin(), one_hot[:, None].expand(b, n, n, -1)], -1)
        messages = self.message(pair).sum(2) / n
        own = torch.cat([angles.cos(), angles.sin(), one_hot], -1)
        return self.update(torch.cat([messages, own], -1))


class PeriodicAxisCoupling(Flow):
    """Transforms axis ``axis`` of all particles of ``x: [B, N, d]`` in the box ``[d]``."""

    def __init__(self, box: Tensor, species: Tensor, axis: int, n_bins: int = 8, hidden: int = 64):
        super().__init__()
        d = box.numel()
        self.register_buffer("box", box.clone())
        self.register_buffer("species", species.clone())
        self.axis, self.n_bins = axis, n_bins
        self.others = [k for k in range(d) if k != axis]
        n_species = int(species.max()) + 1
        self.conditioner = EquivariantConditioner(
            n_species, d - 1, n_circular_params(n_bins) + 1, hidden
        )

    def _angles(self, x: Tensor) -> Tensor:
        return 2 * math.pi * x / self.box - math.pi

    def _positions(self, angles: Tensor) -> Tensor:
        return (angles + math.pi) * self.box / (2 * math.pi)

    def _transform(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        angles = self._angles(x)
        params = self.conditioner(angles[..., self.others], self.species)
        theta, shift = angles[..., self.axis], params[..., -1]
        if inverse:
            theta, logdet = circular_rq_spline(wrap(theta - shift), params[..., :-1], inverse=True)
        else:
            theta, logdet = circular_rq_spline(theta, params[..., :-1])
            theta = wrap(theta + shift)
        out = angles.clone()
        out[..., self.axis] = theta
        return self._positions(out), logdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z, inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=True)


def periodic_particle_flow(
    box: Tensor, species: Tensor, n_layers: int, n_bins: int = 8, hidden: int = 64
) -> Sequential:
    """``n_layers`` couplings cycling over the axes of the box (identity when fresh)."""
    d = box.numel()
    layers = [PeriodicAxisCoupling(box, species, k % d, n_bins, hidden) for k in range(n_layers)]
    return Sequential(*layers)


class ProbeConditioner(nn.Module):
    """Spline parameters of moving particles from learned pair terms at probe points.

    Particle i moves along one axis; probe b sits at the b-th bin centre of that axis with
    i's other coordinates. Each fixed particle j adds φ(r_bj, species_i, species_j), a
    network of radial features of the minimum-image distance r_bj (Gaussians up to
    ``cutoff``, times a smooth envelope that vanishes there), so the sum H_ib is a learned
    potential of the fixed particles along i's line. A linear head turns H_ib into the
    height of bin b and the derivative at its left knot (zero at start: identity).
    """

    def __init__(self, n_species: int, hidden: int, n_radial: int = 8, cutoff: float = 2.5):
        super().__init__()
        self.n_species, self.cutoff = n_species, cutoff
        self.register_buffer("centres", torch.linspace(0.6, cutoff, n_radial))
        self.width = (cutoff - 0.6) / n_radial
        self.pair = nn.Sequential(
            nn.Linear(n_radial + 2 * n_species, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.head = nn.Linear(hidden, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _radial(self, r: Tensor) -> Tensor:
        envelope = torch.where(r < self.cutoff, torch.cos(0.5 * math.pi * r / self.cutoff) ** 2, 0)
        gauss = torch.exp(-(((r[..., None] - self.centres) / self.width) ** 2))
        return gauss * envelope[..., None]

    def _first_layer(self, radial: Tensor, species: tuple[Tensor, Tensor]) -> Tensor:
        """The pair network's first linear map of [radial, one-hot(s_i), one-hot(s_j)].

        Split by its input blocks, W·[r; e_i; e_j] + b = W_r r + (W_i e_i + b) + W_j e_j: the
        species columns are picked per particle and broadcast over bins and pairs, so the
        one-hot codes are never laid out for every (i, b, j).
        """
        linear = self.pair[0]
        n_radial = radial.shape[-1]
        w_radial, w_own, w_other = linear.weight.split(
            [n_radial, self.n_species, self.n_species], dim=1
        )
        own = w_own.T[species[0]] + linear.bias  # [M, H]
        other = w_other.T[species[1]]  # [S, H]
        return radial @ w_radial.T + own[:, None, None, :] + other[None, None, :, :]

    def forward(self, probes: Tensor, fixed: Tensor, box: Tensor, species: tuple[Tensor, Tensor]):
        """``probes: [B, M, K, d]``, ``fixed: [B, S, d]`` → params ``[B, M, 3K]``."""
        delta = fixed[:, None, None] - probes[:, :, :, None]
        delta = delta - box * torch.round(delta / box)
        radial = self._radial(delta.norm(dim=-1))  # [B, M, K, S, R]
        # the last linear map commutes with the sum over fixed particles j
        summed = self.pair[1](self._first_layer(radial, species)).sum(3)  # [B, M, K, H]
        last = self.pair[2]
        h = summed @ last.weight.T + radial.shape[3] * last.bias
        out = self.head(h)
        heights, knots = out[..., 0], out[..., 1]
        derivative = 0.5 * (knots + knots.roll(1, -1))  # knot k between bins k − 1 and k
        widths = torch.zeros_like(heights)
        return torch.cat([widths, heights, derivative], -1)


class ProbeCoupling(Flow):
    """Moves one axis of the particles in ``moving`` given all coordinates of the others.

    The moving particles' axis-``axis`` angles go through circular RQ splines with K equal
    bins fixed in the box; their parameters come from :class:`ProbeConditioner`, which
    sees the fixed particles and the moving particles' other coordinates (unchanged by the
    layer), so the Jacobian is diagonal: log|det| = Σ_i log g_i′(θ_i).
    """

    def __init__(
        self, box: Tensor, species: Tensor, axis: int, moving: Tensor, n_bins: int, hidden: int
    ):
        super().__init__()
        self.register_buffer("box", box.clone())
        self.register_buffer("moving", moving.nonzero()[:, 0])
        self.register_buffer("fixed", (~moving).nonzero()[:, 0])
        self.register_buffer("species", species.clone())
        self.axis, self.n_bins = axis, n_bins
        self.conditioner = ProbeConditioner(int(species.max()) + 1, hidden)

    def _params(self, x: Tensor) -> Tensor:
        length = self.box[self.axis]
        centres = (torch.arange(self.n_bins, dtype=x.dtype) + 0.5) * length / self.n_bins
        probes = x[:, self.moving, None, :].repeat(1, 1, self.n_bins, 1)
        probes[..., self.axis] = centres
        species = (self.species[self.moving], self.species[self.fixed])
        return self.conditioner(probes, x[:, self.fixed], self.box, species)

    def _transform(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        length = self.box[self.axis]
        params = self._params(x)
        theta = 2 * math.pi * x[:, self.moving, self.axis] / length - math.pi
        theta, logdet = circular_rq_spline(theta, params, inverse=inverse)
        out = x.clone()
        out[:, self.moving, self.axis] = (theta + math.pi) * length / (2 * math.pi)
        return out, logdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z, inverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=True)


def alternating_particle_masks(species: Tensor) -> tuple[Tensor, Tensor]:
    """Two complementary ``[N]`` masks: even and odd rank within each species.

    Particles alone in their species (a continuously polydisperse model gives every particle
    its own) have no permutation partner; they are ranked among themselves instead, so that
    both masks move particles.
    """
    rank = torch.zeros_like(species)
    values, counts = species.unique(return_counts=True)
    for s in values[counts > 1]:
        where = (species == s).nonzero()[:, 0]
        rank[where] = torch.arange(where.numel())
    alone = torch.isin(species, values[counts == 1])
    rank[alone] = torch.arange(int(alone.sum()))
    even = rank % 2 == 0
    return even, ~even


def probe_particle_flow(
    box: Tensor, species: Tensor, n_layers: int, n_bins: int = 16, hidden: int = 32
) -> Sequential:
    """``n_layers`` probe couplings: axes 0 … d − 1 of the even-rank particles, then the odd."""
    d = box.numel()
    masks = alternating_particle_masks(species)
    layers = [
        ProbeCoupling(box, species, k % d, masks[(k // d) % 2], n_bins, hidden)
        for k in range(n_layers)
    ]
    return Sequential(*layers)
