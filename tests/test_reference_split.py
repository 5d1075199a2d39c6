"""Reference sets are split into disjoint training and evaluation parts; methods train on
the first and are scored on the second; training frames are charged what they cost."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from boltzgen.observables.peptides import phi_psi
from boltzgen.reference import load_reference, reference_dir, sha256
from boltzgen.runner.evaluate import load_reference_for
from boltzgen.runner.methods.training import (
    TrainParams,
    data_charge,
    later_stage_data,
    training_data,
)
from boltzgen.systems import load_system

NAME = "alanine_dipeptide_vacuum"
N_FRAMES = 40
MD_COST = {"energy_evals": 0, "force_evals": 40_000, "wall_s": 4.0}


@pytest.fixture
def system(tmp_path, monkeypatch, vacuum_card):
    """The vacuum dipeptide (its card reading an MD set) with a reference set written before
    splits existed (its manifest records the energy and temperature it was made for, as every
    route writes them)."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    system = load_system(vacuum_card("{kind: md}"))
    g = torch.Generator().manual_seed(0)
    noise = 0.003 * torch.randn(
        N_FRAMES, *system.energy.event_shape, generator=g, dtype=torch.float64
    )
    x = system.initial_positions + noise
    phi, psi = phi_psi(x, system.topology)
    out = reference_dir(NAME, "md")
    out.mkdir(parents=True)
    arrays = {"x": x, "u": system.energy.energy(x), "phi": phi, "psi": psi}
    np.savez_compressed(out / "reference.npz", **{k: v.numpy() for k, v in arrays.items()})
    manifest = {"n_frames": N_FRAMES, "cost": MD_COST, "sha256": {}}
    manifest.update(energy=system.card["energy"], temperature=system.temperature)
    manifest["sha256"]["reference.npz"] = sha256(out / "reference.npz")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return system


def test_an_unsplit_set_gets_disjoint_halves_on_load(system):
    whole = load_reference(NAME)
    train, evaluation = (load_reference(NAME, part=p) for p in ("training", "evaluation"))
    assert whole.manifest["split"]["training"] == [0, N_FRAMES // 2]
    assert whole.manifest["split"]["evaluation"] == [N_FRAMES // 2, N_FRAMES]
    assert len(train.x) + len(evaluation.x) == N_FRAMES
    torch.testing.assert_close(torch.cat([train.x, evaluation.x]), whole.x)
    assert not set(train.energies.tolist()) & set(evaluation.energies.tolist())


def test_methods_are_scored_against_evaluation_frames_only(system):
    reference = load_reference_for(system, 1000)
    evaluation = load_reference(NAME, part="evaluation")
    assert set(reference.energies.tolist()) == set(evaluation.energies.tolist())
    assert reference.phi_psi.shape == (N_FRAMES // 2, 2)


def test_forward_kl_data_come_from_the_training_part_and_are_charged(system):
    data = training_data(system, TrainParams(loss="forward_kl", n_data=15), torch.Generator())
    train = load_reference(NAME, part="training")
    rows = {tuple(r) for r in train.x.reshape(len(train.x), -1).tolist()}
    assert all(tuple(r) in rows for r in data.x.reshape(len(data.x), -1).tolist())
    per_frame = MD_COST["force_evals"] / N_FRAMES
    assert data.source == "md" and data.cost.force_evals == math.ceil(15 * per_frame)
    assert data_charge(system, TrainParams(loss="forward_kl", n_data=15)) == 15 * per_frame
    all_frames = data_charge(system, TrainParams(loss="mixed", n_data=10**6))
    assert all_frames == (N_FRAMES // 2) * per_frame  # only the training part exists for it


@pytest.mark.parametrize("n_later", [10, 15, 18, 10**6])
def test_a_later_stage_reuses_the_frames_paid_for_and_pays_only_for_new_ones(system, n_later):
    first_params = TrainParams(loss="forward_kl", n_data=15)
    later_params = TrainParams(loss="mixed", n_data=n_later)
    g = torch.Generator().manual_seed(3)
    first = training_data(system, first_params, g)
    later = later_stage_data(system, first, later_params, g)
    shared = min(15, len(later.x))
    torch.testing.assert_close(later.x[:shared], first.x[:shared])
    n_new = max(0, min(n_later, N_FRAMES // 2) - 15)
    assert len({tuple(r) for r in torch.cat([first.x, later.x]).flatten(1).tolist()}) == 15 + n_new
    charged = later.cost.energy_evals + later.cost.force_evals
    assert charged == data_charge(system, later_params, first_params)
    per_frame = MD_COST["force_evals"] / N_FRAMES
    assert charged == pytest.approx(n_new * per_frame)


def test_budget_counts_the_charge_of_reference_frames(system, tmp_path, run_on_debug):
    budget = 30_000
    raw = {
        "name": "md-data",
        "systems": [str(tmp_path / f"{NAME}.yaml")],
        "seeds": [0],
        "n_reference": 100,
        "budget": {"energy_evals": budget},
        "methods": {
            "bg": {
                "method": "boltzmann_generator",
                "flow": {"n_layers": 2, "hidden": 8},
                "train": {"loss": "forward_kl", "steps": 5, "batch_size": 8, "n_data": 15},
            }
        },
    }
    out = run_on_debug(raw, tmp_path / "run")
    result = json.loads((out / NAME / "bg" / "seed0" / "result.json").read_text())
    c = result["cost"]
    spent = c["energy_evals"] + c["force_evals"] + c["train_energy_evals"] + c["train_force_evals"]
    assert 0.8 * budget <= spent <= budget, c
    assert result["info"]["training_data"][0]["charged_evals"] == 15_000


def test_oversampled_frames_are_counted_and_charged_once(system):
    plain = training_data(system, TrainParams(loss="forward_kl", n_data=15), torch.Generator())
    params = TrainParams(loss="forward_kl", n_data=15, oversample={"phi_neg": 3})
    data = training_data(system, params, torch.Generator())
    in_state = system.states["phi_neg"](plain.x)
    assert int(in_state.sum()) > 0
    torch.testing.assert_close(data.x, plain.x)
    assert data.repeats.tolist() == [3 if s else 1 for s in in_state.tolist()]
    assert data.cost == plain.cost and data.record()["n"] == 15
    assert data.record()["repeated_rows"] == 2 * int(in_state.sum())
    later = later_stage_data(system, data, TrainParams(loss="mixed", n_data=15), torch.Generator())
    assert later.cost.force_evals == 0 and later.repeats is None
    with pytest.raises(ValueError, match="phi_up"):
        training_data(system, TrainParams(loss="forward_kl", oversample={"phi_up": 2}), None)
    with pytest.raises(ValueError, match="integers"):
        TrainParams(oversample={"phi_pos": 0})
