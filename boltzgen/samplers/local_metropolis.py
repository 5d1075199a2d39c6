"""Local Metropolis sweeps for lattice fields: the classical baseline of lattice QFT.

Each sweep visits the energy's independent sets in turn (checkerboard colours of a
scalar field; links of one direction and parity for U(1)); within a set no two
variables interact, so all of them are updated at once: propose φ' = φ + ε·U(−1, 1)
(a symmetric proposal) at every variable of the set and accept each with probability
min(1, e^{−ΔS_x}), ΔS_x the change of the energy's ``local_action`` at that variable
(Metropolis et al., J. Chem. Phys. 21, 1087 (1953); for lattice gauge theory Creutz,
"Monte Carlo study of quantized SU(2) gauge theory", Phys. Rev. D 21, 2308 (1980)).
Every sub-update leaves p ∝ e^{−u} invariant, so the sweep does.

The energy must offer ``local_action(x) -> [B, *event]`` and ``independent_sets() ->
list[bool[*event]]`` (:class:`~boltzgen.energies.lattice.Phi4`,
:class:`~boltzgen.energies.lattice.U1Wilson`).

Cost: one local-action evaluation of the whole lattice costs about one evaluation of u
and is charged as one energy evaluation per chain: one at the start, two per set and
sweep (the proposal's, and the current field's after the accepted changes), and each
kept configuration's u.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.kernels.noise import uniform
from boltzgen.records import CostMeter, WeightedSamples


@dataclass(frozen=True)
class LocalChains:
    """``x: [C, *event]`` and its local actions ``[C, *event]``."""

    x: Tensor
    local: Tensor


class LocalMetropolis:
    """Checkerboard local Metropolis on C chains of a lattice field.

    Args:
        energy: a lattice energy with ``local_action`` and ``independent_sets``.
        step_size: ε, the half-width of the uniform proposal.
    """

    def __init__(self, energy: Energy, step_size: float = 0.5):
        if not hasattr(energy, "local_action") or not hasattr(energy, "independent_sets"):
            raise TypeError(
                f"{type(energy).__name__} has no local_action/independent_sets: "
                "local Metropolis needs a lattice energy"
            )
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.energy, self.step_size = energy, float(step_size)
        self.sets = energy.independent_sets()

    def init(self, x0: Tensor) -> LocalChains:
        self._charge(x0.shape[0])
        return LocalChains(x0.detach().clone(), self.energy.local_action(x0))

    def _charge(self, n: int) -> None:
        self.energy.counter.energy += n

    def step(self, state: LocalChains, generator: torch.Generator) -> tuple[LocalChains, Tensor]:
        """One sweep over every set; returns the state and the acceptance rate ``[C]``."""
        x, local = state.x, state.local
        accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for mask in self.sets:
            mask = mask.to(x.device)
            shift = self.step_size * (2 * uniform(x, generator) - 1)
            proposal = torch.where(mask, x + shift, x)
            new_local = self.energy.local_action(proposal)
            self._charge(2 * x.shape[0])
            ok = mask & (uniform(x, generator).log() < local - new_local)
            x = torch.where(ok, proposal, x)
            local = self.energy.local_action(x)
            dims = tuple(range(1, x.dim()))
            accepted += ok.to(x.dtype).sum(dims) / mask.sum()
        return LocalChains(x, local), accepted / len(self.sets)

    def sample(
        self, x0: Tensor, n_steps: int, generator: torch.Generator, n_warmup: int = 100
    ) -> WeightedSamples:
        """``n_warmup`` discarded sweeps, then ``n_steps`` kept (step-major, C chains)."""
        if n_steps < 1 or n_warmup < 0:
            raise ValueError(f"need n_steps ≥ 1 and n_warmup ≥ 0, got {n_steps}, {n_warmup}")
        meter = CostMeter(self.energy)
        with meter.measure():
            state = self.init(x0)
            for _ in range(n_warmup):
                state, _ = self.step(state, generator)
            xs, rates = [], []
            for _ in range(n_steps):
                state, rate = self.step(state, generator)
                xs.append(state.x)
                rates.append(rate)
            x = torch.cat(xs)
            u = self.energy.energy(x).detach()
        info = {
            "sampler": "local_metropolis",
            "acceptance": float(torch.stack(rates).mean()),
            "step_size": self.step_size,
            "n_warmup": n_warmup,
            "n_steps": n_steps,
        }
        return WeightedSamples(x, torch.zeros_like(u), u, meter.cost, info, n_chains=x0.shape[0])


def local_metropolis_evaluations(n_chains: int, n_warmup: int, n_steps: int, n_sets: int) -> int:
    """Evaluations of :meth:`LocalMetropolis.sample`: C·(1 + 2S·(n_warmup + n_steps) + n_steps)."""
    return n_chains * (1 + 2 * n_sets * (n_warmup + n_steps) + n_steps)
