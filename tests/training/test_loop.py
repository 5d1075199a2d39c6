"""The training loop: it learns, it charges its cost, and it resumes bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import TrainConfig, TrainResult, train
from boltzgen.training.generator import CHECKPOINT_NAME, _split
from boltzgen.training.optimise import recent_mean


class _Crash(RuntimeError):
    pass


class _CrashingDoubleWell(DoubleWell2D):
    """The double well that raises on its ``crash_at``-th evaluation (a killed job)."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.calls, self.crash_at = 0, crash_at

    def _energy(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash("simulated interruption")
        return super()._energy(x)


def _model(seed: int = 0) -> BoltzmannGenerator:
    flow = make_spline_flow(2, n_layers=2, hidden=8, n_bins=4, seed=seed)
    return BoltzmannGenerator(GaussianPrior(2), flow, DoubleWell2D())


def _data(n: int = 500) -> Tensor:
    return DoubleWell2D().sample_exact(n, torch.Generator().manual_seed(11))


def _config(steps: int, **changes: object) -> TrainConfig:
    base = {"batch_size": 32, "lr": 5e-3, "loss": "mixed", "checkpoint_every": 4, "seed": 3}
    return TrainConfig(steps=steps, **{**base, **changes})


def _assert_same_training(a: BoltzmannGenerator, b: BoltzmannGenerator) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_history(a: TrainResult, b: TrainResult) -> None:
    assert a.losses == b.losses
    assert [x for x in a.ess_fractions if not math.isnan(x)] == [
        x for x in b.ess_fractions if not math.isnan(x)
    ]


def test_reverse_kl_training_lowers_the_kl() -> None:
    energy = DoubleWell2D()
    model = _model()
    config = TrainConfig(steps=150, batch_size=128, lr=1e-2, loss="reverse_kl")
    result = train(model, energy, config, progress=False)
    kl = [loss + energy.log_z for loss in result.losses]  # KL(q‖p) = loss + log Z ≥ 0
    start, end = sum(kl[:5]) / 5, sum(kl[-20:]) / 20
    assert end < 0.5 * start
    assert end > -0.05  # a KL estimate, up to noise, is non-negative
    assert sum(result.ess_fractions[-20:]) / 20 > sum(result.ess_fractions[:5]) / 5


@pytest.mark.parametrize("loss", ["reverse_kl", "mixed", "forward_kl"])
def test_cost_is_charged(loss: str) -> None:
    energy = DoubleWell2D()
    model = _model()
    config = _config(10, loss=loss, monitor_every=5)
    result = train(model, energy, config, data=_data(), progress=False)
    per_step = {"reverse_kl": 10 * 32, "mixed": 10 * 32, "forward_kl": 2 * 32}[loss]
    assert result.cost.energy_evals == per_step == energy.counter.energy
    assert result.cost.wall_s > 0
    assert model.training_cost == result.cost
    assert len(result.losses) == result.steps == 10
    measured = [x for x in result.ess_fractions if not math.isnan(x)]
    assert len(measured) == (2 if loss == "forward_kl" else 10)
    assert all(0 < x <= 1 for x in measured)
    samples = model.sample(50, torch.Generator().manual_seed(0))
    assert samples.cost.train_energy_evals == per_step


def test_resume_from_final_checkpoint_is_bitwise_identical(tmp_path: Path) -> None:
    k = 10
    full = _model()
    full_result = train(full, DoubleWell2D(), _config(2 * k), data=_data(), progress=False)
    first = _model()
    train(first, DoubleWell2D(), _config(k), data=_data(), checkpoint_dir=tmp_path, progress=False)
    restarted = _model(seed=99)  # a fresh object; the checkpoint must restore everything
    result = train(
        restarted,
        DoubleWell2D(),
        _config(2 * k),
        data=_data(),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert result.resumed_from == k
    _assert_same_training(restarted, full)
    _assert_same_history(result, full_result)
    assert result.cost.energy_evals == full_result.cost.energy_evals


def test_resume_after_interruption_is_bitwise_identical(tmp_path: Path) -> None:
    full = _model()
    full_result = train(full, DoubleWell2D(), _config(20), data=_data(), progress=False)
    with pytest.raises(_Crash):
        train(
            _model(),
            _CrashingDoubleWell(crash_at=15),
            _config(20),
            data=_data(),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    restarted = _model(seed=99)
    result = train(
        restarted,
        DoubleWell2D(),
        _config(20),
        data=_data(),
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert result.resumed_from == 12  # the last checkpoint before the crash in step 15
    _assert_same_training(restarted, full)
    _assert_same_history(result, full_result)


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    train(
        _model(), DoubleWell2D(), _config(4), data=_data(), checkpoint_dir=tmp_path, progress=False
    )
    assert (tmp_path / CHECKPOINT_NAME).exists()
    with pytest.raises(ValueError, match="lr"):
        train(
            _model(),
            DoubleWell2D(),
            _config(8, lr=1e-2),
            data=_data(),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    with pytest.raises(ValueError, match="past"):
        train(
            _model(),
            DoubleWell2D(),
            _config(2),
            data=_data(),
            checkpoint_dir=tmp_path,
            progress=False,
        )


def test_config_and_data_are_checked() -> None:
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="kl")
    with pytest.raises(ValueError, match="needs data"):
        train(_model(), DoubleWell2D(), _config(2, loss="forward_kl"), progress=False)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        train(_model(), DoubleWell2D(), _config(2), data=torch.zeros(5, 3), progress=False)


def test_nonfinite_data_are_rejected() -> None:
    data = _data()
    data[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        train(_model(), DoubleWell2D(), _config(2), data=data, progress=False)


def test_nonfinite_loss_stops_with_advice() -> None:
    data = _data()
    data[0, 0] = 1e300  # log q(x) = −inf: an infinite forward-KL loss
    config = _config(5, loss="forward_kl", batch_size=500)
    with pytest.raises(FloatingPointError, match="lr"):
        train(_model(), DoubleWell2D(), config, data=data, progress=False)


def test_the_progress_bar_averages_the_recent_finite_metric_values():
    nan = math.nan
    assert recent_mean([9.0, nan, 1.0, nan, 3.0], window=2) == 2.0
    assert recent_mean([0.5] * 100 + [1.5] * 50) == 1.5
    assert recent_mean([1.0, nan, nan], window=2) == 1.0  # monitored every few steps
    assert math.isnan(recent_mean([nan, nan]))
    assert math.isnan(recent_mean([]))


@pytest.mark.parametrize("fraction", [0.0, 0.25])
def test_repeated_rows_are_trained_on_that_often_and_never_validated_on(fraction):
    data = torch.arange(40, dtype=torch.float64)[:, None]
    repeats = torch.where(data[:, 0] % 4 == 0, 5, 1)
    config = TrainConfig(loss="forward_kl", validation_fraction=fraction, seed=3)
    rows, validation = _split(config, data, repeats)
    held = set() if validation is None else set(validation[:, 0].tolist())
    assert len(held) == int(fraction * 40)
    seen = rows[:, 0].tolist()
    for value in range(40):
        expected = 0 if value in held else (5 if value % 4 == 0 else 1)
        assert seen.count(float(value)) == expected
