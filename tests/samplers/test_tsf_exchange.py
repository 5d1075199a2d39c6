"""TSF replica exchange: the flow move against its exact transition kernel (detailed
balance), proposals from q_T at every rung, the double-well free energy at T_0, exact cost
accounting, and TSF training recovering an exact Gaussian flow at every temperature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D
from boltzgen.flows.linear import ElementwiseAffine
from boltzgen.flows.steerable import TemperatureSteerableFlow, make_steerable_flow
from boltzgen.metrics import free_energy_difference
from boltzgen.records import Cost, WeightedSamples
from boltzgen.samplers.parallel_tempering import ParallelTempering
from boltzgen.samplers.tsf_exchange import TSFReplicaExchange
from boltzgen.training import train_tsf

F64 = torch.float64
DW_LADDER = [1.0, 5.0 ** (1 / 3), 5.0 ** (2 / 3), 5.0]  # geometric, T_0 = 1 … 5, K = 4


class TiltedWell1D(Energy):
    """u(x) = a(x² − 1)² + c·x at T_0 = 1, with its analytic force."""

    def __init__(self, a: float = 2.0, c: float = 0.5):
        super().__init__((1,), temperature=1.0)
        self.a, self.c = a, c

    def _energy(self, x: Tensor) -> Tensor:
        y = x[:, 0]
        return self.a * (y * y - 1.0) ** 2 + self.c * y

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x[:, 0]
        return self._energy(x), -(4.0 * self.a * y * (y * y - 1.0) + self.c)[:, None]


def _affine_tsf(shift: list[float], scale: list[float], t_ref: float) -> TemperatureSteerableFlow:
    """q_T = N(shift, scale²·T/t_ref) per coordinate."""
    layer = ElementwiseAffine(len(shift))
    with torch.no_grad():
        layer.shift.copy_(torch.tensor(shift, dtype=F64))
        layer.log_scale.copy_(torch.tensor(scale, dtype=F64).log())
    return TemperatureSteerableFlow(len(shift), [layer], t_ref)


def _in_a(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _in_b(x: Tensor) -> Tensor:
    return x[:, 0] > 0


# --- the flow move: exact kernel between bins -------------------------------------------

FLUX_LADDER = [1.0, 3.0]
FLUX_SHIFT, FLUX_SCALE = 0.3, 0.8  # a deliberately imperfect proposal
BIN_EDGES = [-1.0, 0.0, 1.0]  # four bins: (−∞, −1), (−1, 0), (0, 1), (1, ∞)
GRID_H = 0.004  # midpoint grid on [−4, 4]; the bin edges are cell boundaries
N_FLUX_CHAINS = 20_000


def _midpoints() -> np.ndarray:
    return np.arange(-4.0 + GRID_H / 2, 4.0, GRID_H)


def _exact_flux(temperature: float) -> np.ndarray:
    """F_ij = P(x ∈ i, x' ∈ j) for x ~ p_k and one flow move, i ≠ j (diagonal zero)."""
    energy = TiltedWell1D()
    x = _midpoints()
    s = FLUX_LADDER[0] / temperature
    log_p = -s * energy.energy(torch.from_numpy(x)[:, None]).numpy()
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    var = FLUX_SCALE**2 * temperature
    log_q = -((x - FLUX_SHIFT) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)
    log_w = log_p - log_q
    accept = np.exp(np.minimum(log_w[None, :] - log_w[:, None], 0.0))  # [from, to]
    kernel = accept * np.exp(log_q)[None, :] * GRID_H
    bins = np.digitize(x, BIN_EDGES)
    one_hot = np.eye(len(BIN_EDGES) + 1)[bins]
    flux = one_hot.T @ (p[:, None] * kernel) @ one_hot
    return flux * (1.0 - np.eye(len(one_hot[0])))


def _exact_draws(temperature: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` exact draws ``[n, 1]`` of p_k ∝ exp(−u·T_0/T_k) by rejection from U(−4, 4)."""
    energy = TiltedWell1D()
    s = FLUX_LADDER[0] / temperature
    u_min = float(energy.energy(torch.from_numpy(_midpoints())[:, None]).min())
    kept: list[Tensor] = []
    while sum(k.shape[0] for k in kept) < n:
        x = 8.0 * torch.rand(20 * n, 1, generator=generator, dtype=F64) - 4.0
        bound = torch.rand(20 * n, generator=generator, dtype=F64)
        kept.append(x[bound < torch.exp(-s * (energy.energy(x) - u_min) - 1e-3)])
    return torch.cat(kept)[:n]


@pytest.fixture(scope="module")
def flux_run() -> tuple[Tensor, Tensor]:
    """Bins before and after one flow move of exact draws, ``[K, C]`` each."""
    g = torch.Generator().manual_seed(3)
    sampler = TSFReplicaExchange(
        TiltedWell1D(), _affine_tsf([FLUX_SHIFT], [FLUX_SCALE], 1.0), FLUX_LADDER
    )
    x0 = torch.stack([_exact_draws(t, N_FLUX_CHAINS, g) for t in FLUX_LADDER])
    state = sampler.init(x0)
    moved, _, _ = sampler.flow_move(state, g)
    edges = torch.tensor(BIN_EDGES, dtype=F64)
    return torch.bucketize(state.x[..., 0], edges), torch.bucketize(moved.x[..., 0], edges)


@pytest.mark.parametrize("rung", range(len(FLUX_LADDER)))
def test_flow_move_transitions_match_the_exact_kernel(
    flux_run: tuple[Tensor, Tensor], rung: int
) -> None:
    before, after = (b[rung].numpy() for b in flux_run)
    n_bins = len(BIN_EDGES) + 1
    empirical = np.zeros((n_bins, n_bins))
    np.add.at(empirical, (before, after), 1.0 / before.size)
    exact = _exact_flux(FLUX_LADDER[rung])
    off = ~np.eye(n_bins, dtype=bool)
    stderr = np.sqrt(exact[off] * (1 - exact[off]) / before.size)  # independent chains
    assert exact[off].max() > 0.01  # the move does cross bins
    np.testing.assert_array_less(np.abs(empirical[off] - exact[off]), 4 * stderr + 1e-12)
    np.testing.assert_allclose(exact, exact.T, atol=1e-12)  # detailed balance of the kernel


def test_flow_move_keeps_energies_and_forces_of_the_new_configurations() -> None:
    """The next local move starts from the stored force: it must be −∇u of the accepted x."""
    energy = DoubleWell2D()
    sampler = TSFReplicaExchange(energy, _affine_tsf([0.0, 0.0], [2.0, 1.0], 1.0), [1.0, 4.0])
    state = sampler.init(torch.zeros(64, 2, dtype=F64))
    state, _, accepted = sampler.flow_move(state, torch.Generator().manual_seed(0))
    assert 0 < int(accepted.sum()) < accepted.numel()
    flat = state.x.reshape(-1, 2)
    u, force = energy.energy_and_force(flat)
    torch.testing.assert_close(state.energy.reshape(-1), u, rtol=0, atol=1e-12)
    torch.testing.assert_close(state.force.reshape(-1, 2), force, rtol=0, atol=1e-12)


# --- proposals come from q_T at every rung ---------------------------------------------


def _perturbed_tsf(dim: int, t_ref: float, seed: int = 2) -> TemperatureSteerableFlow:
    tsf = make_steerable_flow(dim, t_ref, n_layers=4, hidden=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tsf.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    return tsf


def test_proposals_carry_the_log_density_of_the_flow_at_their_temperature() -> None:
    ladder = [1.0, 2.0, 4.0]
    tsf = _perturbed_tsf(2, t_ref=2.0)  # reference temperature not the ladder's T_0
    sampler = TSFReplicaExchange(DoubleWell2D(), tsf, ladder)
    x, log_q = sampler.propose(4000, torch.Generator().manual_seed(0))
    assert x.shape == (3, 4000, 2) and log_q.shape == (3, 4000)
    for k, t in enumerate(ladder):
        with torch.no_grad():
            expected = tsf.log_prob(x[k], t)
        torch.testing.assert_close(log_q[k], expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(sampler.ladder_log_prob(x), log_q, rtol=0, atol=1e-10)


@pytest.mark.parametrize("rung", range(3))
def test_proposal_latents_have_the_tempered_prior_variance(rung: int) -> None:
    ladder, t_ref = [1.0, 2.0, 4.0], 2.0
    tsf = _perturbed_tsf(2, t_ref)
    sampler = TSFReplicaExchange(DoubleWell2D(), tsf, ladder)
    x, _ = sampler.propose(4000, torch.Generator().manual_seed(1))
    with torch.no_grad():
        z, _ = tsf.flow.inverse(x[rung])
    ratio = ladder[rung] / t_ref
    stderr = ratio * math.sqrt(2.0 / z.numel())  # var of z² / ratio is 2 for a normal
    assert abs(float(z.square().mean()) - ratio) < 4 * stderr


# --- TSF-RE on the double well -------------------------------------------------------


def _exact_dw_delta_f(energy: DoubleWell2D) -> float:
    """−ln(P(x₁ > 0) / P(x₁ < 0)) at T_0 by quadrature."""
    return energy.well.log_integral(-math.inf, 0.0) - energy.well.log_integral(0.0, math.inf)


@pytest.fixture(scope="module")
def trained_dw_tsf() -> tuple[TemperatureSteerableFlow, Cost]:
    tsf = make_steerable_flow(2, 1.0, n_layers=4, hidden=16)
    cost = train_tsf(
        tsf, DoubleWell2D(), DW_LADDER, 100, 128, 1e-2, torch.Generator().manual_seed(0)
    )
    return tsf, cost


MOVES = {"hmc": 5, "langevin": 1}  # local move: leapfrog steps


@pytest.fixture(scope="module", params=list(MOVES))
def dw_runs(
    request: pytest.FixtureRequest, trained_dw_tsf: tuple[TemperatureSteerableFlow, Cost]
) -> tuple[WeightedSamples, WeightedSamples]:
    """TSF-RE and plain PT with the same ladder, local move, seed and steps."""
    tsf, cost = trained_dw_tsf
    energy = DoubleWell2D()
    x0 = energy.minimum.expand(16, 2).clone()  # every replica starts in the deep well
    args = (request.param, 0.1, MOVES[request.param])
    runs = []
    for sampler in (
        TSFReplicaExchange(energy, tsf, DW_LADDER, *args, training_cost=cost),
        ParallelTempering(energy, DW_LADDER, *args),
    ):
        g = torch.Generator().manual_seed(1)
        runs.append(sampler.sample(x0, 1000, g, n_warmup=100, states={"A": _in_a, "B": _in_b}))
    return runs[0], runs[1]


def test_recovers_double_well_free_energy(
    dw_runs: tuple[WeightedSamples, WeightedSamples],
) -> None:
    samples = dw_runs[0]
    value, stderr = free_energy_difference(samples, _in_a, _in_b)
    assert samples.n_chains == 16 and len(samples) == 16 * 1000
    assert 0.0 < stderr < 0.3
    assert abs(value - _exact_dw_delta_f(DoubleWell2D())) < 4 * stderr


def test_reports_flow_acceptance_and_more_round_trips_than_plain_pt(
    dw_runs: tuple[WeightedSamples, WeightedSamples],
) -> None:
    tsf_re, pt = dw_runs
    info = tsf_re.info
    assert info["sampler"] == "tsf_replica_exchange" and info["flow_moves"] == 1000
    assert len(info["flow_acceptance"]) == len(DW_LADDER)
    assert min(info["flow_acceptance"]) > 0.3  # a briefly trained flow, at every rung
    np.testing.assert_allclose(info["flow_acceptance"], info["flow_acceptance_prob"], atol=0.02)
    assert info["ladder_energies"].shape == (1000, len(DW_LADDER), 16)
    assert set(info["ladder_states"]) == {"A", "B"}
    assert info["round_trips"] > pt.info["round_trips"] > 0


# --- cost --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("move", "n_leapfrog", "flow_every", "swap_every"),
    [("hmc", 3, 1, 1), ("hmc", 2, 3, 2), ("langevin", 1, 2, 1)],
)
def test_cost_counts_every_local_and_flow_evaluation(
    move: str, n_leapfrog: int, flow_every: int, swap_every: int
) -> None:
    energy = DoubleWell2D()
    n_temps, n_chains, n_warmup, n_steps = 3, 4, 5, 12
    training = Cost(energy_evals=7, wall_s=0.5)
    sampler = TSFReplicaExchange(
        energy,
        make_steerable_flow(2, 1.0, n_layers=2, hidden=8),
        [1.0, 2.0, 4.0],
        move,  # type: ignore[arg-type]
        0.1,
        n_leapfrog,
        flow_every,
        swap_every,
        training_cost=training,
    )
    x0 = torch.zeros(n_chains, 2, dtype=F64)
    samples = sampler.sample(x0, n_steps, torch.Generator().manual_seed(0), n_warmup=n_warmup)
    steps = n_warmup + n_steps
    replicas = n_temps * n_chains
    expected = replicas * (1 + n_leapfrog * steps + steps // flow_every)
    assert samples.cost.force_evals == expected and samples.cost.energy_evals == 0
    assert samples.cost.train_energy_evals == 7 and samples.cost.train_wall_s == 0.5
    assert samples.info["flow_moves"] == steps // flow_every - n_warmup // flow_every
    assert samples.info["flow_proposals"] == replicas * (steps // flow_every)
    assert sum(samples.info["swap_attempts"]) > 0


@pytest.mark.parametrize("with_data", [False, True])
def test_training_cost_is_counted_on_the_energy(with_data: bool) -> None:
    energy = DoubleWell2D()
    data = energy.sample_exact(64, torch.Generator().manual_seed(0)) if with_data else None
    tsf = make_steerable_flow(2, 1.0, n_layers=2, hidden=8)
    cost = train_tsf(tsf, energy, [1.0, 2.0, 4.0], 5, 32, 1e-3, torch.Generator(), data)
    assert cost.energy_evals == 5 * 3 * 32 and cost.force_evals == 0 and cost.wall_s > 0
    assert energy.counter.energy == cost.energy_evals


# --- training: an exact affine TSF at every temperature ------------------------------

GAUSS_MEAN, GAUSS_STD = [1.0, -0.5], [0.7, 1.2]


@pytest.mark.parametrize(
    ("temperatures", "with_data"), [([1.0, 2.0, 4.0], False), ([], True), ([1.0, 3.0], True)]
)
def test_training_recovers_the_exact_gaussian_flow(
    temperatures: list[float], with_data: bool
) -> None:
    """N(μ, σ²) at T_0 is N(μ, σ²·T/T_0) at T: an affine TSF is exact at every rung only
    at shift μ, scale σ, which the summed objective must find (a rung reduced at the
    wrong temperature would pull the scale away from σ)."""
    energy = CorrelatedGaussian(GAUSS_MEAN, torch.diag(torch.tensor(GAUSS_STD, dtype=F64) ** 2))
    data = energy.sample_exact(20_000, torch.Generator().manual_seed(1)) if with_data else None
    tsf = _affine_tsf([0.0, 0.0], [1.0, 1.0], 1.0)
    train_tsf(tsf, energy, temperatures, 600, 256, 0.01, torch.Generator().manual_seed(2), data)
    affine = tsf.flow.layers[0]
    assert isinstance(affine, ElementwiseAffine)
    np.testing.assert_allclose(affine.shift.detach().numpy(), GAUSS_MEAN, atol=0.05)
    np.testing.assert_allclose(affine.log_scale.detach().exp().numpy(), GAUSS_STD, rtol=0.05)


def test_rejects_a_flow_of_the_wrong_dimension() -> None:
    with pytest.raises(ValueError, match="latent dimension"):
        TSFReplicaExchange(DoubleWell2D(), make_steerable_flow(3, 1.0, n_layers=2), [1.0, 2.0])


def test_train_tsf_needs_temperatures_or_data() -> None:
    tsf = make_steerable_flow(2, 1.0, n_layers=2)
    with pytest.raises(ValueError, match="temperatures"):
        train_tsf(tsf, DoubleWell2D(), [], 1, 8, 1e-3, torch.Generator())


@pytest.mark.slow
def test_untrained_tsf_recovers_double_well_free_energy_on_a_long_run() -> None:
    """An identity TSF (q_T = N(0, T·I)) is a poor proposal at T_0 but exact sampling
    still holds: ΔF within 4 standard errors from 8000 steps of 32 chains."""
    energy = DoubleWell2D()
    sampler = TSFReplicaExchange(energy, make_steerable_flow(2, 1.0), DW_LADDER, "hmc", 0.1, 5)
    x0 = energy.minimum.expand(32, 2).clone()
    samples = sampler.sample(x0, 8000, torch.Generator().manual_seed(5), n_warmup=500)
    value, stderr = free_energy_difference(samples, _in_a, _in_b)
    assert stderr < 0.1
    assert abs(value - _exact_dw_delta_f(energy)) < 4 * stderr
