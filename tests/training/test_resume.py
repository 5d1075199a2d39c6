"""Every training resumes exactly: killed after a checkpoint at step k and restarted in a
fresh model, it ends with bitwise the parameters of an uninterrupted run to N steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from boltzgen.energies.particles import ParticleEnergy, kob_andersen_ternary
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.flows.ode import VectorField
from boltzgen.flows.particles import probe_particle_flow
from boltzgen.flows.steerable import make_steerable_flow
from boltzgen.samplers.flow_perturbation import FlowPerturbation, PerturbationScale
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.snf import LangevinBlock, MALABlock, StochasticNormalizingFlow
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo
from boltzgen.samplers.temperature_map import HotChains
from boltzgen.training import (
    TrainConfig,
    train,
    train_flow_matching,
    train_perturbation_scale,
    train_snf,
    train_tsf,
)
from boltzgen.training.optimise import Optimiser
from boltzgen.training.temperature_map import train_temperature_map

F64 = torch.float64
STEPS, EVERY, KILLED_AT = 7, 3, 4  # checkpoints after steps 3 and 6; killed in step 5


class _Killed(RuntimeError):
    pass


def _data() -> Tensor:
    return DoubleWell2D().sample_exact(200, torch.Generator().manual_seed(11))


@dataclass
class Case:
    """A fresh model, the module whose parameters training changes, and one training."""

    build: Callable[[], nn.Module]
    trained: Callable[[nn.Module], nn.Module]
    run: Callable[[nn.Module, torch.Generator, Path | None], object]


def _generator() -> BoltzmannGenerator:
    flow = make_spline_flow(2, n_layers=2, hidden=8, n_bins=4, seed=0)
    return BoltzmannGenerator(GaussianPrior(2), flow, DoubleWell2D())


def _train_generator(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    config = TrainConfig(
        steps=STEPS,
        batch_size=32,
        lr=5e-3,
        loss="mixed",
        checkpoint_every=EVERY,
        seed=3,
        lr_schedule="cosine",
        lr_warmup=2,
        validation_fraction=0.2,
        validate_every=2,
    )
    assert isinstance(model, BoltzmannGenerator)
    return train(model, DoubleWell2D(), config, _data(), folder, progress=False)


def _snf() -> StochasticNormalizingFlow:
    prior = GaussianPrior(2, std=torch.tensor([3.0, 1.0], dtype=F64))
    flows = make_spline_flow(2, n_layers=2, hidden=8, tail_bound=8.0, seed=0).layers
    blocks = [flows[0], LangevinBlock(0.5, 0.05, 2), flows[1], MALABlock(1.0, 0.05, 2)]
    return StochasticNormalizingFlow(prior, blocks, DoubleWell2D())


def _train_snf(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    assert isinstance(model, StochasticNormalizingFlow)
    return train_snf(model, STEPS, 32, 1e-2, g, checkpoint_dir=folder, checkpoint_every=EVERY)


def _train_tsf(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    return train_tsf(
        model, DoubleWell2D(), [1.0, 2.0], STEPS, 32, 1e-2, g, _data(), 1e3, 100.0, folder, EVERY
    )


def _perturbation() -> FlowPerturbation:
    stretch = torch.tensor([3.0, 1.0], dtype=F64)
    energy = CorrelatedGaussian(torch.zeros(2, dtype=F64), torch.diag(stretch.square()))
    flow = AffineFlow(torch.zeros(2, dtype=F64), torch.diag(stretch))
    scale = PerturbationScale(2, diagonal=True)
    return FlowPerturbation(GaussianPrior(2), flow, energy, 0.01, scale)


def _train_scale(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    assert isinstance(model, FlowPerturbation)
    return train_perturbation_scale(model, STEPS, 64, 2e-2, g, "kl", folder, EVERY)


def _train_field(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    assert isinstance(model, VectorField)
    return train_flow_matching(model, _data(), STEPS, 32, 1e-2, g, folder, EVERY)


def _glass() -> ParticleEnergy:
    return kob_andersen_ternary(n_particles=32, temperature=1.0)


def _hot_map() -> nn.Module:
    """The probe flow, its initial weights drawn from a fixed seed (global state untouched)."""
    box, species = _glass().box, _glass().species
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return probe_particle_flow(box, species, n_layers=2, n_bins=4, hidden=8).double()


def _train_hot_map(model: nn.Module, g: torch.Generator, folder: Path | None) -> object:
    """On a fresh hot swap-MC stream from the same starts: the stream's chains are resumed."""
    glass = _glass()
    hot = SwapMonteCarlo(glass.at_temperature(2.0), SwapMCConfig(0.2, 0.2))
    x0 = glass.random_starts(4, torch.Generator().manual_seed(5))
    stream = HotChains(hot, x0)
    assert isinstance(model, nn.Module)
    return train_temperature_map(
        model,
        glass,
        stream,
        g,
        STEPS,
        lr=1e-2,
        t_hot=2.0,
        checkpoint_dir=folder,
        checkpoint_every=EVERY,
    )


def _itself(module: nn.Module) -> nn.Module:
    return module


def _scale(module: nn.Module) -> nn.Module:
    assert isinstance(module, FlowPerturbation)
    return module.scale


CASES = {
    "generator": Case(_generator, _itself, _train_generator),
    "snf": Case(_snf, _itself, _train_snf),
    "tsf": Case(lambda: make_steerable_flow(2, 1.0, n_layers=2, hidden=8), _itself, _train_tsf),
    "perturbation_scale": Case(_perturbation, _scale, _train_scale),
    "flow_matching": Case(lambda: VectorField(2, 8, 1, seed=0), _itself, _train_field),
    "temperature_map": Case(_hot_map, _itself, _train_hot_map),
}


def _kill_in_step(monkeypatch: pytest.MonkeyPatch, killed_at: int) -> None:
    """Make the optimiser raise in step ``killed_at`` (0-based), as a killed job would."""
    step = Optimiser.step

    def dying(self: Optimiser, loss: Tensor, at: int) -> None:
        if at == killed_at:
            raise _Killed(f"killed in step {at}")
        step(self, loss, at)

    monkeypatch.setattr(Optimiser, "step", dying)


@pytest.mark.parametrize("name", list(CASES))
def test_a_killed_training_resumes_bit_for_bit(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    straight = case.build()
    case.run(straight, torch.Generator().manual_seed(7), None)
    with monkeypatch.context() as patch:
        _kill_in_step(patch, KILLED_AT)
        with pytest.raises(_Killed):
            case.run(case.build(), torch.Generator().manual_seed(7), tmp_path)
    resumed = case.build()
    case.run(resumed, torch.Generator().manual_seed(99), tmp_path)  # its state is restored
    a, b = case.trained(straight).state_dict(), case.trained(resumed).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", ["snf", "flow_matching"])
def test_a_resume_with_other_settings_is_refused(name: str, tmp_path: Path) -> None:
    """A checkpoint holds the settings it was written with; changed ones are an error."""
    model = CASES[name].build()
    g = torch.Generator().manual_seed(1)
    if name == "snf":
        assert isinstance(model, StochasticNormalizingFlow)
        train_snf(model, 2, 16, 1e-2, g, checkpoint_dir=tmp_path)
        with pytest.raises(ValueError, match="lr"):
            train_snf(model, 4, 16, 2e-2, g, checkpoint_dir=tmp_path)
    else:
        assert isinstance(model, VectorField)
        train_flow_matching(model, _data(), 2, 16, 1e-2, g, tmp_path)
        with pytest.raises(ValueError, match="steps"):
            train_flow_matching(model, _data(), 4, 16, 1e-2, g, tmp_path)
