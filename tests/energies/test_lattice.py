"""Lattice energies: actions, forces, symmetries, and the exact Ising and U(1) answers."""

import math

import numpy as np
import pytest
import torch

from boltzgen.energies.lattice import (
    IsingGaussian,
    Phi4,
    U1Wilson,
    enumerate_ising,
    gauge_transform,
    kaufman_ising,
    plaquette_angles,
    transfer_matrix_ising,
    u1_exact,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _phi4_by_sites(phi: torch.Tensor, m2: float, lam: float) -> float:
    """The tutorial's action by an explicit loop over sites (arXiv 2101.08176)."""
    length = phi.shape[0]
    total = 0.0
    for i in range(length):
        for j in range(length):
            p = float(phi[i, j])
            hop = p * (float(phi[(i + 1) % length, j]) + float(phi[i, (j + 1) % length]))
            total += -2 * hop + (4 + m2) * p**2 + lam * p**4
    return total


def test_phi4_matches_a_site_loop():
    phi = torch.randn(3, 4, 4, generator=_gen(), dtype=torch.float64)
    u = Phi4(L=4, m2=-1.3, lam=0.7).energy(phi)
    for b in range(3):
        assert float(u[b]) == pytest.approx(_phi4_by_sites(phi[b], -1.3, 0.7), rel=1e-12)


@pytest.mark.parametrize(
    "energy, shape",
    [
        (Phi4(L=5, m2=-4.0, lam=8.0), (4, 5, 5)),
        (U1Wilson(L=4, beta=2.0), (4, 2, 4, 4)),
        (IsingGaussian(L=4, K=0.44), (4, 4, 4)),
    ],
)
def test_force_is_minus_gradient(energy, shape):
    x = torch.randn(shape, generator=_gen(1), dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy._energy(x).sum(), x)
    torch.testing.assert_close(energy.force(x.detach()), -grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("energy, shape", [(Phi4(L=6), (3, 6, 6)), (IsingGaussian(L=6), (3, 6, 6))])
def test_scalar_actions_are_translation_and_z2_invariant(energy, shape):
    x = torch.randn(shape, generator=_gen(2), dtype=torch.float64)
    u = energy.energy(x)
    torch.testing.assert_close(energy.energy(x.roll((2, -1), (-2, -1))), u)
    torch.testing.assert_close(energy.energy(-x), u)
    torch.testing.assert_close(energy.energy(x.transpose(-1, -2)), u)


@pytest.mark.parametrize("temperature", [0.5, 2.0, 3.7])
def test_a_temperature_is_a_rescaled_coupling(temperature):
    """e^{−S/T}: U(1) at β/T exactly; φ⁴ at λT for the field φ/√T (the error messages' claims)."""
    theta = 4 * torch.randn(3, 2, 4, 4, generator=_gen(4), dtype=torch.float64)
    u1 = U1Wilson(L=4, beta=2.0).energy(theta) / temperature
    torch.testing.assert_close(u1, U1Wilson(L=4, beta=2.0 / temperature).energy(theta))
    assert f"beta = {2.0 / temperature:g}" in U1Wilson(L=4).coupling_at_temperature(temperature)
    phi = torch.randn(3, 4, 4, generator=_gen(5), dtype=torch.float64)
    scaled = Phi4(L=4, m2=-4.0, lam=8.0 * temperature).energy(phi / math.sqrt(temperature))
    torch.testing.assert_close(Phi4(L=4).energy(phi) / temperature, scaled)
    assert f"lam = {8.0 * temperature:g}" in Phi4(L=4).coupling_at_temperature(temperature)


def test_u1_action_is_periodic_and_gauge_invariant():
    energy = U1Wilson(L=4, beta=1.7)
    theta = torch.randn(5, 2, 4, 4, generator=_gen(3), dtype=torch.float64)
    u = energy.energy(theta)
    shift = 2 * math.pi * torch.randint(-3, 4, theta.shape, generator=_gen(4)).double()
    torch.testing.assert_close(energy.energy(theta + shift), u)
    alpha = 10 * torch.randn(5, 4, 4, generator=_gen(5), dtype=torch.float64)
    torch.testing.assert_close(energy.energy(gauge_transform(theta, alpha)), u)
    torch.testing.assert_close(energy.energy(theta.roll(1, -1)), u)


def test_plaquettes_of_the_torus_sum_to_zero():
    """Every link enters two plaquettes with opposite signs: Σ_P θ_P = 0 exactly."""
    theta = torch.randn(4, 2, 5, 5, generator=_gen(6), dtype=torch.float64)
    sums = plaquette_angles(theta).sum(dim=(-2, -1))
    torch.testing.assert_close(sums, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("length", [2, 3, 4])
@pytest.mark.parametrize("coupling", [0.2, 0.3, 0.44, 0.6])
def test_transfer_matrix_and_kaufman_equal_enumeration(length, coupling):
    brute = enumerate_ising(length, coupling)
    rows = transfer_matrix_ising(length, coupling)
    closed = kaufman_ising(length, coupling)
    for other in (rows, closed):
        assert other.log_z == pytest.approx(brute.log_z, abs=1e-8)
        assert other.energy_density == pytest.approx(brute.energy_density, abs=1e-8)
    assert rows.abs_magnetization == pytest.approx(brute.abs_magnetization, abs=1e-8)


@pytest.mark.parametrize("length", [5, 6, 8])
@pytest.mark.parametrize("coupling", [0.25, 0.4, 0.4407, 0.5, 0.7])
def test_transfer_matrix_equals_kaufman(length, coupling):
    """Both sides of K_c: Kaufman's γ₀ = 2K + ln tanh K changes sign there."""
    rows = transfer_matrix_ising(length, coupling, magnetization=False)
    closed = kaufman_ising(length, coupling)
    assert closed.log_z == pytest.approx(rows.log_z, abs=1e-8)
    assert closed.energy_density == pytest.approx(rows.energy_density, abs=1e-8)


@pytest.mark.parametrize("coupling", [0.3, 0.6])
def test_kaufman_approaches_onsager_at_large_l(coupling):
    """Away from K_c the torus energy converges exponentially to Onsager's
    e = −coth 2K [1 + (2/π)(2 tanh² 2K − 1) K(k)], k = 2 sinh 2K / cosh² 2K."""
    from scipy import special

    k = 2 * math.sinh(2 * coupling) / math.cosh(2 * coupling) ** 2
    elliptic = special.ellipk(k**2)
    factor = 1 + 2 / math.pi * (2 * math.tanh(2 * coupling) ** 2 - 1) * elliptic
    onsager = -factor / math.tanh(2 * coupling)
    assert kaufman_ising(128, coupling).energy_density == pytest.approx(onsager, abs=1e-10)


@pytest.mark.parametrize("length", [2, 3])
def test_gaussian_ising_density_is_the_spin_mixture(length):
    """e^{−u(x)} = Z_Ising Σ_s P(s) N(x; Js, J) pointwise (all spins enumerated)."""
    energy = IsingGaussian(L=length, K=0.37, delta=0.6)
    n = length * length
    codes = torch.arange(2**n)
    spins = (2.0 * ((codes[:, None] >> torch.arange(n)) & 1) - 1).double().reshape(-1, n)
    j = torch.zeros(n, n, dtype=torch.float64)
    for site in range(n):
        unit = torch.zeros(n, dtype=torch.float64)
        unit[site] = 1.0
        j[:, site] = energy._fourier_multiply(unit.reshape(1, length, length), 1.0).reshape(n)
    bonds = 0.5 * ((spins @ (j - energy.shift * torch.eye(n, dtype=torch.float64))) * spins).sum(1)
    log_p = bonds - torch.logsumexp(bonds, 0)
    x = energy.sample_field(spins[:5].reshape(5, length, length), _gen(7))
    gauss = torch.distributions.MultivariateNormal(spins @ j, covariance_matrix=j)
    mixture = torch.logsumexp(gauss.log_prob(x.reshape(5, 1, n)) + log_p, dim=1)
    torch.testing.assert_close(-energy.energy(x) - energy.log_z, mixture, rtol=0, atol=1e-9)


def test_gaussian_ising_spin_map_recovers_the_energy():
    """Rao–Blackwellised ⟨s_i s_j⟩ = ⟨tanh x_i tanh x_j⟩ on fields drawn from exact spins."""
    length, coupling = 2, 0.44
    energy = IsingGaussian(L=length, K=coupling)
    n = length * length
    codes = torch.arange(2**n)
    spins = (2.0 * ((codes[:, None] >> torch.arange(n)) & 1) - 1).double()
    spins = spins.reshape(-1, length, length)
    bonds = (spins * (spins.roll(-1, -1) + spins.roll(-1, -2))).sum((-2, -1))
    p = torch.softmax(coupling * bonds, 0)
    index = torch.multinomial(p, 40_000, replacement=True, generator=_gen(8))
    x = energy.sample_field(spins[index], _gen(9))
    t = torch.tanh(x)
    e = -(t * (t.roll(-1, -1) + t.roll(-1, -2))).sum((-2, -1)) / n
    exact = enumerate_ising(length, coupling).energy_density
    assert abs(float(e.mean()) - exact) < 4 * float(e.std()) / math.sqrt(len(e))


def test_ising_log_z_is_kaufman():
    energy = IsingGaussian(L=6, K=0.3)
    assert energy.log_z == pytest.approx(transfer_matrix_ising(6, 0.3).log_z, abs=1e-8)
    assert set(energy.exact_observables()) == {"energy_density", "abs_magnetization"}


def _u1_by_convolution(length: int, beta: float, m: int = 1 << 13) -> tuple[float, float]:
    """⟨Q²⟩ and ⟨cos θ_P⟩ from the V-fold convolution of the wrapped plaquette weight.

    After gauge fixing the V wrapped plaquettes are independent on [−π, π) except that
    their sum is 2πQ; so Z_Q ∝ (g^{*V})(2πQ) with g(φ) = e^{β cos φ}.
    """
    volume = length * length
    h = 2 * math.pi / m
    phi = -math.pi + h * (np.arange(m) + 0.5)
    g = np.exp(beta * (np.cos(phi) - 1))
    size = volume * m
    full = np.fft.irfft(np.fft.rfft(g, n=size) ** volume, n=size)
    with_cos = np.fft.irfft(
        np.fft.rfft(g, n=size) ** (volume - 1) * np.fft.rfft(g * np.cos(phi), n=size), n=size
    )
    charges = np.arange(-(volume // 2), volume // 2 + 1)
    index = (2 * math.pi * charges + volume * math.pi) / h - volume / 2
    z_q = np.interp(index, np.arange(size), full)
    z_cos = np.interp(index, np.arange(size), with_cos)
    return float((charges**2 * z_q).sum() / z_q.sum()), float(z_cos.sum() / z_q.sum())


@pytest.mark.parametrize("length", [2, 3, 4])
@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0])
def test_u1_character_expansion_matches_plaquette_convolution(length, beta):
    exact = u1_exact(length, beta)
    q2, plaquette = _u1_by_convolution(length, beta)
    assert exact.q2 == pytest.approx(q2, rel=1e-5, abs=1e-9)
    assert exact.plaquette == pytest.approx(plaquette, rel=1e-7)


def test_u1_plaquette_tends_to_the_bessel_ratio():
    """Large volume: ⟨cos θ_P⟩ → I₁(β)/I₀(β), ⟨Q²⟩/V → the single-plaquette ⟨φ²⟩/4π²."""
    from scipy import integrate, special

    exact = u1_exact(32, 2.0)
    assert exact.plaquette == pytest.approx(special.i1(2.0) / special.i0(2.0), rel=1e-12)
    num = integrate.quad(lambda p: p**2 * math.exp(2 * math.cos(p)), -math.pi, math.pi)[0]
    den = integrate.quad(lambda p: math.exp(2 * math.cos(p)), -math.pi, math.pi)[0]
    assert exact.q2 / 32**2 == pytest.approx(num / den / (4 * math.pi**2), rel=1e-3)
