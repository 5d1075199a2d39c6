"""Flow MCMC: the independence-Metropolis kernel against its exact transition probabilities
(detailed balance), chains against exact moments and free energies; flow HMC's pulled-back
energy and force, its equivalence to HMC with a mass matrix for an affine flow, the
reversibility of latent leapfrog, and cost accounting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.toy import CorrelatedGaussian, DoubleWell2D, GaussianMixture
from boltzgen.flows import AffineFlow, GaussianPrior, make_spline_flow
from boltzgen.kernels.leapfrog import PhasePoint, leapfrog
from boltzgen.kernels.potential import from_energy
from boltzgen.metrics import free_energy_difference, integrated_time
from boltzgen.records import Cost, WeightedSamples
from boltzgen.samplers.flow_mcmc import FlowHMC, FlowIndependenceMetropolis, PulledBackEnergy
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.mcmc import HMC

F64 = torch.float64


def _affine_model(energy: Energy, shift: list[float], matrix: list[list[float]]):
    flow = AffineFlow(torch.tensor(shift, dtype=F64), torch.tensor(matrix, dtype=F64))
    return BoltzmannGenerator(GaussianPrior(energy.dim), flow, energy)


def _perturbed_spline_model(energy: Energy, seed: int = 1) -> BoltzmannGenerator:
    model = BoltzmannGenerator(
        GaussianPrior(energy.dim), make_spline_flow(energy.dim, hidden=8), energy
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


def _gaussian() -> CorrelatedGaussian:
    return CorrelatedGaussian(
        [1.0, -0.5, 0.3], [[1.0, 0.6, 0.2], [0.6, 0.8, -0.1], [0.2, -0.1, 0.5]]
    )


def _chain_stderr(series: Tensor) -> float:
    """Standard error of the mean of chains ``[T, C]``: the larger of the τ_int-based one
    and the spread of the chain means (which sees chains that have not mixed)."""
    within = float(series.var()) * integrated_time(series) / series.numel()
    between = float(series.mean(dim=0).var()) / series.shape[1]
    return math.sqrt(max(within, between))


def _assert_moments(samples: WeightedSamples, energy: CorrelatedGaussian) -> None:
    """Chain means and variances within 4 standard errors of the exact ones."""
    observables = {
        "mean": (samples.x, energy.mean),
        "variance": ((samples.x - energy.mean) ** 2, energy.cov.diagonal()),
    }
    for name, (values, exact) in observables.items():
        for i in range(energy.dim):
            series = samples.chains(values[:, i])
            se = _chain_stderr(series)
            assert abs(float(series.mean()) - float(exact[i])) < 4 * se, (name, i)


# Independence Metropolis ------------------------------------------------------------------

BIN_EDGES = [-math.inf, -2.0, -1.0, -0.3, 0.3, 1.0, 2.0, math.inf]


def _exact_joint_bin_probabilities(energy: GaussianMixture, model: BoltzmannGenerator) -> Tensor:
    """P(x ∈ i, x' ∈ j) for x ~ π and one independence-MH step, by quadrature on a grid."""
    grid = torch.linspace(-10.0, 10.0, 2001, dtype=F64)[:, None]
    h = float(grid[1, 0] - grid[0, 0])
    with torch.no_grad():
        log_p = -energy.energy(grid)  # normalised: log Z = 0
        log_q = model.log_prob(grid)
    log_w = log_p - log_q
    # T(x → y) = q(y) min(1, w(y)/w(x)) for y ≠ x, plus the rejection mass at y = x.
    move = (log_q[None, :] + (log_w[None, :] - log_w[:, None]).clamp(max=0.0)).exp() * h
    stay = 1.0 - move.sum(dim=1)
    joint = log_p.exp()[:, None] * h * (move + torch.diag(stay))
    bins = torch.bucketize(grid[:, 0], torch.tensor(BIN_EDGES[1:-1], dtype=F64))
    one_hot = torch.nn.functional.one_hot(bins, len(BIN_EDGES) - 1).to(F64)
    return one_hot.T @ joint @ one_hot


def test_independence_kernel_matches_exact_transition_probabilities_and_detailed_balance() -> None:
    energy = GaussianMixture([[-1.5], [1.0]], [[0.5], [0.8]], [0.3, 0.7])
    model = _affine_model(energy, [0.3], [[1.6]])
    sampler = FlowIndependenceMetropolis(model, energy)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    state = sampler.init(n, g, x0=energy.sample_exact(n, g))  # stationary start
    new, info = sampler.step(state, g)
    edges = torch.tensor(BIN_EDGES[1:-1], dtype=F64)
    k = len(BIN_EDGES) - 1
    pair = torch.bucketize(state.x[:, 0], edges) * k + torch.bucketize(new.x[:, 0], edges)
    counts = torch.bincount(pair, minlength=k * k).reshape(k, k).to(F64)
    expected = n * _exact_joint_bin_probabilities(energy, model)
    assert float(expected.sum()) == pytest.approx(n, rel=1e-6)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = k * k - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)
    # Detailed balance: the joint law of (x, x') from a stationary start is symmetric.
    upper = torch.triu_indices(k, k, offset=1)
    n_ij, n_ji = counts[upper[0], upper[1]], counts[upper[1], upper[0]]
    symmetry = float(((n_ij - n_ji) ** 2 / (n_ij + n_ji)).sum())
    assert symmetry < upper.shape[1] + 6 * math.sqrt(2 * upper.shape[1])
    assert 0.3 < float(info.accepted.double().mean()) < 0.95


def test_independence_chains_recover_correlated_gaussian_moments() -> None:
    energy = _gaussian()
    model = _affine_model(energy, [0.5, 0.0, 0.0], [[1.5, 0, 0], [0.5, 1.2, 0], [0, 0, 1.0]])
    sampler = FlowIndependenceMetropolis(model, energy)
    samples = sampler.sample(32, 1000, torch.Generator().manual_seed(0))
    assert 0.2 < samples.info["acceptance"] < 0.9
    _assert_moments(samples, energy)


def _in_a(x: Tensor) -> Tensor:
    return x[:, 0] < 0


def _in_b(x: Tensor) -> Tensor:
    return x[:, 0] > 0


def test_independence_chains_recover_double_well_free_energy() -> None:
    energy = DoubleWell2D()
    model = _affine_model(energy, [0.0, 0.0], [[2.0, 0.0], [0.0, 1.1]])
    samples = FlowIndependenceMetropolis(model, energy).sample(
        64, 2000, torch.Generator().manual_seed(0), n_warmup=20
    )
    exact = energy.interval_log_prob(0, -math.inf, 0.0) - energy.interval_log_prob(0, 0.0, math.inf)
    value, se = free_energy_difference(samples, _in_a, _in_b)
    assert abs(value - exact) < 4 * se
    assert se < 0.15


class _HalfPlaneWall(Energy):
    """u = ½|x|² for x₀ < 1 and +inf beyond: proposals past the wall must be rejected."""

    def __init__(self) -> None:
        super().__init__((2,), temperature=1.0)

    def _energy(self, x: Tensor) -> Tensor:
        return torch.where(x[:, 0] < 1.0, 0.5 * (x * x).sum(dim=1), math.inf)


def test_independence_sampler_cost_layout_and_failed_proposals() -> None:
    energy = _HalfPlaneWall()
    model = _affine_model(energy, [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    model.training_cost = Cost(energy_evals=77)
    sampler = FlowIndependenceMetropolis(model, energy)
    samples = sampler.sample(8, 60, torch.Generator().manual_seed(0), n_warmup=10, thin=3)
    assert samples.n_chains == 8 and len(samples) == 8 * 20
    assert samples.cost.energy_evals == 8 * (1 + 10 + 60) and samples.cost.force_evals == 0
    assert samples.cost.train_energy_evals == 77
    assert bool(torch.isfinite(samples.energies).all()) and bool((samples.x[:, 0] < 1).all())
    assert bool((samples.log_weights == 0).all())
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))
    again = sampler.sample(8, 60, torch.Generator().manual_seed(0), n_warmup=10, thin=3)
    torch.testing.assert_close(again.x, samples.x, rtol=0, atol=0)


# Flow HMC ---------------------------------------------------------------------------------


def test_pulled_back_energy_and_force_match_definition_and_finite_differences() -> None:
    energy = DoubleWell2D()
    model = _perturbed_spline_model(energy)
    pulled = PulledBackEnergy(model.flow, energy, 2)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    x, logdet = model.flow(z)
    torch.testing.assert_close(pulled.energy(z), (energy.energy(x) - logdet).detach())
    before = energy.counter.snapshot()
    u, force = pulled.energy_and_force(z)
    assert energy.counter.since(before).force == 6
    torch.testing.assert_close(u, pulled.energy(z).detach())
    h = 1e-6
    for i in range(2):
        dz = torch.zeros(2, dtype=F64)
        dz[i] = h
        fd = (pulled.energy(z + dz) - pulled.energy(z - dz)).detach() / (2 * h)
        torch.testing.assert_close(force[:, i], -fd, rtol=1e-6, atol=1e-6)


def test_latent_leapfrog_is_reversible() -> None:
    energy = DoubleWell2D()
    pulled = PulledBackEnergy(_perturbed_spline_model(energy).flow, energy, 2)
    g = torch.Generator().manual_seed(3)
    z0, p0 = (torch.randn(16, 2, generator=g, dtype=F64) for _ in range(2))
    potential = from_energy(pulled)
    u, grad = potential(z0)
    eps = torch.tensor(0.05, dtype=F64)
    end = leapfrog(potential, PhasePoint(z0, p0, u, grad), eps, 25)
    assert float((end.x - z0).abs().max()) > 0.1
    back = leapfrog(potential, PhasePoint(end.x, -end.p, end.energy, end.grad), eps, 25)
    torch.testing.assert_close(back.x, z0, rtol=0, atol=1e-10)
    torch.testing.assert_close(-back.p, p0, rtol=0, atol=1e-10)


def test_diagonal_affine_flow_hmc_equals_hmc_with_the_mass_matrix() -> None:
    """x = Lz + μ with diagonal L: latent HMC is HMC in x with M⁻¹ = L², step for step.

    The step size is fixed: dual averaging feeds rounding differences of the acceptance
    back into ε with gain √t/γ ≈ 100 per step and the two runs drift apart (~1e-7).
    """
    energy = _gaussian()
    scale = torch.tensor([1.3, 0.7, 0.9], dtype=F64)
    model = BoltzmannGenerator(
        GaussianPrior(3),
        AffineFlow(torch.tensor([0.2, -0.1, 0.4], dtype=F64), torch.diag(scale)),
        energy,
    )
    x0 = energy.sample_exact(4, torch.Generator().manual_seed(5))
    flow_hmc = FlowHMC(model, energy, step_size=0.4, n_leapfrog=5, target_acceptance=None)
    latent = flow_hmc.sample(4, 40, torch.Generator().manual_seed(6), n_warmup=10, x0=x0)
    plain = HMC(energy, step_size=0.4, n_leapfrog=5, target_acceptance=None, inverse_mass=scale**2)
    direct = plain.sample(x0, 40, torch.Generator().manual_seed(6), n_warmup=10)
    torch.testing.assert_close(latent.x, direct.x, rtol=0, atol=1e-10)
    torch.testing.assert_close(latent.energies, direct.energies, rtol=0, atol=1e-10)
    assert latent.info["acceptance"] == direct.info["acceptance"]
    assert 0.2 < latent.info["acceptance"] < 1.0


def test_affine_flow_hmc_recovers_correlated_gaussian_moments() -> None:
    """The latent target is Gaussian with standard deviations 0.61–1.01; a trajectory of
    length 1.5 is 0.24–0.39 of their periods, far from the resonance (a whole period) where
    fixed-length HMC stops mixing."""
    energy = _gaussian()
    matrix = 1.2 * energy.cholesky + 0.2 * torch.ones(3, 3, dtype=F64).tril(-1)
    flow = AffineFlow(energy.mean + 0.3, matrix)
    model = BoltzmannGenerator(GaussianPrior(3), flow, energy)
    sampler = FlowHMC(model, energy, step_size=0.3, n_leapfrog=5, target_acceptance=None)
    samples = sampler.sample(16, 400, torch.Generator().manual_seed(0), n_warmup=20)
    assert samples.info["acceptance"] > 0.8
    _assert_moments(samples, energy)


def test_flow_hmc_cost_energies_and_layout() -> None:
    energy = DoubleWell2D()
    model = _perturbed_spline_model(energy)
    model.training_cost = Cost(force_evals=11)
    sampler = FlowHMC(model, energy, step_size=0.05, n_leapfrog=3)
    samples = sampler.sample(5, 12, torch.Generator().manual_seed(0), n_warmup=4, thin=2)
    assert samples.n_chains == 5 and len(samples) == 5 * 6
    assert samples.cost.force_evals == 5 * (1 + (4 + 12) * 3) and samples.cost.energy_evals == 0
    assert samples.cost.train_force_evals == 11
    assert samples.info["sampler"] == "flow_hmc"
    torch.testing.assert_close(samples.energies, energy.energy(samples.x))
    assert bool((samples.log_weights == 0).all())
