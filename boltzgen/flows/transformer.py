"""Cartesian Transformer flow: exactly invertible autoregressive blocks over atoms.

A TarFlow-style flow (Zhai et al., "Normalizing Flows are Capable Generative Models",
arXiv 2412.06329) on the Cartesian coordinates of N atoms, as used by the sequential
Boltzmann generator (Tan et al., "Scalable Equilibrium Sampling with Sequential
Boltzmann Generators", arXiv 2502.18462). Each :class:`TransformerBlock` reads the atoms
in its own order π (identity or reversed, alternating between blocks) and applies, for
the k-th atom in that order, an affine map whose shift μ_k ∈ R³ and log-scale α_k ∈ R³
come from a causal Transformer over the atoms before it:

    data → noise (one parallel pass):   z_k = (x_k − μ_k(x_<k)) · exp(−α_k(x_<k))
    noise → data (N − 1 passes):        x_k = z_k · exp(α_k(x_<k)) + μ_k(x_<k)

The Jacobian is block-triangular in the order π, so log|det ∂x/∂z| = Σ_k Σ_a α_{k,a}
(and −Σ α for the inverse).

**Centre of mass.** Energies of isolated molecules are translation-invariant, so the
flow lives on the zero-centroid subspace V = {x ∈ R^{N×d} : Σ_i x_i = 0} of dimension
n_V = (N − 1)·d, and every density here is a density on V with respect to its own
Lebesgue measure (the one of orthonormal coordinates w = Qᵀx, Q an orthonormal basis
of V):

* :class:`CenteredGaussianPrior` is N(0, σ²I) on V: the projection of an isotropic
  Gaussian in R^{N×d}, log p(z) = −|z|²/(2σ²) − (n_V/2)·log(2πσ²).
* A block first centres its input (x ↦ Px with P the centring projection, the identity
  on V), uses the first N − 1 atoms in its order as coordinates of V (a chart whose
  Jacobian volume factor N^{d/2} is the same for every block and cancels), transforms
  them autoregressively and restores the last atom as minus the sum of the others.
  Its output lies in V and its log-det, Σ α, is the log-det of its restriction to V.

Hence log q(x) = log p(z) + log|det ∂z/∂x| is the model density on V, normalised over
V; for an input off V it is the density of its centred copy Px, the natural density
for translation-invariant targets. The centre removed is the unweighted centroid;
which centre is removed does not matter for a translation-invariant energy.

The flow is not rotation-equivariant: train it on data augmented by
:func:`random_rotation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from boltzgen.flows.base import Flatten, Flow, Prior, Sequential

_DEFAULT_SEED = 0


def center(x: Tensor) -> Tensor:
    """Subtract the centroid: ``x: [B, N, d]`` → ``x − mean_i x_i``, ``[B, N, d]``."""
    return x - x.mean(dim=1, keepdim=True)


class CenteredGaussianPrior(Prior):
    """Isotropic Gaussian N(0, σ²I) on the zero-centroid subspace V of R^{N×d}.

    Draws are ε − mean_i ε_i with ε ~ N(0, σ²I_{N·d}); the projection P of an isotropic
    Gaussian onto V is isotropic on V. The log-density on V, with n_V = (N − 1)·d,

        log p(z) = −|Pz|² / (2σ²) − (n_V / 2)·log(2πσ²),

    is normalised with respect to the Lebesgue measure of V (orthonormal coordinates).
    An input off V is scored by its centred copy Pz.

    Args:
        n_atoms: N ≥ 2.
        n_dims: d, spatial dimension.
        std: σ > 0.
        dtype: dtype of the draws.

    Example:
        >>> prior = CenteredGaussianPrior(5)
        >>> z = prior.sample(8, torch.Generator().manual_seed(0))  # [8, 15], centroid 0
        >>> prior.log_prob(z).shape
        torch.Size([8])
    """

    def __init__(
        self, n_atoms: int, n_dims: int = 3, std: float = 1.0, dtype: torch.dtype = torch.float64
    ):
        super().__init__()
        if n_atoms < 2 or n_dims < 1 or not std > 0:
            raise ValueError(
                f"CenteredGaussianPrior needs n_atoms ≥ 2, n_dims ≥ 1 and std > 0, "
                f"got {n_atoms}, {n_dims}, {std}"
            )
        self.n_atoms, self.n_dims = int(n_atoms), int(n_dims)
        self.dim = self.n_atoms * self.n_dims
        self.subspace_dim = (self.n_atoms - 1) * self.n_dims
        self.register_buffer("std", torch.tensor(float(std), dtype=dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        shape = (n, self.n_atoms, self.n_dims)
        eps = torch.randn(shape, generator=generator, dtype=self.std.dtype, device=self.std.device)
        return (self.std * center(eps)).reshape(n, self.dim)

    def log_prob(self, z: Tensor) -> Tensor:
        r = center(z.reshape(z.shape[0], self.n_atoms, self.n_dims)) / self.std
        log_norm = 0.5 * self.subspace_dim * torch.log(2 * math.pi * self.std**2)
        return -0.5 * r.pow(2).sum(dim=(1, 2)) - log_norm


def random_rotation_matrices(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` independent rotations ``[n, 3, 3]``, uniform (Haar) on SO(3).

    A unit quaternion q = g/|g|, g ~ N(0, I₄), is uniform on S³, which double-covers
    SO(3) with the Haar measure (Shoemake, "Uniform random rotations", Graphics Gems
    III, 1992); R(q) is its rotation matrix.
    """
    q = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(dim=1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)


def random_rotation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Rotate each configuration about its centroid by an independent Haar rotation.

    Data augmentation for flows that are not rotation-equivariant: the Boltzmann
    density of an isolated molecule is invariant under x_i ↦ R(x_i − c) + c.

    Args:
        x: ``[B, N, 3]``, or ``[B, 3N]`` (atom-major flattening).
        generator: the only source of randomness, on the device of ``x``.

    Returns:
        The rotated configurations, with the shape of ``x``.
    """
    flat_ok = x.dim() == 2 and x.shape[1] % 3 == 0
    if not (flat_ok or (x.dim() == 3 and x.shape[2] == 3)):
        raise ValueError(f"random_rotation needs x of shape [B, N, 3] or [B, 3N], got {x.shape}")
    xyz = x.reshape(x.shape[0], -1, 3)
    c = xyz.mean(dim=1, keepdim=True)
    rot = random_rotation_matrices(x.shape[0], generator, x.dtype, x.device)
    return ((xyz - c) @ rot.transpose(1, 2) + c).reshape(x.shape)


class _CausalLayer(nn.Module):
    """Pre-norm Transformer layer with causal multi-head self-attention: ``[B, L, d]``."""

    def __init__(self, d_model: int, n_heads: int, dtype: torch.dtype):
        super().__init__()
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d_model, dtype=dtype)
        self.qkv = nn.Linear(d_model, 3 * d_model, dtype=dtype)
        self.out = nn.Linear(d_model, d_model, dtype=dtype)
        self.norm_mlp = nn.LayerNorm(d_model, dtype=dtype)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model, dtype=dtype),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model, dtype=dtype),
        )

    def forward(self, h: Tensor) -> Tensor:
        b, length, d = h.shape
        qkv = self.qkv(self.norm_attn(h)).reshape(b, length, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.out(a.transpose(1, 2).reshape(b, length, d))
        return h + self.mlp(self.norm_mlp(h))


class _CausalTransformer(nn.Module):
    """Token k (previous atom's coordinates + embeddings) → 2d affine parameters of atom k.

    Token k embeds the coordinates of the atom before it in the block order (a start
    token for k = 0), that atom's learned embedding, and the learned per-atom and
    atom-type embeddings of the atom it predicts. Causal attention lets output k see
    tokens 0…k only, i.e. the coordinates of atoms 0…k−1.
    """

    def __init__(
        self,
        n_atoms: int,
        n_types: int,
        n_dims: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dtype: torch.dtype,
    ):
        super().__init__()
        self.coords = nn.Linear(n_dims, d_model, dtype=dtype)
        self.previous_atom = nn.Embedding(n_atoms + 1, d_model, dtype=dtype)
        self.target_atom = nn.Embedding(n_atoms, d_model, dtype=dtype)
        self.target_type = nn.Embedding(n_types, d_model, dtype=dtype)
        self.layers = nn.ModuleList(_CausalLayer(d_model, n_heads, dtype) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model, dtype=dtype)
        self.head = nn.Linear(d_model, 2 * n_dims, dtype=dtype)

    def forward(self, prev: Tensor, prev_atom: Tensor, target: Tensor, types: Tensor) -> Tensor:
        """``prev: [B, L, d]`` coordinates, index vectors ``[L]`` → ``[B, L, 2d]``."""
        h = self.coords(prev) + self.previous_atom(prev_atom) + self.target_atom(target)
        h = h + self.target_type(types)
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h))


def _initialise(net: nn.Module, generator: torch.Generator) -> None:
    """Initialise from ``generator``: linear U(±1/√fan_in), embeddings N(0, 1), norms 1."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Linear):
                bound = module.in_features**-0.5
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()


def _check_order(order: Sequence[int] | Tensor, n_atoms: int) -> Tensor:
    order = torch.as_tensor(order, dtype=torch.long)
    if order.shape != (n_atoms,) or not torch.equal(order.sort().values, torch.arange(n_atoms)):
        raise ValueError(f"order must be a permutation of range({n_atoms}), got {order.tolist()}")
    return order


class TransformerBlock(Flow):
    """One autoregressive affine block over atoms, exactly invertible, on ``[B, N·d]``.

    With the input centred and its atoms taken in the block's ``order`` π, the first
    N − 1 atoms y_0 … y_{N−2} (coordinates of the zero-centroid subspace V) map as

        x_k = z_k · exp(α_k) + μ_k,   (μ_k, α_k) = Transformer(x_0 … x_{k−1}),

    α_k = b·tanh(α̃_k / b) soft-bounded, and the last atom is minus the sum of the
    others. ``forward`` (noise → data) runs the Transformer N − 1 times on growing
    prefixes; ``inverse`` (data → noise) needs one causal pass. The output head starts
    at zero, so a new block is the identity on V. log|det| = ±Σ α on V (see the module
    docstring for why the chart's volume factor cancels).

    Args:
        n_atoms: N ≥ 2.
        order: π, a permutation of ``range(N)``; the atom ``order[-1]`` is the one
            restored from the others.
        d_model: width of the Transformer (divisible by ``n_heads``).
        n_heads: attention heads.
        n_layers: depth of the Transformer.
        atom_types: ``[N]`` integer types (e.g. elements) for a shared type embedding;
            default: all atoms one type (per-atom embeddings are always learned).
        n_dims: d, spatial dimension.
        scale_bound: b > 0, the bound on |α| per coordinate.
        dtype: parameter dtype.
        generator: initialises the Transformer (default: seeded 0).

    Example:
        >>> block = TransformerBlock(4, order=[3, 2, 1, 0], d_model=16, n_heads=2)
        >>> z = CenteredGaussianPrior(4).sample(8)  # [8, 12]
        >>> x, logdet = block(z)  # identity at initialisation: x == z, logdet == 0
    """

    def __init__(
        self,
        n_atoms: int,
        order: Sequence[int] | Tensor,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        atom_types: Sequence[int] | Tensor | None = None,
        n_dims: int = 3,
        scale_bound: float = 2.0,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_block_args(n_atoms, n_dims, d_model, n_heads, n_layers, scale_bound)
        order = _check_order(order, n_atoms)
        types = _check_types(atom_types, n_atoms)
        self.n_atoms, self.n_dims, self.scale_bound = int(n_atoms), int(n_dims), float(scale_bound)
        self.register_buffer("order", order)
        self.register_buffer("unorder", torch.argsort(order))
        self.register_buffer("prev_atom", torch.cat([torch.tensor([n_atoms]), order[:-2]]))
        self.register_buffer("target_atom", order[:-1].clone())
        self.register_buffer("target_type", types[order[:-1]])
        with torch.device("meta"):
            net = _CausalTransformer(
                n_atoms, int(types.max()) + 1, n_dims, d_model, n_heads, n_layers, dtype
            )
        self.net = net.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(_DEFAULT_SEED) if generator is None else generator
        _initialise(self.net, generator)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)

    def _chart(self, x: Tensor) -> Tensor:
        """``[B, N·d]`` → the first N − 1 centred atoms in block order ``[B, N−1, d]``."""
        if x.dim() != 2 or x.shape[1] != self.n_atoms * self.n_dims:
            raise ValueError(
                f"TransformerBlock input must have shape [B, {self.n_atoms * self.n_dims}] "
                f"(N={self.n_atoms} atoms × {self.n_dims}), got {list(x.shape)}"
            )
        xyz = center(x.reshape(x.shape[0], self.n_atoms, self.n_dims))
        return xyz[:, self.order[:-1]]

    def _embed(self, y: Tensor) -> Tensor:
        """Chart coordinates ``[B, N−1, d]`` → the point of V, ``[B, N·d]`` in atom order."""
        full = torch.cat([y, -y.sum(dim=1, keepdim=True)], dim=1)
        return full[:, self.unorder].reshape(y.shape[0], -1)

    def _params(self, prev: Tensor) -> tuple[Tensor, Tensor]:
        """Atoms ``prev: [B, k, d]`` (block order) → (μ, α) ``[B, k+1, d]`` of atoms 0…k."""
        start = prev.new_zeros(prev.shape[0], 1, self.n_dims)
        length = prev.shape[1] + 1
        out = self.net(
            torch.cat([start, prev], dim=1),
            self.prev_atom[:length],
            self.target_atom[:length],
            self.target_type[:length],
        )
        shift, raw = out.chunk(2, dim=-1)
        return shift, self.scale_bound * torch.tanh(raw / self.scale_bound)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = self._chart(z)
        xs: list[Tensor] = []
        log_scales: list[Tensor] = []
        for k in range(self.n_atoms - 1):
            shift, alpha = self._params(torch.stack(xs, dim=1) if xs else u[:, :0])
            xs.append(u[:, k] * alpha[:, k].exp() + shift[:, k])
            log_scales.append(alpha[:, k])
        return self._embed(torch.stack(xs, dim=1)), torch.cat(log_scales, dim=1).sum(dim=1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = self._chart(x)
        shift, alpha = self._params(y[:, :-1])
        return self._embed((y - shift) * (-alpha).exp()), -alpha.sum(dim=(1, 2))


def _check_block_args(
    n_atoms: int, n_dims: int, d_model: int, n_heads: int, n_layers: int, scale_bound: float
) -> None:
    if n_atoms < 2 or n_dims < 1:
        raise ValueError(
            f"a Transformer block needs n_atoms ≥ 2, n_dims ≥ 1, got {n_atoms}, {n_dims}"
        )
    if n_heads < 1 or d_model < 1 or d_model % n_heads != 0 or n_layers < 1:
        raise ValueError(
            f"need n_layers ≥ 1 and d_model divisible by n_heads ≥ 1, "
            f"got d_model={d_model}, n_heads={n_heads}, n_layers={n_layers}"
        )
    if not scale_bound > 0:
        raise ValueError(f"scale_bound must be positive, got {scale_bound}")


def _check_types(atom_types: Sequence[int] | Tensor | None, n_atoms: int) -> Tensor:
    if atom_types is None:
        return torch.zeros(n_atoms, dtype=torch.long)
    types = torch.as_tensor(atom_types, dtype=torch.long)
    if types.shape != (n_atoms,) or bool((types < 0).any()):
        raise ValueError(
            f"atom_types must be {n_atoms} non-negative integers, got {types.tolist()}"
        )
    return types


def make_transformer_flow(
    n_atoms: int,
    n_blocks: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    n_layers: int = 2,
    atom_types: Sequence[int] | Tensor | None = None,
    n_dims: int = 3,
    scale_bound: float = 2.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Sequential:
    """``n_blocks`` :class:`TransformerBlock` s, identity and reversed order alternating.

    The flow maps latents ``[B, N·d]`` on V (draws of :class:`CenteredGaussianPrior`)
    to configurations ``[B, N, d]`` (a final :class:`Flatten`), and starts as the
    identity; ``seed`` initialises the Transformers.

    Example:
        >>> flow = make_transformer_flow(5, n_blocks=2, d_model=16, n_heads=2)
        >>> prior = CenteredGaussianPrior(5)
        >>> z = prior.sample(8, torch.Generator().manual_seed(0))
        >>> x, logdet = flow(z)  # x: [8, 5, 3], logdet: [8]
        >>> log_q = prior.log_prob(z) - logdet
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be ≥ 1, got {n_blocks}")
    generator = torch.Generator().manual_seed(seed)
    forward_order, reversed_order = torch.arange(n_atoms), torch.arange(n_atoms - 1, -1, -1)
    blocks = [
        TransformerBlock(
            n_atoms,
            reversed_order if k % 2 else forward_order,
            d_model,
            n_heads,
            n_layers,
            atom_types,
            n_dims,
            scale_bound,
            dtype,
            generator,
        )
        for k in range(n_blocks)
    ]
    return Sequential(*blocks, Flatten((n_atoms, n_dims)))
