"""Training objectives of Boltzmann generators: forward KL, reverse KL and their mix.

Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019 (arXiv 1812.01729),
with the flow x = f(z), z ~ p_Z and log q(x) = log p_Z(z) − log|det ∂f/∂z|:

* forward KL (maximum likelihood on samples x ~ p, e.g. MD data):
      KL(p‖q) = −E_p[log q(x)] + const,  log q(x) = log p_Z(f⁻¹(x)) + log|det ∂f⁻¹/∂x|;
* reverse KL (energy-based, needs no data):
      KL(q‖p) − log Z = E_z[u(f(z)) − log|det ∂f/∂z| + log p_Z(z)],
  where Z = ∫exp(−u); the loss is ≥ −log Z with equality iff q = p;
* mixed: w · forward + (1 − w) · reverse;
* symmetric reverse KL, for a target with an involution g (u(g x) = u(x), |det ∂g| = 1):
  the reverse KL of the averaged density q_g(x) = ½[q(x) + q(g x)],
      KL(q_g‖p) − log Z = E_z[u(x) + log q_g(x)],  x = f(z),
  an expectation under q rather than q_g because u + log q_g is g-invariant. Plain reverse
  KL puts q on one sector of a two-sector target, and near the boundary between sectors
  it has to learn a cliff of p restricted to that sector, which it does poorly; q_g only has to
  match p, so q may spill across the boundary (Hackett et al., arXiv 2107.00734);
* log-variance, for any reference density r of z (the log-variance divergence of Nüsken &
  Richter, arXiv 2005.05409; Richter et al., "VarGrad", arXiv 2010.10436), taken in the
  latent space between p_Z and the pulled-back target p_f(z) ∝ exp(−u(f(z)))|det ∂f/∂z|:
      L(θ) = Var_{z~r}[u(f(z)) − log|det ∂f/∂z| + log p_Z(z)] = Var_{z~r}[log w(f(z))],
  zero iff p_f = p_Z (so q = p) wherever r puts mass, whatever r is. Reverse KL only sees
  where q already samples; a reference broader than the prior makes the flow match p also
  where q is rare — at the barriers that a chain run in the latent space (field-
  transformation HMC) must cross.

Energies in the reverse-KL loss are softly capped (:func:`soft_cap`) so that early,
wild flows with huge or infinite energies give finite losses and gradients. The cap
only shapes the training objective: importance weights always use the true u.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow, Prior


def soft_cap(u: Tensor, cap: float) -> Tensor:
    """u below ``cap``; cap + log(1 + u − cap) above; non-finite u as u = dtype max.

    The map is continuous with a continuous first derivative at ``cap`` and still
    increasing, so huge energies keep a (small) gradient towards lower energy — the
    linear-log regularisation of Noé et al. 2019. An energy of ``+inf`` or NaN (a
    failed configuration) becomes cap + log(finfo.max) ≈ cap + 709.8 in float64
    (≈ cap + 88.7 in float32) with zero gradient: finite, never silently dropped.

    Args:
        u: ``[B]`` reduced energies.
        cap: the threshold above which energies are compressed.
    """
    big = torch.finfo(u.dtype).max
    u = torch.nan_to_num(u, nan=big, posinf=big)
    excess = torch.clamp(u - cap, min=0.0)
    return torch.where(u > cap, cap + torch.log1p(excess), u)


def forward_kl(prior: Prior, flow: Flow, x: Tensor) -> Tensor:
    """Negative log-likelihood −(1/B) Σ log q(x_b) of data ``x: [B, *event_shape]``."""
    z, logdet = flow.inverse(x)
    return -(prior.log_prob(z) + logdet).mean()


def reverse_kl(
    prior: Prior,
    flow: Flow,
    energy: Energy,
    batch_size: int,
    generator: torch.Generator,
    energy_cap: float = 1e3,
) -> tuple[Tensor, Tensor]:
    """Reverse-KL loss (1/B) Σ [ũ(f(z)) − log|det ∂f/∂z| + log p_Z(z)] and log-weights.

    ũ = :func:`soft_cap` (u, ``energy_cap``). ``batch_size`` energy evaluations.

    Returns:
        ``(loss: [], log_w: [B])`` with the uncapped, detached log-weights
        log w = −u(x) − log q(x) of the batch (for the ESS).
    """
    _, u, log_q = _model_batch(prior, flow, energy, batch_size, generator)
    loss = (soft_cap(u, energy_cap) + log_q).mean()
    return loss, (-u - log_q).detach()


def log_variance(
    prior: Prior,
    flow: Flow,
    energy: Energy,
    reference: Prior,
    batch_size: int,
    generator: torch.Generator,
    energy_cap: float = 1e3,
) -> tuple[Tensor, Tensor]:
    """Log-variance loss: the unbiased variance over z ~ ``reference`` of
    ũ(f(z)) − log|det ∂f/∂z| + log p_Z(z) (= −log w up to a constant).

    No gradient flows through the draws of z, so ``reference`` may be any distribution
    of the latent space that can be sampled. ``batch_size`` energy evaluations.

    Returns:
        ``(loss: [], log_w: [B])``, log w = −u(x) − log q(x) at the reference's draws
        (uncapped, detached); their ESS is that of q only when ``reference`` is the prior.
    """
    if batch_size < 2:
        raise ValueError(f"the log-variance loss needs batch_size ≥ 2, got {batch_size}")
    _, u, log_q = _model_batch(prior, flow, energy, batch_size, generator, reference)
    loss = (soft_cap(u, energy_cap) + log_q).var()
    return loss, (-u - log_q).detach()


def _model_batch(
    prior: Prior,
    flow: Flow,
    energy: Energy,
    batch_size: int,
    generator: torch.Generator,
    source: Prior | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``batch_size`` draws x = f(z), z ~ ``source`` (the prior by default), their energies
    u(x) and log q(x), differentiable."""
    z = (prior if source is None else source).sample(batch_size, generator)
    x, logdet = flow(z)
    return x, energy.energy(x), prior.log_prob(z) - logdet


def symmetric_reverse_kl(
    prior: Prior,
    flow: Flow,
    energy: Energy,
    symmetry: Callable[[Tensor], Tensor],
    batch_size: int,
    generator: torch.Generator,
    energy_cap: float = 1e3,
) -> tuple[Tensor, Tensor]:
    """Reverse-KL loss of q_g = ½[q + q∘g]: (1/B) Σ [ũ(x) + log q_g(x)], x = f(z), z ~ p_Z.

    log q_g(x) = logaddexp(log q(x), log q(g x)) − log 2, with log q(g x) from the flow's
    inverse (one more pass per step, no more energy evaluations: ``batch_size``). The
    caller vouches that g preserves u and volume.

    Returns:
        ``(loss: [], log_w: [B])``, log w = −u(x) − log q_g(x) (uncapped, detached): the
        weights of the batch as draws of q_g, for the ESS.
    """
    x, u, log_q = _model_batch(prior, flow, energy, batch_size, generator)
    z_image, logdet_inverse = flow.inverse(symmetry(x))
    log_q_image = prior.log_prob(z_image) + logdet_inverse
    log_q_g = torch.logaddexp(log_q, log_q_image) - math.log(2.0)
    loss = (soft_cap(u, energy_cap) + log_q_g).mean()
    return loss, (-u - log_q_g).detach()


def mixed_kl(
    prior: Prior,
    flow: Flow,
    energy: Energy,
    x: Tensor,
    generator: torch.Generator,
    forward_weight: float,
    energy_cap: float = 1e3,
) -> tuple[Tensor, Tensor]:
    """w · :func:`forward_kl` on ``x`` + (1 − w) · :func:`reverse_kl` on ``len(x)`` draws.

    Returns:
        ``(loss: [], log_w: [B])``, the log-weights of the reverse-KL batch.
    """
    if not 0.0 <= forward_weight <= 1.0:
        raise ValueError(f"forward_weight must lie in [0, 1], got {forward_weight}")
    rev, log_w = reverse_kl(prior, flow, energy, x.shape[0], generator, energy_cap)
    fwd = forward_kl(prior, flow, x)
    return forward_weight * fwd + (1.0 - forward_weight) * rev, log_w
