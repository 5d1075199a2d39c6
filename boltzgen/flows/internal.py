"""Internal coordinates: a Z-matrix chosen from the bond graph, and the exact NeRF flow.

A Z-matrix places atoms one at a time. Atom i (placement row k ≥ 3) is given by its
bond length r = |x_i − x_a| to a placed, bonded atom a, the bond angle θ = ∠(i, a, b)
with a placed neighbour b of a, and the torsion φ = dihedral(c, b, a, i) with a third
placed atom c. NeRF (Parsons et al., J. Comput. Chem. 26, 1063 (2005)) puts the atom at

    x_i = x_a + r (−cos θ e₁ + sin θ cos φ e₂ + sin θ sin φ e₃),
    e₁ = (x_a − x_b)/|x_a − x_b|,  e₃ = (x_b − x_c) × e₁ / |…|,  e₂ = e₃ × e₁,

which are spherical coordinates (r, π − θ, φ) of x_i − x_a in the orthonormal frame
(e₁, e₂, e₃) of the already placed atoms. Dihedrals follow the IUPAC sign (as mdtraj and
OpenMM): φ ∈ (−π, π], angles θ ∈ (0, π), bonds r > 0; lengths in nm, angles in radians.

**The first three atoms and the global frame.** Atom 0 (the root) sits at the origin
o ∈ ℝ³ (translation). Atom 1 is x₀ + r₁ u(θ₁, φ₁) with u = (sin θ₁ cos φ₁, sin θ₁ sin φ₁,
cos θ₁), the polar and azimuthal angle of the first bond. Atom 2 is placed by the NeRF
formula above with e₂ = e_θ = ∂u/∂θ₁ = (cos θ₁ cos φ₁, cos θ₁ sin φ₁, −sin θ₁), a fixed
function of the first bond, and e₃ = e₁ × e₂; its "torsion" ψ₂ is the rotation of the
first plane about the first bond. (θ₁, φ₁, ψ₂) are ZYZ-type Euler angles of the molecule.

**Log-determinant.** Ordered by placement, x_k depends only on the coordinates of rows
≤ k, so ∂x/∂q is block-triangular with 3 × 3 diagonal blocks: the identity for the
origin and, for every k ≥ 1, the Jacobian of spherical coordinates in an orthonormal
frame, |det| = r_k² sin θ_k (sin(π − θ) = sin θ). Hence, for the internal → Cartesian map,

    log|det ∂x/∂q| = Σ_{k=1}^{N−1} 2 log r_k + Σ_{k=2}^{N−1} log sin θ_k + log sin θ₁.

**Dropping the six global degrees of freedom.** The last term is the density of the
Haar measure of SO(3) in the Euler angles: d³R = sin θ₁ dθ₁ dφ₁ dψ₂ (total 8π²). For a
target p(x) ∝ exp(−u(x)) invariant under rotations and translations, integrating out the
global frame g = (o, θ₁, φ₁, ψ₂) at fixed q′ (the 3N − 6 bonds, angles and torsions) gives

    p(q′) = ∫ p(x(q′, g)) |det ∂x/∂(q′, g)| dg = 8π² V · exp(−u(x(q′))) J(q′),
    log J(q′) = Σ_{k≥1} 2 log r_k + Σ_{k≥2} log sin θ_k,

with V the (formally infinite, constant) volume of translations. :class:`FixedFrame
InternalCoordinates` maps q′ to Cartesians in one stored frame and returns log J(q′) as
its log-det, so log w = −u(x) + log J(q′) − log q(q′) are exact importance weights up to
the constant log(8π²V), which self-normalisation removes (Noé, Olsson, Köhler, Wu,
"Boltzmann generators", Science 2019, arXiv 1812.01729; Köhler, Krämer, Noé, "Smooth
normalizing flows", arXiv 2110.00351).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mdtraj
import torch
from torch import Tensor

from boltzgen.flows.base import Flow
from boltzgen.flows.zmatrix import FRAME_DIM, InternalLayout, ZMatrix, neighbours

# --------------------------------------------------------------------------- geometry


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=-1)


def _angle(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """∠(a, b, c) at b, radians, as atan2(|u × v|, u · v) (stable near 0 and π)."""
    u, v = a - b, c - b
    return torch.atan2(torch.linalg.vector_norm(torch.linalg.cross(u, v), dim=-1), _dot(u, v))


def _dihedral(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """Dihedral a-b-c-d in (−π, π], IUPAC sign: atan2(|b₁| b₀·(b₁×b₂), (b₀×b₁)·(b₁×b₂))."""
    b0, b1, b2 = b - a, c - b, d - c
    n2 = torch.linalg.cross(b1, b2)
    y = torch.linalg.vector_norm(b1, dim=-1) * _dot(b0, n2)
    return torch.atan2(y, _dot(torch.linalg.cross(b0, b1), n2))


def _spherical(
    c: Tensor, e1: Tensor, e2: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor
) -> Tensor:
    """c + r (−cos θ e₁ + sin θ cos φ e₂ + sin θ sin φ e₃), e₃ = e₁ × e₂; ``[..., 3]``."""
    e3 = torch.linalg.cross(e1, e2)
    r, th, ph = bond[..., None], angle[..., None], torsion[..., None]
    return c + r * (-th.cos() * e1 + th.sin() * (ph.cos() * e2 + ph.sin() * e3))


def _polar_basis(theta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """u(θ, φ) and e_θ = ∂u/∂θ, both ``[..., 3]`` unit vectors."""
    st, ct, sp, cp = theta.sin(), theta.cos(), phi.sin(), phi.cos()
    u = torch.stack([st * cp, st * sp, ct], dim=-1)
    return u, torch.stack([ct * cp, ct * sp, -st], dim=-1)


def log_volume(bonds: Tensor, angles: Tensor) -> Tensor:
    """Σ 2 log r + Σ log sin θ ``[B]`` for ``bonds: [B, N−1]`` (nm), ``angles: [B, N−2]``.

    Absolute values make it finite for r < 0 or θ ∉ (0, π), which a flow may output in
    its far tails; the map is a bijection only on r > 0, θ ∈ (0, π).
    """
    return 2 * bonds.abs().log().sum(dim=1) + angles.sin().abs().log().sum(dim=1)


# --------------------------------------------------------------------------- flows


class _ZMatrixMap(Flow):
    """Shared machinery: Cartesian ``[B, N, 3]`` ↔ (bonds, angles, torsions, frame)."""

    def __init__(self, zmatrix: ZMatrix):
        super().__init__()
        self.zmatrix = zmatrix
        self.n_atoms = zmatrix.n_atoms
        self.register_buffer("order", zmatrix.order.clone())
        self.register_buffer("refs", zmatrix.refs.clone())
        rows, self.level_bounds = _levels(zmatrix.refs, zmatrix.order)
        self.register_buffer("level_rows", rows)

    def _cartesian(self, bonds: Tensor, angles: Tensor, torsions: Tensor, frame: Tensor) -> Tensor:
        """NeRF, one dependency level at a time: ``[B, N, 3]`` in nm."""
        origin, theta1, phi1, psi2 = frame[:, :3], frame[:, 3], frame[:, 4], frame[:, 5]
        u, e_theta = _polar_basis(theta1, phi1)
        x1 = origin + bonds[:, :1] * u
        first = {int(self.order[0]): origin, int(self.order[1]): x1}
        a, b = (first[int(j)] for j in self.refs[2, :2])
        x2 = _spherical(a, _unit(a - b), e_theta, bonds[:, 1], angles[:, 0], psi2)
        x = bonds.new_zeros(bonds.shape[0], self.n_atoms, 3)
        x = x.index_copy(1, self.order[:3], torch.stack([origin, x1, x2], dim=1))
        for start, stop in self.level_bounds:
            rows = self.level_rows[start:stop]
            a, b, c = (x[:, self.refs[rows, j]] for j in range(3))
            e1 = _unit(a - b)
            e2 = torch.linalg.cross(_unit(torch.linalg.cross(b - c, e1)), e1)
            new = _spherical(
                a, e1, e2, bonds[:, rows - 1], angles[:, rows - 2], torsions[:, rows - 3]
            )
            x = x.index_copy(1, self.order[rows], new)
        return x

    def _atoms(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and x.shape[1] == 3 * self.n_atoms:
            x = x.reshape(x.shape[0], self.n_atoms, 3)
        if x.dim() != 3 or x.shape[1:] != (self.n_atoms, 3):
            raise ValueError(
                f"Cartesian input must have shape [B, {self.n_atoms}, 3] or "
                f"[B, {3 * self.n_atoms}], got {list(x.shape)}"
            )
        return x

    def _internal(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(bonds ``[B, N−1]`` nm, angles ``[B, N−2]``, torsions ``[B, N−3]``) of ``[B, N, 3]``."""
        xi, (a, b, c) = x[:, self.order], (x[:, self.refs[:, j]] for j in range(3))
        bonds = torch.linalg.vector_norm(xi[:, 1:] - a[:, 1:], dim=-1)
        angles = _angle(xi[:, 2:], a[:, 2:], b[:, 2:])
        return bonds, angles, _dihedral(c[:, 3:], b[:, 3:], a[:, 3:], xi[:, 3:])

    def _frame(self, x: Tensor) -> Tensor:
        """``[B, 6]``: origin (nm), θ₁, φ₁ of the first bond, ψ₂ of the first plane."""
        origin = x[:, self.order[0]]
        d = x[:, self.order[1]] - origin
        theta1 = torch.atan2(torch.linalg.vector_norm(d[:, :2], dim=-1), d[:, 2])
        phi1 = torch.atan2(d[:, 1], d[:, 0])
        _, e2 = _polar_basis(theta1, phi1)
        a, b = x[:, self.refs[2, 0]], x[:, self.refs[2, 1]]
        e1 = _unit(a - b)
        v = x[:, self.order[2]] - a
        psi2 = torch.atan2(_dot(v, torch.linalg.cross(e1, e2)), _dot(v, e2))
        return torch.cat([origin, torch.stack([theta1, phi1, psi2], dim=1)], dim=1)

    def _split(self, q: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if q.dim() != 2 or q.shape[1] != dim:
            raise ValueError(f"internal input must have shape [B, {dim}], got {list(q.shape)}")
        n = self.n_atoms
        return (
            q[:, : n - 1],
            q[:, n - 1 : 2 * n - 3],
            q[:, 2 * n - 3 : 3 * n - 6],
            q[:, 3 * n - 6 :],
        )


def _levels(refs: Tensor, order: Tensor) -> tuple[Tensor, list[tuple[int, int]]]:
    """Rows ≥ 3 sorted by dependency depth, and the [start, stop) of each depth."""
    n = order.numel()
    row_of = torch.empty(n, dtype=torch.int64)
    row_of[order] = torch.arange(n)
    depth = [0] * n
    for k in range(3, n):
        depth[k] = 1 + max(depth[int(row_of[r])] for r in refs[k].tolist())
    rows = sorted(range(3, n), key=lambda k: (depth[k], k))
    bounds, start = [], 0
    for k in range(1, len(rows) + 1):
        if k == len(rows) or depth[rows[k]] != depth[rows[start]]:
            bounds.append((start, k))
            start = k
    return torch.tensor(rows, dtype=torch.int64), bounds


class InternalCoordinates(_ZMatrixMap):
    """Internal ``q: [B, 3N]`` ↔ Cartesian ``x: [B, N, 3]`` (nm), all 3N degrees of freedom.

    ``forward`` is internal → Cartesian (the latent side of this flow is internal), with
    log|det ∂x/∂q| = Σ_{k≥1} 2 log r_k + Σ_{k≥2} log sin θ_k + log sin θ₁ (see the module
    docstring); ``inverse`` is Cartesian → internal with the negative. The layout of q is
    :class:`InternalLayout` with the frame (origin and rotation last).

    Example:
        >>> import boltzgen as bg
        >>> system = bg.load_system("alanine_dipeptide_implicit")
        >>> ic = InternalCoordinates(ZMatrix.from_topology(system.topology))
        >>> q, logdet = ic.inverse(system.initial_positions[None])  # q: [1, 66]
        >>> x, _ = ic(q)  # x: [1, 22, 3], equal to the input
    """

    def __init__(self, zmatrix: ZMatrix):
        super().__init__(zmatrix)
        self.layout = InternalLayout(zmatrix.n_atoms, with_frame=True)
        self.dim = self.layout.dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        bonds, angles, torsions, frame = self._split(z, self.dim)
        x = self._cartesian(bonds, angles, torsions, frame)
        return x, log_volume(bonds, angles) + frame[:, 3].sin().abs().log()

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._atoms(x)
        bonds, angles, torsions = self._internal(x)
        frame = self._frame(x)
        q = torch.cat([bonds, angles, torsions, frame], dim=1)
        return q, -log_volume(bonds, angles) - frame[:, 3].sin().log()


class FixedFrameInternalCoordinates(_ZMatrixMap):
    """Internal ``q′: [B, 3N − 6]`` ↔ Cartesian ``x: [B, N, 3]`` in one stored global frame.

    ``inverse`` drops translation and rotation: q′ (bonds, angles, torsions) is invariant
    under rigid motions of x. ``forward`` places the molecule in the stored frame
    (origin, θ₁, φ₁, ψ₂) — by default atom 0 at the origin, the first bond along +x and
    the first plane the xz plane; or the frame of a ``reference`` structure, which makes
    generated molecules overlay it. The log-det is log J(q′) = Σ_{k≥1} 2 log r_k +
    Σ_{k≥2} log sin θ_k, the full log-det without the Haar density sin θ₁ of the rotation:
    for a rotation- and translation-invariant target, exp(−u(x(q′))) J(q′) is the exact
    (unnormalised) marginal density of q′, the frame integrating to the constant 8π²V
    (module docstring). Use it when the target density has no preferred frame.

    Args:
        zmatrix: the Z-matrix.
        reference: optional ``[N, 3]`` positions (nm) whose global frame to store.
    """

    def __init__(self, zmatrix: ZMatrix, reference: Tensor | None = None):
        super().__init__(zmatrix)
        self.layout = InternalLayout(zmatrix.n_atoms, with_frame=False)
        self.dim = self.layout.dim
        if reference is None:
            frame = torch.tensor([0.0, 0.0, 0.0, math.pi / 2, 0.0, 0.0], dtype=torch.float64)
        else:
            frame = self._frame(self._atoms(reference[None]))[0].detach()
        self.register_buffer("frame", frame)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        bonds, angles, torsions, _ = self._split(z, self.dim)
        frame = self.frame.to(z.dtype).expand(z.shape[0], FRAME_DIM)
        return self._cartesian(bonds, angles, torsions, frame), log_volume(bonds, angles)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        bonds, angles, torsions = self._internal(self._atoms(x))
        return torch.cat([bonds, angles, torsions], dim=1), -log_volume(bonds, angles)


def soft_torsion_mask(zmatrix: ZMatrix, topology: mdtraj.Topology) -> Tensor:
    """``[N−3]`` bool: which torsions c–b–a–i rotate freely (``True``) or are stiff offsets.

    A torsion is a stiff offset when c is bonded to a (c is a sibling of i about a: the
    dihedral then fixes i's position relative to c, ≈ ±120° at an sp³ centre, ≈ 180° at
    an sp² one); it is soft — a proper torsion about the b–a bond such as φ, ψ, ω or a
    methyl rotation — otherwise. Soft torsions get circular splines; stiff ones are
    standardised around their minimum value like bonds and angles (Midgley et al., arXiv
    2208.01893, keep the same split in their alanine-dipeptide flow).
    """
    graph = neighbours(topology)
    c, _, a, _ = zmatrix.torsion_atoms.unbind(dim=1)
    return torch.tensor([int(ci) not in graph[int(ai)] for ci, ai in zip(c, a, strict=True)])


def circular_mask(zmatrix: ZMatrix, topology: mdtraj.Topology) -> Tensor:
    """``[3N − 6]`` bool over a fixed-frame internal vector: the soft (circular) torsions."""
    layout = InternalLayout(zmatrix.n_atoms, with_frame=False)
    mask = torch.zeros(layout.dim, dtype=torch.bool)
    mask[layout.torsion_indices] = soft_torsion_mask(zmatrix, topology)
    return mask


@dataclass(frozen=True)
class InternalWidths:
    """Fixed widths of the standardised internal coordinates (:meth:`StandardizeInternal.around`).

    Defaults are the alanine-dipeptide recipe of Midgley et al. (arXiv 2208.01893).

    Attributes:
        bond_nm: bond-length width (nm); harmonic bonds fluctuate by ~0.003 nm at 300 K.
        angle_rad: bond-angle width (radians).
        torsion_rad: width of the stiff (non-circular) torsions (radians).
    """

    bond_nm: float = 0.005
    angle_rad: float = 0.15
    torsion_rad: float = 0.2

    def __post_init__(self) -> None:
        if not (self.bond_nm > 0 and self.angle_rad > 0 and self.torsion_rad > 0):
            raise ValueError("bond_nm, angle_rad and torsion_rad must be positive")


class StandardizeInternal(Flow):
    """Fixed affine map q = μ + σ ⊙ z on non-circular coordinates; circular ones unchanged.

    Bonds and angles are stiff (σ ≈ 10⁻³ nm, 0.05 rad): standardising them puts all
    coordinates on the unit scale that spline couplings with a fixed bound expect.
    Circular coordinates keep μ = 0, σ = 1 so they stay in (−π, π]. Stiff torsions
    (``wrapped``) are standardised on the circle: q = wrap(μ + σz), z = wrap(q − μ)/σ,
    exact while |σz| < π. log|det ∂q/∂z| = Σ log σ.

    Args:
        mean: ``[D]`` μ (entries at ``torsion_mask`` are ignored).
        std: ``[D]`` σ > 0 (entries at ``torsion_mask`` are ignored).
        torsion_mask: ``[D]`` bool, the circular coordinates (left unchanged).
        wrapped: ``[D]`` bool, periodic coordinates that are standardised on the circle.
    """

    def __init__(
        self, mean: Tensor, std: Tensor, torsion_mask: Tensor, wrapped: Tensor | None = None
    ):
        super().__init__()
        mask = torch.as_tensor(torsion_mask, dtype=torch.bool)
        if mean.shape != mask.shape or std.shape != mask.shape or mask.dim() != 1:
            raise ValueError(
                f"mean, std and torsion_mask must all be [D], got {list(mean.shape)}, "
                f"{list(std.shape)}, {list(mask.shape)}"
            )
        std = torch.where(mask, torch.ones_like(std), std)
        if not bool((std > 0).all()):
            raise ValueError("std must be positive on every non-periodic coordinate")
        wrap_mask = torch.zeros_like(mask) if wrapped is None else torch.as_tensor(wrapped) & ~mask
        self.register_buffer("mean", torch.where(mask, torch.zeros_like(mean), mean))
        self.register_buffer("std", std)
        self.register_buffer("wrapped", wrap_mask.to(torch.bool))

    @classmethod
    def from_data(
        cls, q: Tensor, torsion_mask: Tensor, min_std: float = 1e-4
    ) -> StandardizeInternal:
        """Mean and standard deviation (floored at ``min_std``) of data ``q: [M, D]``, M ≥ 2.

        With one frame there is no spread to measure: use :meth:`around` instead.
        """
        if q.dim() != 2 or q.shape[0] < 2:
            raise ValueError(
                f"from_data needs at least two frames q: [M ≥ 2, D], got {list(q.shape)}; "
                "to standardise around one structure use StandardizeInternal.around"
            )
        return cls(q.mean(dim=0), q.std(dim=0).clamp(min=min_std), torsion_mask)

    @classmethod
    def around(
        cls,
        q0: Tensor,
        layout: InternalLayout,
        widths: InternalWidths | None = None,
        circular: Tensor | None = None,
    ) -> StandardizeInternal:
        """Centred on one structure ``q0: [D]`` (e.g. an energy minimum), fixed widths.

        Without samples, bonds and angles are scaled by fixed physical widths
        (:class:`InternalWidths`) instead of a measured spread, as in Midgley et al.,
        "Flow Annealed Importance Sampling Bootstrap" (arXiv 2208.01893). ``circular``
        (``[D]`` bool, default every torsion) marks the torsions left uniform on the
        circle; the other torsions are standardised on the circle with ``torsion_rad``.
        """
        w = widths or InternalWidths()
        if q0.shape != (layout.dim,):
            raise ValueError(f"q0 must be [{layout.dim}], got {list(q0.shape)}")
        circ = layout.torsion_mask if circular is None else torch.as_tensor(circular)
        std = torch.ones_like(q0)
        std[layout.bond_mask] = w.bond_nm
        std[layout.angle_mask] = w.angle_rad
        std[layout.torsion_mask & ~circ] = w.torsion_rad
        return cls(q0, std, circ, layout.torsion_mask & ~circ)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        q = self.mean + self.std * z
        q = torch.where(self.wrapped, _wrap(q), q)
        return q, self.std.log().sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x - self.mean
        d = torch.where(self.wrapped, _wrap(d), d)
        return d / self.std, (-self.std.log().sum()).expand(x.shape[0])


def _wrap(angle: Tensor) -> Tensor:
    """Angles mapped to (−π, π]."""
    return angle - 2 * math.pi * torch.ceil((angle - math.pi) / (2 * math.pi))


# --------------------------------------------------------------------------- chirality


@dataclass(frozen=True)
class ChiralCentres:
    """Stereocentres of a peptide and the handedness to keep.

    The signed volume v = det[x_N − x_CA, x_C − x_CA, x_CB − x_CA] is positive for an
    L-amino acid (checked on standard L-alanine structures) and negative for its mirror
    image D. Every residue with N, CA, C and CB (all but glycine) is a centre.

    Attributes:
        atoms: ``[M, 4]`` atom indices (CA, N, C, CB) per centre.
    """

    atoms: Tensor

    @classmethod
    def from_topology(cls, topology: mdtraj.Topology) -> ChiralCentres:
        rows = []
        for residue in topology.residues:
            names = {a.name: a.index for a in residue.atoms}
            if all(k in names for k in ("CA", "N", "C", "CB")):
                rows.append([names["CA"], names["N"], names["C"], names["CB"]])
        return cls(torch.tensor(rows, dtype=torch.int64).reshape(-1, 4))

    def volumes(self, x: Tensor) -> Tensor:
        """``[B, M]`` signed volumes of the centres in ``x: [B, N, 3]`` (nm³)."""
        ca, n, c, cb = (x[:, self.atoms[:, k]] for k in range(4))
        return torch.linalg.det(torch.stack([n - ca, c - ca, cb - ca], dim=-2))

    def is_l(self, x: Tensor) -> Tensor:
        """``[B]`` bool: every centre of ``x: [B, N, 3]`` has L handedness."""
        return (self.volumes(x) > 0).all(dim=1)
