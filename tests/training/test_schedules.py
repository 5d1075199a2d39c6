"""Learning-rate schedules, validation NLL, early stopping, and their exact resume."""

from __future__ import annotations

import pytest
import torch

from boltzgen.energies.toy import DoubleWell2D
from boltzgen.flows import GaussianPrior, make_spline_flow
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.training import TrainConfig, train


def model() -> BoltzmannGenerator:
    flow = make_spline_flow(2, n_layers=2, hidden=8, n_bins=4, seed=0)
    return BoltzmannGenerator(GaussianPrior(2), flow, DoubleWell2D())


def data(n: int = 600) -> torch.Tensor:
    return DoubleWell2D().sample_exact(n, torch.Generator().manual_seed(5))


@pytest.mark.parametrize(
    "schedule, warmup, step, factor",
    [
        ("constant", 0, 7, 1.0),
        ("constant", 4, 0, 0.25),
        ("constant", 4, 3, 1.0),
        ("cosine", 0, 0, 1.0),
        ("cosine", 0, 50, 0.5),
        ("cosine", 0, 100, 0.0),
        ("cosine", 10, 55, 0.5),
    ],
)
def test_learning_rate_factor(schedule, warmup, step, factor):
    config = TrainConfig(steps=100, lr_schedule=schedule, lr_warmup=warmup)
    assert config.learning_rate_factor(step) == pytest.approx(factor, abs=1e-12)


def test_optimizer_follows_the_cosine_schedule():
    m = model()
    config = TrainConfig(steps=20, batch_size=16, loss="forward_kl", lr=1e-2, lr_schedule="cosine")
    seen = []
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = recording_step
    try:
        train(m, m.energy, config, data(), progress=False)
    finally:
        torch.optim.Adam.step = original
    expected = [1e-2 * config.learning_rate_factor(k) for k in range(20)]
    assert seen == pytest.approx(expected, rel=1e-12)


def test_validation_keeps_the_best_parameters_and_stops_early():
    m = model()
    config = TrainConfig(
        steps=400,
        batch_size=64,
        loss="forward_kl",
        lr=3e-2,
        validation_fraction=0.3,
        validate_every=5,
        patience=3,
        seed=1,
        monitor_every=0,
    )
    x = data()
    result = train(m, m.energy, config, x, progress=False)
    steps, nll = zip(*result.validation_nll, strict=True)
    best = min(range(len(nll)), key=nll.__getitem__)
    assert result.best_step == steps[best]
    if result.stopped_early:
        assert len(result.losses) < 400 and len(nll) - 1 - best == 3
    order = torch.randperm(600, generator=torch.Generator().manual_seed(config.seed + 1))
    validation = x[order[:180]]
    with torch.no_grad():
        kept = float(-m.log_prob(validation).mean())
    assert kept == pytest.approx(nll[best], rel=1e-12)


class CrashingDoubleWell(DoubleWell2D):
    """Raises on its ``crash_at``-th evaluation, like a job killed mid-step."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.calls, self.crash_at = 0, crash_at

    def _energy(self, x):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt
        return super()._energy(x)


def killed_and_resumed(config: TrainConfig, tmp_path) -> int:
    """Train once whole and once killed in step 15, then resumed; assert bitwise equal
    parameters and return the step the resumed run started from."""
    whole = model()
    train(whole, whole.energy, config, data(), tmp_path / "a", progress=False)
    crashed = model()
    with pytest.raises(KeyboardInterrupt):
        train(crashed, CrashingDoubleWell(15), config, data(), tmp_path / "b", progress=False)
    resumed = model()
    result = train(resumed, resumed.energy, config, data(), tmp_path / "b", progress=False)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    return result.resumed_from


def test_resume_with_schedule_and_validation_is_exact(tmp_path):
    config = TrainConfig(
        steps=24,
        batch_size=32,
        loss="mixed",
        lr=1e-2,
        lr_schedule="cosine",
        lr_warmup=3,
        validation_fraction=0.2,
        validate_every=4,
        checkpoint_every=4,
        seed=2,
    )
    assert killed_and_resumed(config, tmp_path) == 12


def test_cosine_schedule_refuses_a_changed_length_on_resume(tmp_path):
    config = TrainConfig(
        steps=8, batch_size=16, loss="mixed", lr_schedule="cosine", checkpoint_every=4
    )
    m = model()
    train(m, m.energy, config, data(), tmp_path, progress=False)
    longer = TrainConfig(**{**config.__dict__, "steps": 16})
    with pytest.raises(ValueError, match="steps"):
        train(model(), m.energy, longer, data(), tmp_path, progress=False)


def test_validation_needs_data():
    m = model()
    with pytest.raises(ValueError, match="validation"):
        train(
            m,
            m.energy,
            TrainConfig(steps=2, loss="reverse_kl", validation_fraction=0.1),
            progress=False,
        )


def test_the_parameter_average_is_the_exponential_moving_average_of_the_iterates():
    decay = 0.8
    config = TrainConfig(steps=6, batch_size=16, loss="forward_kl", lr=1e-2, ema_decay=decay)
    m = model()
    iterates = []
    original = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        iterates.append([p.detach().clone() for p in m.parameters()])
        return out

    torch.optim.Adam.step = recording_step
    try:
        train(m, m.energy, config, data(), progress=False)
    finally:
        torch.optim.Adam.step = original
    # torch's EMA starts at the first iterate, then θ̄ ← d·θ̄ + (1 − d)·θ
    expected = iterates[0]
    for theta in iterates[1:]:
        expected = [decay * e + (1 - decay) * t for e, t in zip(expected, theta, strict=True)]
    for got, want in zip(m.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-9)
    assert any(not torch.allclose(p, q) for p, q in zip(expected, iterates[-1], strict=True))


def test_resume_with_a_parameter_average_is_exact(tmp_path):
    config = TrainConfig(
        steps=24, batch_size=32, loss="mixed", lr=1e-2, ema_decay=0.9, checkpoint_every=4, seed=2
    )
    assert killed_and_resumed(config, tmp_path) == 12


def test_an_average_and_validation_are_refused_together():
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig(ema_decay=0.99, validation_fraction=0.1)
