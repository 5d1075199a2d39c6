"""Linear flows: a full affine map x = Lz + μ and a learnable elementwise affine map.

:class:`AffineFlow` with L the Cholesky factor of Σ maps N(0, I) exactly onto
N(μ, Σ); a Boltzmann generator built from it for a Gaussian target has uniform
importance weights, which makes it the sharpest test of the weight bookkeeping
(the bgflow test idea; Noé et al., "Boltzmann generators", Science 2019).
:class:`ElementwiseAffine` is ActNorm without data-dependent initialisation
(Kingma & Dhariwal, "Glow", arXiv 1807.03039): a per-coordinate scale and shift.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from boltzgen.flows.base import Flow


class AffineFlow(Flow):
    """x = L z + μ with exact log|det ∂x/∂z| = log|det L|.

    If ``matrix`` is lower-triangular, only its lower triangle is used (and learned):
    log|det L| = Σ log|L_ii| and the inverse is a triangular solve. Otherwise L is a
    general invertible matrix (log-det by LU, inverse by a linear solve).

    Args:
        shift: μ ``[D]``.
        matrix: L ``[D, D]``, invertible.

    Example:
        >>> import torch
        >>> cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
        >>> flow = AffineFlow.from_gaussian(torch.zeros(2, dtype=torch.float64), cov)
        >>> x, logdet = flow(torch.randn(5, 2, dtype=torch.float64))  # x ~ N(0, cov)
    """

    def __init__(self, shift: Tensor, matrix: Tensor):
        super().__init__()
        d = shift.shape[0]
        if shift.dim() != 1 or matrix.shape != (d, d):
            raise ValueError(
                f"shift must be [D] and matrix [D, D], got {list(shift.shape)}, "
                f"{list(matrix.shape)}"
            )
        if torch.linalg.matrix_rank(matrix.detach()) < d:
            raise ValueError("matrix must be invertible")
        self.lower = bool(torch.equal(matrix, matrix.tril()))
        self.shift = nn.Parameter(shift.clone())
        self.matrix = nn.Parameter(matrix.clone())

    @classmethod
    def from_gaussian(cls, mean: Tensor, cov: Tensor) -> AffineFlow:
        """The flow pushing N(0, I) onto N(mean, cov): L = cholesky(cov)."""
        return cls(mean, torch.linalg.cholesky(cov))

    def _matrix(self) -> Tensor:
        return self.matrix.tril() if self.lower else self.matrix

    def _log_abs_det(self) -> Tensor:
        if self.lower:
            return self.matrix.diagonal().abs().log().sum()
        return torch.linalg.slogdet(self.matrix).logabsdet

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z @ self._matrix().T + self.shift
        return x, self._log_abs_det().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = (x - self.shift).T
        if self.lower:
            z = torch.linalg.solve_triangular(self._matrix(), r, upper=False)
        else:
            z = torch.linalg.solve(self.matrix, r)
        return z.T, (-self._log_abs_det()).expand(x.shape[0])


class ElementwiseAffine(Flow):
    """x = z·exp(s) + b per coordinate, learnable s, b ``[D]``; starts as the identity.

    log|det ∂x/∂z| = Σ_i s_i.
    """

    def __init__(self, dim: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim, dtype=dtype))
        self.shift = nn.Parameter(torch.zeros(dim, dtype=dtype))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * self.log_scale.exp() + self.shift
        return x, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = (x - self.shift) * (-self.log_scale).exp()
        return z, (-self.log_scale.sum()).expand(x.shape[0])
