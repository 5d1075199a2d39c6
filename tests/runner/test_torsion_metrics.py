"""T-W2 and the Ramachandran KL of a run use every backbone (φ, ψ) pair of a peptide."""

from __future__ import annotations

import math

import pytest
import torch

from boltzgen.metrics.torsions import backbone_torsions, mean_ramachandran_kl, ramachandran_kl
from boltzgen.observables.peptides import phi_psi
from boltzgen.records import WeightedSamples
from boltzgen.runner.evaluate import Reference, _torsion_metrics
from boltzgen.systems import load_system

TURN = 1.5  # radians added to ψ of the second residue


def rotate_about(x: torch.Tensor, moving: list[int], a: int, b: int, angle: float):
    """Rotate atoms ``moving`` of frames ``x [n, N, 3]`` by ``angle`` about the bond a → b."""
    axis = x[:, b] - x[:, a]
    k = axis / axis.norm(dim=1, keepdim=True)
    v = x[:, moving] - x[:, b, None]
    k_ = k[:, None]
    cos, sin = math.cos(angle), math.sin(angle)
    dot = (v * k_).sum(-1, keepdim=True)
    rotated = v * cos + torch.cross(k_.expand_as(v), v, dim=-1) * sin + k_ * dot * (1 - cos)
    out = x.clone()
    out[:, moving] = rotated + x[:, b, None]
    return out


@pytest.fixture(scope="module")
def tripeptide():
    system = load_system("alanine_tripeptide_implicit", backend="openmm")
    g = torch.Generator().manual_seed(1)
    shape = (300, *system.energy.event_shape)
    frames = system.initial_positions + 0.01 * torch.randn(shape, generator=g, dtype=torch.float64)
    ca, c = (
        next(a.index for a in system.topology.residue(2).atoms if a.name == n) for n in ["CA", "C"]
    )
    moving = [a.index for a in system.topology.atoms if a.index > c and a.residue.index >= 2]
    return system, frames, rotate_about(frames, moving, ca, c, TURN)


def test_rotation_changes_only_the_second_psi(tripeptide):
    system, frames, turned = tripeptide
    (phi0, psi0), (phi1, psi1) = phi_psi(frames, system.topology), phi_psi(turned, system.topology)
    torch.testing.assert_close(phi1, phi0)
    torch.testing.assert_close(psi1[:, 0], psi0[:, 0])
    shift = torch.remainder(psi1[:, 1] - psi0[:, 1] + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(shift, torch.full_like(shift, TURN))


def test_t_w2_and_ramachandran_kl_see_the_second_residue(tripeptide):
    """Same first residue, ψ₂ shifted by 1.5 rad in every frame: T-W2 over the whole
    backbone vector is at most 1.5 (the identity coupling) and far from 0."""
    system, frames, turned = tripeptide
    reference = Reference(
        torch.zeros(len(frames)), backbone_torsions(*phi_psi(frames, system.topology))
    )
    assert reference.phi_psi.shape == (300, 4)
    samples = WeightedSamples(turned, torch.zeros(300), torch.zeros(300))
    scores = _torsion_metrics(system, samples, reference, torch.Generator().manual_seed(0))
    assert 1.0 < scores["t_w2"] <= TURN + 1e-9
    assert scores["ramachandran_kl"] > 1.0
    same = _torsion_metrics(
        system, WeightedSamples(frames, torch.zeros(300), torch.zeros(300)), reference, None
    )
    assert same["t_w2"] == pytest.approx(0.0, abs=1e-12) and same["ramachandran_kl"] == 0.0


def test_mean_ramachandran_kl_averages_residues():
    g = torch.Generator().manual_seed(3)
    a = 2 * math.pi * torch.rand(2000, 4, generator=g, dtype=torch.float64) - math.pi
    b = a.clone()
    b[:, 2:] = torch.remainder(b[:, 2:] + 2.0 + math.pi, 2 * math.pi) - math.pi
    second = ramachandran_kl(a[:, 2:], b[:, 2:])
    assert mean_ramachandran_kl(a, b) == pytest.approx(0.5 * (0.0 + second), rel=1e-12)
