"""What every reference route writes: frames with their torsions, and ladder ΔF by MBAR."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from boltzgen.observables.peptides import phi_psi
from boltzgen.records import WeightedSamples
from boltzgen.records.reference_sets import write_frames
from boltzgen.systems import System, count_transitions


def torsions(system: System, x: Tensor) -> tuple[Tensor, Tensor]:
    """Backbone φ, ψ ``[n, K]`` of a peptide's frames ``x: [n, N, 3]``; ``K = 0`` otherwise."""
    if system.topology is None:
        empty = x.new_zeros(x.shape[0], 0)
        return empty, empty
    return phi_psi(x, system.topology)


def save_frames(system: System, out: Path, x: Tensor, u: Tensor) -> None:
    """Write ``reference.npz``: frames ``x``, reduced energies ``u`` and their torsions."""
    phi, psi = torsions(system, x)
    write_frames(out, x, u, phi, psi)


def rung_free_energies(
    system: System, samples: WeightedSamples, first_iteration: int
) -> list[dict[str, Any]]:
    """MBAR ΔF of each named pair at every temperature of the ladder, lowest first, over
    the ladder iterations from ``first_iteration`` on:
    ``[{"temperature": T_k, "free_energies": {name: {"value", "stderr"}}}, …]``.

    Only the iterations of the evaluation part count, so the reference ΔF shares no
    configuration with the training part.

    The same MBAR solution over the whole ladder gives each pair's ΔF in every state it
    pools, so the hotter rungs come at the price of the lowest: the reference of a second
    temperature (a generator trained at T_0 and weighed at T_k) without a second run.
    """
    # pymbar is loaded on first use: its import takes a second and prints a banner
    from boltzgen.metrics.mbar import ladder_state_free_energies

    info = dict(samples.info)
    info["ladder_energies"] = torch.as_tensor(info["ladder_energies"])[first_iteration:]
    info["ladder_states"] = {
        k: torch.as_tensor(v)[first_iteration:] for k, v in info["ladder_states"].items()
    }
    later = replace(samples, info=info)
    temperatures = [float(t) for t in info["temperatures"]]
    rungs = [{"temperature": t, "free_energies": {}} for t in temperatures]
    for a, b in system.free_energy_pairs:
        estimates = ladder_state_free_energies(later, a, b, range(len(temperatures)))
        for rung, estimate in zip(rungs, estimates, strict=True):
            rung["free_energies"][f"{b}_vs_{a}"] = {
                "value": estimate.value,
                "stderr": estimate.stderr,
            }
    return rungs


def chain_transitions(system: System, samples: WeightedSamples) -> dict[str, Any]:
    """Transitions between the two states of each named pair, summed over the chains.

    ``samples`` hold ``n_chains`` chains step-major (row ``t·C + c`` is step t of chain
    c); a transition is a switch from one state to the other, frames in neither ignored.
    """
    n_chains = samples.n_chains or 1
    out = {}
    for a, b in system.free_energy_pairs:
        in_a, in_b = system.states[a](samples.x), system.states[b](samples.x)
        out[f"{b}_vs_{a}"] = sum(
            count_transitions(in_a[c::n_chains], in_b[c::n_chains]) for c in range(n_chains)
        )
    return out
