"""Peptide cards through OpenMM: exact energies, φ states, MD reference sets."""

import numpy as np
import openmm
import pytest
import torch
from openmm import unit

from boltzgen.energies.units import kt_kj_per_mol
from boltzgen.reference import MDReferenceSettings, generate_md_reference, load_reference
from boltzgen.systems import count_transitions, load_system

PEPTIDES = {
    "alanine_dipeptide_vacuum": 22,
    "alanine_dipeptide_implicit": 22,
    "alanine_tripeptide_implicit": 32,
    "alanine_tetrapeptide_implicit": 42,
    "alanine_hexapeptide_implicit": 62,
}


def openmm_energy(system: openmm.System, x: np.ndarray, platform: str = "CPU") -> float:
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform)
    )
    context.setPositions(x * unit.nanometer)
    energy = context.getState(getEnergy=True).getPotentialEnergy()
    return energy.value_in_unit(unit.kilojoule_per_mole)


@pytest.mark.parametrize("backend", ["torch", "openmm"])
@pytest.mark.parametrize("name, n_atoms", PEPTIDES.items())
def test_card_energy_equals_openmm_on_perturbed_frames(name, n_atoms, backend):
    system = load_system(name, backend=backend)
    expected_type = "TorchForceField" if backend == "torch" else "OpenMMEnergy"
    assert type(system.energy).__name__ == expected_type
    assert system.energy.event_shape == (n_atoms, 3) and system.topology.n_atoms == n_atoms
    gen = torch.Generator().manual_seed(0)
    x = system.initial_positions + 0.005 * torch.randn(
        4, n_atoms, 3, generator=gen, dtype=torch.float64
    )
    u = system.energy.energy(x)
    kt = kt_kj_per_mol(300.0)
    for i in range(4):
        platform = "Reference" if backend == "torch" else "CPU"
        expected = openmm_energy(system.openmm_system, x[i].numpy(), platform) / kt
        assert float(u[i]) == pytest.approx(expected, rel=1e-10)
    forces = [f.__class__.__name__ for f in system.openmm_system.getForces()]
    assert ("GBSAOBCForce" in forces) == name.endswith("implicit")


def test_implicit_card_pool_matches_in_process():
    system = load_system("alanine_dipeptide_implicit", backend="openmm")
    from boltzgen.energies.openmm import OpenMMEnergy

    x = system.initial_positions + 0.01 * torch.randn(
        6, 22, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    with OpenMMEnergy(system.openmm_system, 300.0, n_workers=2) as pool:
        u_pool, f_pool = pool.energy_and_force(x)
    u, f = system.energy.energy_and_force(x)
    assert torch.equal(u, u_pool) and torch.equal(f, f_pool)


def test_alanine_dipeptide_states_are_phi_intervals():
    system = load_system("alanine_dipeptide_implicit")
    x = system.initial_positions[None]
    assert bool(system.states["phi_neg"](x)[0]) and not bool(system.states["phi_pos"](x)[0])
    assert system.free_energy_pairs == [("phi_neg", "phi_pos")]


@pytest.mark.parametrize(
    "labels, expected",
    [("AABBA", 2), ("A..B..A..B", 3), ("AAAA", 0), ("..B..", 0), ("ABABAB", 5)],
)
def test_count_transitions_ignores_frames_in_neither_state(labels, expected):
    in_a = torch.tensor([c == "A" for c in labels])
    in_b = torch.tensor([c == "B" for c in labels])
    assert count_transitions(in_a, in_b) == expected


def test_md_reference_set_round_trip_and_checksum(tmp_path, monkeypatch, vacuum_card):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    system = load_system(vacuum_card("{kind: md}"), backend="openmm")
    settings = MDReferenceSettings(ns=0.002, n_frames=20, equilibration_ps=0.5, seed=3)
    out = generate_md_reference(system, settings, progress=False)
    reference = load_reference("alanine_dipeptide_vacuum")
    assert reference.x.shape == (20, 22, 3) and reference.phi.shape == (20, 1)
    assert reference.manifest["temperature"] == 300.0 and reference.manifest["seed"] == 3
    assert reference.manifest["split"]["training"] == [0, 10]
    assert reference.manifest["split"]["evaluation"] == [10, 20]
    assert "assigned" not in reference.manifest["split"]  # written with the set, not on load
    torch.testing.assert_close(
        reference.energies, system.energy.energy(reference.x), rtol=1e-8, atol=0
    )
    assert (out / "trajectory.dcd").exists() and (out / "trajectory.pdb").exists()
    assert not (out / "checkpoint.npz").exists()
    estimate = system.reference_estimates()["phi_pos_vs_phi_neg"]
    assert estimate.value is None and "unconverged" in estimate.note
    with np.load(out / "reference.npz") as data:
        arrays = dict(data)
    arrays["u"] = arrays["u"] + 1.0
    np.savez_compressed(out / "reference.npz", **arrays)
    with pytest.raises(ValueError, match="checksum"):
        load_reference("alanine_dipeptide_vacuum")


def test_missing_reference_is_reported_not_invented(tmp_path, monkeypatch):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    estimate = load_system("alanine_dipeptide_implicit").reference_estimates()
    assert estimate["phi_pos_vs_phi_neg"].value is None


def test_card_with_a_sequence_builds_and_minimises(tmp_path):
    card = tmp_path / "ace_gly_nme.yaml"
    card.write_text(
        "name: ace_gly_nme\n"
        "energy: {kind: openmm, sequence: G, forcefield: [amber99sbildn.xml]}\n"
        "temperature: 310.0\n"
        "states: {neg: {phi: 0, max: 0.0}, pos: {phi: 0, min: 0.0}}\n"
        "free_energies: [{a: neg, b: pos}]\n"
    )
    system = load_system(card)
    assert system.energy.event_shape == (19, 3) and system.temperature == 310.0
    u = float(system.energy.energy(system.initial_positions[None])[0])
    kt = kt_kj_per_mol(310.0)
    assert u == pytest.approx(
        openmm_energy(system.openmm_system, system.initial_positions.numpy()) / kt
    )


def test_pt_reference_gives_an_mbar_free_energy(tmp_path, monkeypatch):
    from boltzgen.reference import PTReferenceSettings, generate_pt_reference

    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    system = load_system("alanine_dipeptide_vacuum")
    settings = PTReferenceSettings(
        n_temperatures=3,
        t_max=500.0,
        n_iterations=12,
        steps_per_iteration=50,
        n_discard=2,
        n_frames=8,
    )
    out = generate_pt_reference(system, settings)
    reference = load_reference("alanine_dipeptide_vacuum", "pt")
    assert reference.x.shape == (8, 22, 3)
    assert set(reference.manifest["free_energies"]) == {"phi_pos_vs_phi_neg"}
    assert reference.manifest["split"] == {
        "rule": reference.manifest["split"]["rule"],
        "training": [0, 4],
        "evaluation": [4, 8],
    }
    assert "evaluation" in reference.manifest["free_energies_from"]
    assert reference.manifest["cost"]["force_evals"] == 3 * 12 * 50
    assert (out / "pt.nc").exists()
    rungs = reference.manifest["rung_free_energies"]
    assert [r["temperature"] for r in rungs] == pytest.approx(reference.manifest["ladder"])
    assert rungs[0]["free_energies"] == reference.manifest["free_energies"]
    hot = rungs[1]["temperature"]
    at_rung = load_system("alanine_dipeptide_vacuum", temperature=hot).reference_estimates()
    expected = rungs[1]["free_energies"]["phi_pos_vs_phi_neg"]
    assert at_rung["phi_pos_vs_phi_neg"].value == pytest.approx(expected["value"], nan_ok=True)
    assert at_rung["phi_pos_vs_phi_neg"].stderr == pytest.approx(expected["stderr"], nan_ok=True)
    assert "rung" in at_rung["phi_pos_vs_phi_neg"].note
    between = load_system("alanine_dipeptide_vacuum", temperature=0.5 * (300.0 + hot))
    missing = between.reference_estimates()["phi_pos_vs_phi_neg"]
    assert missing.value is None and repr(hot) in missing.note


@pytest.mark.slow
def test_unsupported_force_falls_back_to_openmm_with_a_warning(tmp_path):
    from boltzgen.systems import build_system

    card = {
        "name": "amoeba",
        "energy": {"kind": "openmm", "sequence": "A", "forcefield": ["amoeba2018.xml"]},
        "temperature": 300.0,
    }
    with pytest.warns(UserWarning, match="AmoebaMultipoleForce"):
        system = build_system(card, tmp_path / "amoeba.yaml")
    assert type(system.energy).__name__ == "OpenMMEnergy"
