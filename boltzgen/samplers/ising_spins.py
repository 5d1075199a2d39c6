"""Single-spin heat bath and Metropolis for the Ising model, reported in its Gaussian field.

The chains move spins s ∈ {±1}^{L×L} at coupling K by checkerboard sweeps (one colour
at a time; spins of a colour do not interact, so they update together). With the local
field h_i = Σ_{j∼i} s_j:

* heat bath (Glauber): s_i = +1 with probability σ(2K h_i), drawn from its conditional;
* Metropolis: flip s_i with probability min(1, e^{−2K s_i h_i}).

Both leave the Boltzmann distribution e^{K Σ s_i s_j}/Z invariant (Metropolis et al. 1953;
Glauber, J. Math. Phys. 4, 294 (1963)). Every kept sweep is reported as a configuration
of the continuous system (:class:`~boltzgen.energies.lattice.IsingGaussian`) by the
exact conditional draw x | s ~ N(Js, J), so the samples are distributed as e^{−u(x)}/Z
and every observable of the field applies.

Cost: a sweep reads each spin's four neighbours once, about the work of one evaluation
of u, and is charged as one energy evaluation per chain; each kept configuration's u is
evaluated too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzgen.energies.lattice import IsingGaussian
from boltzgen.energies.lattice.phi4 import checkerboard
from boltzgen.kernels.noise import uniform
from boltzgen.records import CostMeter, WeightedSamples

RULES = ("heat_bath", "metropolis")


def _neighbours(s: Tensor) -> Tensor:
    return s.roll(1, -1) + s.roll(-1, -1) + s.roll(1, -2) + s.roll(-1, -2)


class IsingSpinSampler:
    """Checkerboard heat-bath or Metropolis sweeps of C Ising chains.

    Args:
        energy: the Gaussian-relaxed Ising model (its L and K; its field for the output).
        rule: ``"heat_bath"`` or ``"metropolis"``.
    """

    def __init__(self, energy: IsingGaussian, rule: str = "heat_bath"):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.energy, self.rule = energy, rule
        self.colours = checkerboard(energy.length)

    def step(self, spins: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One sweep of ``spins: [C, L, L]``; returns spins and the flip rate ``[C]``."""
        k = self.energy.coupling
        flips = torch.zeros(spins.shape[0], dtype=spins.dtype)
        for colour in self.colours:
            h = _neighbours(spins)
            u = uniform(spins, generator)
            if self.rule == "heat_bath":
                new = torch.where(u < torch.sigmoid(2 * k * h), 1.0, -1.0).to(spins.dtype)
            else:
                new = torch.where(u.log() < -2 * k * spins * h, -spins, spins)
            new = torch.where(colour, new, spins)
            flips += (new != spins).to(spins.dtype).mean(dim=(-2, -1))
            spins = new
        self.energy.counter.energy += spins.shape[0]
        return spins, flips

    def sample(
        self, spins0: Tensor, n_steps: int, generator: torch.Generator, n_warmup: int = 100
    ) -> WeightedSamples:
        """``n_warmup`` discarded sweeps, then ``n_steps`` kept, as fields x | s."""
        if n_steps < 1 or n_warmup < 0:
            raise ValueError(f"need n_steps ≥ 1 and n_warmup ≥ 0, got {n_steps}, {n_warmup}")
        meter = CostMeter(self.energy)
        with meter.measure():
            spins = spins0.detach().clone()
            for _ in range(n_warmup):
                spins, _ = self.step(spins, generator)
            kept, rates = [], []
            for _ in range(n_steps):
                spins, rate = self.step(spins, generator)
                kept.append(spins)
                rates.append(rate)
            x = self.energy.sample_field(torch.cat(kept), generator)
            u = self.energy.energy(x).detach()
        info = {
            "sampler": f"ising_{self.rule}",
            "acceptance": float(torch.stack(rates).mean()),
            "n_warmup": n_warmup,
            "n_steps": n_steps,
        }
        n_chains = spins0.shape[0]
        return WeightedSamples(x, torch.zeros_like(u), u, meter.cost, info, n_chains=n_chains)


def random_spins(n_chains: int, length: int, generator: torch.Generator) -> Tensor:
    """Independent uniform spins ``[C, L, L]`` (the K = 0 state, overdispersed)."""
    draw = torch.rand(n_chains, length, length, generator=generator, dtype=torch.float64)
    return torch.where(draw < 0.5, 1.0, -1.0).to(torch.float64)


def ising_spin_evaluations(n_chains: int, n_warmup: int, n_steps: int) -> int:
    """Evaluations of :meth:`IsingSpinSampler.sample`: C·(n_warmup + 2·n_steps)."""
    return n_chains * (n_warmup + 2 * n_steps)
