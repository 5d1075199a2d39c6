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
