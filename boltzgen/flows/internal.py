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
from collections import deque
from dataclasses import dataclass

import mdtraj
import torch
from torch import Tensor

from boltzgen.flows.base import Flow

FRAME_DIM = 6
"""Global degrees of freedom: origin (3, nm) and rotation (θ₁, φ₁, ψ₂)."""


# --------------------------------------------------------------------------- Z-matrix


def _is_hydrogen(atom: mdtraj.core.topology.Atom) -> bool:
    return atom.element is not None and atom.element.number == 1


def _neighbours(topology: mdtraj.Topology) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(topology.n_atoms)]
    for a, b in topology.bonds:
        out[a.index].append(b.index)
        out[b.index].append(a.index)
    return [sorted(set(n)) for n in out]


def _bfs(start: int, graph: list[list[int]], nodes: set[int]) -> dict[int, int]:
    """Graph distance from ``start`` to every node of ``nodes`` reachable inside ``nodes``."""
    dist, queue = {start: 0}, deque([start])
    while queue:
        i = queue.popleft()
        for j in graph[i]:
            if j in nodes and j not in dist:
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist


def _root(core: list[int], graph: list[list[int]], names: list[str]) -> int:
    """The graph centre of the core atoms (least eccentricity), preferring CA, then index."""
    nodes = set(core)
    eccentricity = {}
    for i in core:
        dist = _bfs(i, graph, nodes)
        if len(dist) != len(nodes):
            raise ValueError(
                f"the heavy atoms are not connected by bonds (atom {i} reaches {len(dist)} of "
                f"{len(nodes)}): internal coordinates need one bonded molecule"
            )
        eccentricity[i] = max(dist.values())
    return min(core, key=lambda i: (eccentricity[i], names[i] != "CA", i))


def _placement_order(graph: list[list[int]], hydrogen: list[bool], names: list[str]) -> list[int]:
    """Heavy atoms breadth-first from the centre (branch ends last), then hydrogens."""
    core = [i for i in range(len(graph)) if not hydrogen[i]] or list(range(len(graph)))
    nodes = set(core)
    degree = {i: sum(j in nodes for j in graph[i]) for i in core}
    root = _root(core, graph, names)
    order, seen, queue = [root], {root}, deque([root])
    while queue:
        i = queue.popleft()
        for j in sorted((j for j in graph[i] if j in nodes), key=lambda j: (degree[j] <= 1, j)):
            if j not in seen:
                seen.add(j)
                order.append(j)
                queue.append(j)
    rank = {a: k for k, a in enumerate(order)}
    rest = [i for i in range(len(graph)) if i not in nodes]
    for i in rest:
        if not any(j in rank for j in graph[i]):
            raise ValueError(
                f"atom {i} ({names[i]}) is bonded to no heavy atom: internal coordinates "
                "need a topology with bonds (e.g. mdtraj.load of a PDB with standard residues)"
            )
    parent = {i: min((j for j in graph[i] if j in rank), key=rank.__getitem__) for i in rest}
    return order + sorted(rest, key=lambda i: (rank[parent[i]], i))


def _references(order: list[int], graph: list[list[int]], hydrogen: list[bool]) -> list[list[int]]:
    """(a, b, c) for every row: a bonded to the atom, b bonded to a, c placed earlier.

    Among candidates heavy atoms come before hydrogens, then the earliest placed; in a
    breadth-first order that makes a the parent and b the grandparent. For c, an already
    placed sibling (another neighbour of a) comes first: the torsion c–b–a–i is then a
    stiff offset (≈ ±120° at an sp³ centre, ≈ 180° at an sp² one), so each rotatable bond
    carries exactly one soft torsion, that of the first atom placed across it, which
    has no sibling and takes a neighbour of b (a proper torsion such as φ, ψ, ω).
    """
    rank = {a: k for k, a in enumerate(order)}

    def first(candidates: list[int], k: int, exclude: tuple[int, ...]) -> int | None:
        placed = [j for j in candidates if rank[j] < k and j not in exclude]
        return min(placed, key=lambda j: (hydrogen[j], rank[j])) if placed else None

    refs = []
    for k, i in enumerate(order):
        if k == 0:
            refs.append([-1, -1, -1])
            continue
        a = first(graph[i], k, ())
        b = first(graph[a], k, (i,)) if k >= 2 else -1
        if k <= 2:
            refs.append([a, b, -1])
            continue
        c = first(graph[a], k, (i, b))
        c = first(graph[b], k, (i, a)) if c is None else c
        c = first(order[:k], k, (i, a, b)) if c is None else c
        refs.append([a, b, c])
    return refs


@dataclass(frozen=True, eq=False)
class ZMatrix:
    """A placement order with reference atoms: row k places atom ``order[k]``.

    Attributes:
        order: ``[N]`` int64, a permutation of the atoms (row k places atom ``order[k]``).
        refs: ``[N, 3]`` int64 atom indices (a, b, c): bond i–a, angle i–a–b, torsion
            c–b–a–i. Row 0 has none, row 1 only a, row 2 only (a, b); unused entries −1.

    Example:
        >>> import boltzgen as bg
        >>> zm = ZMatrix.from_topology(bg.load_system("alanine_dipeptide_implicit").topology)
        >>> zm.n_atoms, tuple(zm.torsion_atoms.shape)
        (22, (19, 4))
    """

    order: Tensor
    refs: Tensor

    def __post_init__(self) -> None:
        n = self.order.numel()
        if n < 3 or not torch.equal(self.order.sort().values, torch.arange(n)):
            raise ValueError(f"order must be a permutation of ≥ 3 atoms, got {self.order}")
        if self.refs.shape != (n, 3):
            raise ValueError(f"refs must have shape [{n}, 3], got {list(self.refs.shape)}")
        rank = torch.empty(n, dtype=torch.int64)
        rank[self.order] = torch.arange(n)
        for k in range(1, n):
            used = self.refs[k, : min(k, 3)].tolist()
            ok = all(0 <= r < n and rank[r] < k for r in used) and len(set(used)) == len(used)
            if not ok or any(r != -1 for r in self.refs[k, min(k, 3) :].tolist()):
                raise ValueError(f"row {k}: references {used} must be distinct placed atoms")

    @property
    def n_atoms(self) -> int:
        return self.order.numel()

    @classmethod
    def from_topology(cls, topology: mdtraj.Topology) -> ZMatrix:
        """Choose a Z-matrix from the bond graph of ``topology``.

        Heavy atoms come first, breadth-first from the centre of the heavy-atom graph
        (least eccentricity; a backbone CA wins ties), so each atom's bond and angle run
        along real bonds; hydrogens come last, each bonded to its heavy atom. The soft
        torsions are proper ones along the chain (for peptides the backbone φ, ψ, ω are
        coordinates), the others stiff offsets against a sibling (see ``_references``).

        Raises:
            ValueError: fewer than 3 atoms, or atoms not joined into one molecule by bonds.
        """
        graph = _neighbours(topology)
        hydrogen = [_is_hydrogen(a) for a in topology.atoms]
        names = [a.name for a in topology.atoms]
        if len(graph) < 3:
            raise ValueError(f"internal coordinates need at least 3 atoms, got {len(graph)}")
        order = _placement_order(graph, hydrogen, names)
        refs = _references(order, graph, hydrogen)
        return cls(torch.tensor(order), torch.tensor(refs))

    @property
    def bond_atoms(self) -> Tensor:
        """``[N−1, 2]`` (i, a) of the bond coordinates, in layout order."""
        return torch.stack([self.order[1:], self.refs[1:, 0]], dim=1)

    @property
    def angle_atoms(self) -> Tensor:
        """``[N−2, 3]`` (i, a, b) of the angle coordinates ∠(i, a, b)."""
        return torch.stack([self.order[2:], self.refs[2:, 0], self.refs[2:, 1]], dim=1)

    @property
    def torsion_atoms(self) -> Tensor:
        """``[N−3, 4]`` (c, b, a, i) of the torsion coordinates, ready for dihedral codes."""
        r = self.refs[3:]
        return torch.stack([r[:, 2], r[:, 1], r[:, 0], self.order[3:]], dim=1)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class InternalLayout:
    """Where each kind of coordinate sits in the internal vector ``[B, D]``.

    The vector is ``[bonds (N−1) | angles (N−2) | torsions (N−3) | origin (3) |
    θ₁, φ₁, ψ₂]``, the last six only when the global frame is kept (D = 3N; else
    D = 3N − 6). The masks sort coordinates by domain: ``torsion_mask`` holds every
    periodic coordinate in (−π, π] (torsions, and φ₁, ψ₂ when present), ``angle_mask``
    the ones in (0, π) (angles, and θ₁), ``bond_mask`` the lengths > 0 (nm); the
    origin (nm) is unbounded.
    """

    n_atoms: int
    with_frame: bool

    @property
    def dim(self) -> int:
        return 3 * self.n_atoms - (0 if self.with_frame else FRAME_DIM)

    def _range(self, start: int, stop: int) -> Tensor:
        return torch.arange(start, stop) if self.with_frame else torch.arange(0)

    @property
    def bond_indices(self) -> Tensor:
        return torch.arange(0, self.n_atoms - 1)

    @property
    def angle_indices(self) -> Tensor:
        return torch.arange(self.n_atoms - 1, 2 * self.n_atoms - 3)

    @property
    def torsion_indices(self) -> Tensor:
        return torch.arange(2 * self.n_atoms - 3, 3 * self.n_atoms - 6)

    @property
    def origin_indices(self) -> Tensor:
        return self._range(3 * self.n_atoms - 6, 3 * self.n_atoms - 3)

    @property
    def rotation_indices(self) -> Tensor:
        """(θ₁, φ₁, ψ₂): polar and azimuthal angle of the first bond, first-plane rotation."""
        return self._range(3 * self.n_atoms - 3, 3 * self.n_atoms)

    def _mask(self, *indices: Tensor) -> Tensor:
        mask = torch.zeros(self.dim, dtype=torch.bool)
        for index in indices:
            mask[index] = True
        return mask

    @property
    def torsion_mask(self) -> Tensor:
        """``[D]`` bool: periodic coordinates in (−π, π]."""
        return self._mask(self.torsion_indices, self.rotation_indices[1:])

    @property
    def angle_mask(self) -> Tensor:
        """``[D]`` bool: coordinates in (0, π)."""
        return self._mask(self.angle_indices, self.rotation_indices[:1])

    @property
    def bond_mask(self) -> Tensor:
        """``[D]`` bool: bond lengths (nm)."""
        return self._mask(self.bond_indices)


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
    graph = _neighbours(topology)
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
