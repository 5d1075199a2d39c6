"""A Boltzmann generator averaged over a two-element symmetry of its target.

Near a symmetry-breaking transition (φ⁴ towards its critical line, the Ising field at
low temperature) p(x) = p(−x) has two sectors, and a flow trained by reverse KL covers
one of them (mode collapse): its weights miss half the mass, and its independence
Metropolis chains stay in one sector. With an involution g that preserves p and volume
(g∘g = id, |det ∂g| = 1, u(g x) = u(x); here g x = −x), the mixture

    q_g(x) = ½ [q(x) + q(g x)]

is a normalised density that is exactly g-invariant: draw x ~ q, apply g with
probability ½. A flow that covers one sector well gives a q_g that covers both, and
q_g = p exactly when q is p restricted to one sector (times 2). The symmetrisation of
flows under the Z₂ of φ⁴ is discussed by Hackett et al., "Flow-based sampling for
multimodal distributions in lattice field theory", arXiv 2107.00734, and by Nicoli et
al., arXiv 2007.07115.

The wrapped model shares the prior, flow and energy of the base model (its training and
parameters are the base model's); each draw and each log-density costs one extra pass
of the flow's inverse, for q(g x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.samplers.importance import BoltzmannGenerator

Involution = Callable[[Tensor], Tensor]


def symmetrized_evaluations(n_samples: int) -> int:
    """Target evaluations of ``n_samples`` weighted draws: one each, as for the base model
    (u(g x) = u(x), and q(g x) needs the flow, not the energy)."""
    return n_samples


def negate(x: Tensor) -> Tensor:
    """g x = −x: the Z₂ of φ⁴ and of the relaxed Ising field."""
    return -x


class SymmetrizedGenerator(BoltzmannGenerator):
    """``base`` averaged over {id, g}: log q_g(x) = logaddexp(log q(x), log q(g x)) − log 2.

    Args:
        base: the trained generator; its prior, flow, energy and training cost are shared.
        symmetry: the involution g (default x ↦ −x); it must preserve the target's energy
            and volume, which is the caller's claim (checked on draws by
            :meth:`check_symmetry`).
    """

    def __init__(self, base: BoltzmannGenerator, symmetry: Involution = negate):
        super().__init__(base.prior, base.flow, base.energy)
        self.symmetry = symmetry
        self.training_cost = base.training_cost

    def _base_log_prob(self, x: Tensor) -> Tensor:
        return super().log_prob(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """log q_g(x), ``[B]``."""
        pair = torch.stack([self._base_log_prob(x), self._base_log_prob(self.symmetry(x))])
        return torch.logsumexp(pair, dim=0) - math.log(2.0)

    def sample_with_log_prob(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` draws of q_g and their log q_g(x): draws of q, half of them mapped by g."""
        x, log_q = super().sample_with_log_prob(n, generator)
        flip = torch.rand(n, generator=generator, device="cpu") < 0.5
        flip = flip.to(x.device).reshape(n, *([1] * (x.dim() - 1)))
        image = self.symmetry(x)
        log_q_image = self._base_log_prob(image)
        x = torch.where(flip, image, x)
        return x, torch.logaddexp(log_q, log_q_image) - math.log(2.0)

    def check_symmetry(self, n: int, generator: torch.Generator, rtol: float = 1e-6) -> None:
        """Raise ``ValueError`` if g changes the target's energy on ``n`` draws."""
        with torch.no_grad():
            x, _ = self.sample_with_log_prob(n, generator)
            u, u_image = self.energy.energy(x), self.energy.energy(self.symmetry(x))
        finite = torch.isfinite(u)
        if not torch.allclose(u_image[finite], u[finite], rtol=rtol, atol=rtol):
            worst = float((u_image[finite] - u[finite]).abs().max())
            raise ValueError(
                f"the symmetry changes the target's energy by up to {worst:.3g}: "
                "a symmetrised generator needs u(g x) = u(x)"
            )
