"""Boltzmann generator: a normalizing flow reweighted to the Boltzmann distribution.

Noé, Olsson, Köhler, Wu, "Boltzmann generators: sampling equilibrium states of
many-body systems with deep learning", Science 2019 (arXiv 1812.01729). Draw
z ~ p_Z, push it through the flow x = f(z) with log-det ℓ = log|det ∂f/∂z|, so that
log q(x) = log p_Z(z) − ℓ, and weigh x by w = exp(−u(x)) / q(x):

    log w = u_Z(z) + ℓ − u(x),     u_Z = −log p_Z   (bgflow's convention),

which makes self-normalised averages Σ w̃_i O(x_i) consistent for ⟨O⟩_p and
(1/n) Σ w_i an unbiased estimate of Z = ∫ exp(−u) (p_Z is normalised).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow, Prior
from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost, CostMeter, WeightedSamples


class BoltzmannGenerator(nn.Module):
    """Prior, flow and target energy: ``sample`` returns importance-weighted draws.

    Args:
        prior: latent density p_Z on ``[B, D]``.
        flow: x = f(z), mapping ``[B, D]`` latents to ``[B, *energy.event_shape]``.
        energy: the target u(x) (not a module; it is not saved in ``state_dict``).

    Attributes:
        training_cost: what training this generator cost; :func:`boltzgen.training.train`
            sets it, and :meth:`sample` reports it in ``cost.train_*``.

    Example:
        >>> import torch
        >>> from boltzgen.energies.toy import DoubleWell2D
        >>> from boltzgen.flows import GaussianPrior, make_spline_flow
        >>> bg = BoltzmannGenerator(GaussianPrior(2), make_spline_flow(2), DoubleWell2D())
        >>> samples = bg.sample(1000, torch.Generator().manual_seed(0))
        >>> samples.log_weights.shape, samples.cost.energy_evals
        (torch.Size([1000]), 1000)
    """

    def __init__(self, prior: Prior, flow: Flow, energy: Energy):
        super().__init__()
        self.prior = prior
        self.flow = flow
        self.energy = energy
        self.training_cost = Cost()

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"target={self.energy!r}, trainable parameters={n:,}"

    def at_temperature(self, temperature: float) -> BoltzmannGenerator:
        """The same prior and flow (shared, not copied) weighed at another temperature.

        A trained flow is a proposal for any target it overlaps: drawn from q and weighed
        by w = exp(−u_T(x)) / q(x), with u_T = u · T₀/T the energy reduced at T, its
        self-normalised averages are consistent for the Boltzmann distribution at T, and
        the amortised cost of that second temperature is the draws alone. How far T may
        move from the training temperature T₀ is the ESS's to say: heating broadens the
        target beyond q's tails (heavy weights), cooling narrows it. The training cost is
        kept, so that a first estimate still reports it.
        """
        other = BoltzmannGenerator(self.prior, self.flow, self.energy.at_temperature(temperature))
        other.training_cost = self.training_cost
        return other

    def log_prob(self, x: Tensor) -> Tensor:
        """Model log-density log q(x) = log p_Z(f⁻¹(x)) + log|det ∂f⁻¹/∂x|, ``[B]``."""
        z, logdet = self.flow.inverse(x)
        return self.prior.log_prob(z) + logdet

    def sample_with_log_prob(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` model draws x ``[n, *event_shape]`` and their log q(x) ``[n]`` (no energy)."""
        z = self.prior.sample(n, generator)
        x, logdet = self.flow(z)
        return x, self.prior.log_prob(z) - logdet

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        batch_size: int = 10_000,
        training_cost: Cost | None = None,
        progress: bool = False,
    ) -> WeightedSamples:
        """``n`` draws with log-weights −u(x) − log q(x), in batches, without gradients.

        Args:
            n: number of samples.
            generator: the only source of randomness.
            batch_size: configurations pushed through the flow and energy at once.
            training_cost: training cost to report (default: ``self.training_cost``).
            progress: show a progress bar over the batches.

        Returns:
            :class:`WeightedSamples` with ``energies`` u(x) (``+inf`` for failed
            configurations, which get log-weight −inf), sampling cost measured on the
            energy's counter plus the training cost, and ``info`` holding ``ess``,
            ``ess_fraction`` (Kish) and ``n_nonfinite``.
        """
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be positive, got {n}, {batch_size}")
        meter = CostMeter(self.energy)
        with meter.measure(), torch.no_grad():
            starts = range(0, n, batch_size)
            parts = [
                self._weighted_batch(min(batch_size, n - s), generator)
                for s in tqdm(starts, desc="importance draws", unit="batch", disable=not progress)
            ]
        x, log_w, u = (torch.cat(p) for p in zip(*parts, strict=True))
        training = self.training_cost if training_cost is None else training_cost
        return WeightedSamples(
            x, log_w, u, meter.cost.with_training(training), _weight_info(log_w, u)
        )

    def _weighted_batch(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        x, log_q = self.sample_with_log_prob(n, generator)
        u = self.energy.energy(x)
        return x, -u - log_q, u


def _weight_info(log_w: Tensor, u: Tensor) -> dict[str, float | int]:
    """Kish ESS, ESS fraction and the number of failed (u = +inf) samples."""
    ess = batch_ess(log_w)
    n_nonfinite = int((~torch.isfinite(u)).sum())
    return {"ess": ess, "ess_fraction": ess / log_w.shape[0], "n_nonfinite": n_nonfinite}


def importance_evaluations(n_samples: int) -> int:
    """Target evaluations of :meth:`BoltzmannGenerator.sample`: one per draw."""
    return n_samples
