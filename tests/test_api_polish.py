"""The public API a newcomer meets: molecules, resampling, trajectories, reprs, one default."""

import dataclasses
import math

import pytest
import torch

import boltzgen as bg
from boltzgen.runner.cli import main
from boltzgen.runner.methods.training import TrainParams
from boltzgen.training.generator import TrainConfig


def samples_with_weights(log_weights):
    n = len(log_weights)
    x = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 2)
    return bg.WeightedSamples(x, torch.tensor(log_weights, dtype=torch.float64), torch.zeros(n))


def test_molecules_is_importable_from_the_package():
    assert callable(bg.molecules.alanine_peptide)


def test_resampling_reproduces_the_weights():
    weights = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64)
    samples = samples_with_weights(weights.log().tolist())
    n = 10_000
    out = samples.resample(n, torch.Generator().manual_seed(0))
    counts = torch.bincount(out.x[:, 0].long(), minlength=4).double()
    # systematic resampling: every count is within one of n·w_i
    assert torch.all((counts - n * weights).abs() <= 1.0)
    assert torch.all(out.log_weights == 0) and len(out) == n


def test_resampling_recovers_a_weighted_mean():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 1, dtype=torch.float64, generator=gen)
    log_w = 0.8 * x[:, 0]  # N(0,1) reweighted to N(0.8, 1)
    samples = bg.WeightedSamples(x, log_w, torch.zeros(4000))
    out = samples.resample(4000, torch.Generator().manual_seed(2))
    exact = float((torch.softmax(log_w, 0) * x[:, 0]).sum())
    assert float(out.x.mean()) == pytest.approx(exact, abs=0.03)


def test_resampling_without_a_finite_weight_is_an_error():
    with pytest.raises(ValueError, match="nothing to resample"):
        samples_with_weights([-math.inf, -math.inf]).resample(3, torch.Generator())


def test_to_mdtraj_keeps_the_coordinates_in_nm():
    system = bg.load_system("alanine_dipeptide_vacuum")
    x = system.initial_positions.expand(3, -1, -1).clone()
    samples = bg.WeightedSamples(x, torch.zeros(3), torch.zeros(3))
    trajectory = samples.to_mdtraj(system)
    assert trajectory.n_frames == 3 and trajectory.n_atoms == 22
    torch.testing.assert_close(
        torch.from_numpy(trajectory.xyz[1]).double(), x[1], atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="no topology"):
        samples_with_weights([0.0]).to_mdtraj(bg.load_system("double_well_2d"))


def test_reprs_are_one_readable_line():
    energy = bg.load_system("double_well_2d").energy
    before = energy.counter.energy
    energy.energy(torch.zeros(5, 2))
    assert repr(energy) == (
        f"DoubleWell(event_shape=2, temperature=1, evaluated: {before + 5} energies, 0 forces)"
    )
    text = repr(samples_with_weights([0.0, 0.0, 0.0, 0.0]))
    assert text.startswith("WeightedSamples(n=4 of 2, independent draws, Kish ESS 4.0")
    assert "tensor" not in text


def test_yaml_and_library_share_the_training_defaults():
    library = TrainConfig()
    for f in dataclasses.fields(TrainParams()):
        if hasattr(library, f.name) and f.name != "grad_clip":
            assert getattr(TrainParams(), f.name) == getattr(library, f.name), f.name


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"boltzgen {bg.__version__}"


def test_help_has_no_rest_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_systems_are_aligned_with_descriptions(systems_listing):
    code, out = systems_listing
    assert code == 0
    lines = out.splitlines()
    for name in ("shape", "T", "reference", "description"):
        column = lines[0].index(f"  {name}") + 2
        assert all(line[column - 1] == " " and line[column] != " " for line in lines[1:]), name
    assert "double well" in " ".join(lines).lower()


def test_generator_repr_names_its_target_and_size():
    from boltzgen.runner.methods.flows import FlowParams, build_generator

    system = bg.load_system("double_well_2d")
    model = build_generator(system, FlowParams(n_layers=2, hidden=8), seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert "target=DoubleWell(event_shape=2" in repr(model)
    assert f"trainable parameters={n:,}" in repr(model)
