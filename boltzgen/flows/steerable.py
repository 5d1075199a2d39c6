"""Temperature-steerable flows: one flow, a Boltzmann-like density at every temperature.

Dibak, Klein, Köhler, Noé, "Temperature steerable flows and Boltzmann generators",
Phys. Rev. Research 2022 (arXiv 2108.01590). A Boltzmann density scales with
temperature as p_T(x) ∝ p_{T0}(x)^{T0/T}. A flow x = f(z) with a *constant* Jacobian
determinant, log|det ∂f⁻¹/∂x| = c, and the tempered Gaussian prior

    p_{Z,T}(z) ∝ p_Z(z)^{T0/T} = N(z; 0, (T/T0)·I_D)

has model densities log q_T(x) = −(T0/T)·|f⁻¹(x)|²/2 − (D/2)·log(2πT/T0) + c, so

    log q_T(x) − (T0/T)·log q_{T0}(x) = (1 − T0/T)·(c − (D/2)·log 2π) − (D/2)·log(T/T0),

a constant in x: q_T ∝ q_{T0}^{T0/T} exactly. A flow trained at T0 therefore samples a
whole temperature ladder, and is exact at every T if it is exact at T0.

Constant-Jacobian layers: :class:`VolumePreservingCoupling` (a RealNVP coupling whose
log-scales sum to zero; NICE's additive coupling is its case s ≡ 0), and the affine
maps :class:`~boltzgen.flows.linear.ElementwiseAffine` and
:class:`~boltzgen.flows.linear.AffineFlow`, whose log-dets do not depend on x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flatten, Flow, GaussianPrior, Sequential
from boltzgen.flows.coupling import AffineCoupling, alternating_masks
from boltzgen.flows.linear import AffineFlow, ElementwiseAffine


class VolumePreservingCoupling(AffineCoupling):
    """RealNVP coupling with zero-sum log-scales: x_t = z_t·exp(s) + t, Σ s = 0.

    (s̃, t) = conditioner(z_c); s = b·tanh(s̃/b) − mean(b·tanh(s̃/b)) over the
    transformed coordinates, so log|det ∂x/∂z| = Σ s = 0 for every input (the
    volume-preserving RealNVP of Dibak et al., arXiv 2108.01590; with one transformed
    coordinate it is NICE's additive coupling, Dinh et al., arXiv 1410.8516). The
    log-det is returned as exact zeros. Starts as the identity.

    Args:
        dim: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        mask: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        hidden: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        n_layers: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        dtype: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        generator: as for :class:`~boltzgen.flows.coupling.AffineCoupling`.
        scale_bound: b > 0; each |s| is at most 2b.

    Example:
        >>> layer = VolumePreservingCoupling(4, alternating_masks(4, 1)[0])
        >>> x, logdet = layer(torch.randn(8, 4, dtype=torch.float64))  # logdet == 0
    """

    def _shift_and_log_scale(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        shift, s = super()._shift_and_log_scale(theta)
        return shift, s - s.mean(dim=1, keepdim=True)

    def _forward_t(self, z_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return super()._forward_t(z_t, theta)[0], z_t.new_zeros(z_t.shape[0])

    def _inverse_t(self, x_t: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        return super()._inverse_t(x_t, theta)[0], x_t.new_zeros(x_t.shape[0])


CONSTANT_JACOBIAN_LAYERS: tuple[type[Flow], ...] = (
    VolumePreservingCoupling,
    ElementwiseAffine,
    AffineFlow,
    Flatten,
)
"""Flow types whose log-det does not depend on their input (``Sequential`` s of them too)."""


def has_constant_jacobian(flow: Flow) -> bool:
    """Whether ``flow`` is built only from :data:`CONSTANT_JACOBIAN_LAYERS`."""
    if isinstance(flow, Sequential):
        return all(has_constant_jacobian(layer) for layer in flow.layers)
    return isinstance(flow, CONSTANT_JACOBIAN_LAYERS)


class TemperatureSteerableFlow(nn.Module):
    """A constant-Jacobian flow with the tempered prior N(0, (T/T0)·I): q_T ∝ q_{T0}^{T0/T}.

    Dibak, Klein, Köhler, Noé, arXiv 2108.01590. At temperature T the model is
    z ~ N(0, (T/T0)·I_D), x = f(z), log q_T(x) = log N(f⁻¹(x); 0, (T/T0)·I) + c with
    c = log|det ∂f⁻¹/∂x| the same for all x, so log q_T(x) − (T0/T)·log q_{T0}(x) does
    not depend on x. Use it as a Boltzmann generator at T with
    ``BoltzmannGenerator(tsf.prior(T), tsf.flow, energy.at_temperature(T))``.

    Args:
        prior_dim: D, the latent dimension.
        layers: constant-Jacobian flows (:data:`CONSTANT_JACOBIAN_LAYERS`, or
            ``Sequential`` s of them), applied in order from latent to configuration.
        reference_temperature: T0 > 0 (kelvin, or any unit the temperatures share).
        dtype: dtype of the prior's draws.

    Example:
        >>> tsf = make_steerable_flow(4, reference_temperature=300.0, n_layers=2)
        >>> x = tsf.sample(16, 600.0, torch.Generator().manual_seed(0))  # [16, 4]
        >>> log_q = tsf.log_prob(x, 600.0)  # [16]
    """

    def __init__(
        self,
        prior_dim: int,
        layers: Sequence[Flow],
        reference_temperature: float,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if prior_dim < 1:
            raise ValueError(f"prior_dim must be ≥ 1, got {prior_dim}")
        self.flow = Sequential(*layers)
        for layer in self.flow.layers:
            if not has_constant_jacobian(layer):
                raise ValueError(
                    f"TemperatureSteerableFlow needs constant-Jacobian layers, got "
                    f"{type(layer).__name__}: use VolumePreservingCoupling or one of "
                    f"{[t.__name__ for t in CONSTANT_JACOBIAN_LAYERS]}"
                )
        self.prior_dim = int(prior_dim)
        self.reference_temperature = _check_temperature(reference_temperature, "reference")
        self.register_buffer("reference_std", torch.ones(prior_dim, dtype=dtype))

    def prior(self, temperature: float) -> GaussianPrior:
        """p_{Z,T} = N(0, (T/T0)·I_D), the reference standard normal raised to T0/T."""
        ratio = _check_temperature(temperature) / self.reference_temperature
        std = self.reference_std * math.sqrt(ratio)
        return GaussianPrior(self.prior_dim, std=std, dtype=std.dtype).to(std.device)

    def sample_with_log_prob(
        self, n: int, temperature: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``n`` draws x ``[n, *event_shape]`` at T and log q_T(x) ``[n]``."""
        prior = self.prior(temperature)
        z = prior.sample(n, generator)
        x, logdet = self.flow(z)
        return x, prior.log_prob(z) - logdet

    def sample(
        self, n: int, temperature: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` draws x ~ q_T, ``[n, *event_shape]``."""
        return self.sample_with_log_prob(n, temperature, generator)[0]

    def log_prob(self, x: Tensor, temperature: float) -> Tensor:
        """log q_T(x) = log p_{Z,T}(f⁻¹(x)) + log|det ∂f⁻¹/∂x|, ``[B]``."""
        z, logdet = self.flow.inverse(x)
        return self.prior(temperature).log_prob(z) + logdet


def _check_temperature(temperature: float, name: str = "") -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        label = f"{name} temperature" if name else "temperature"
        raise ValueError(f"{label} must be a finite positive number, got {temperature!r}")
    return t


def make_steerable_flow(
    dim: int,
    reference_temperature: float,
    n_layers: int = 4,
    hidden: int = 64,
    conditioner_layers: int = 2,
    scale_bound: float = 2.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> TemperatureSteerableFlow:
    """``n_layers`` :class:`VolumePreservingCoupling` s on alternating masks, then a
    learnable :class:`~boltzgen.flows.linear.ElementwiseAffine` (the only volume change).

    Starts as the identity, so q_T = N(0, (T/T0)·I); ``seed`` initialises the
    conditioners' hidden layers.
    """
    generator = torch.Generator().manual_seed(seed)
    couplings = [
        VolumePreservingCoupling(
            dim, mask, hidden, conditioner_layers, scale_bound, dtype, generator
        )
        for mask in alternating_masks(dim, n_layers)
    ]
    return TemperatureSteerableFlow(
        dim, [*couplings, ElementwiseAffine(dim, dtype)], reference_temperature, dtype
    )
