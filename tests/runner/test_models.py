"""Generators built from experiment settings: every flow kind is a valid density."""

import pytest
import torch

from boltzgen.runner.methods.flows import FlowParams, build_generator
from boltzgen.systems import load_system


@pytest.mark.parametrize(
    "name, kind",
    [
        ("double_well_2d", "spline"),
        ("alanine_dipeptide_vacuum", "spline"),
        ("alanine_dipeptide_vacuum", "internal"),
        ("alanine_dipeptide_vacuum", "transformer"),
    ],
)
def test_generator_samples_have_consistent_log_prob(name, kind):
    system = load_system(name)
    params = FlowParams(kind=kind, n_layers=2, hidden=16, conditioner_layers=1, n_heads=2)
    x0 = system.initial_positions[None]
    data = x0 + 0.003 * torch.randn(
        64, *x0.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    model = build_generator(system, params, seed=1, data=data)
    with torch.no_grad():
        x, log_q = model.sample_with_log_prob(8, torch.Generator().manual_seed(2))
        assert x.shape == (8, *system.energy.event_shape)
        torch.testing.assert_close(model.log_prob(x), log_q, rtol=1e-6, atol=1e-6)
        samples = model.sample(16, torch.Generator().manual_seed(3))
    assert torch.isfinite(samples.log_weights).any()


def test_molecular_flow_kinds_need_a_topology():
    with pytest.raises(ValueError, match="topology"):
        build_generator(load_system("double_well_2d"), FlowParams(kind="internal"), seed=0)
