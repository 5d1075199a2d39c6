"""A Z-matrix chosen from the bond graph, and where each coordinate sits in the internal vector.

Row k of a Z-matrix places atom ``order[k]`` by a bond to a placed atom a, an angle with a
placed neighbour b of a and a torsion with a third placed atom c; the NeRF map that turns
these coordinates into Cartesians, and its log-determinant, are in
:mod:`boltzgen.flows.internal`. Heavy atoms are placed first, breadth-first from the centre
of the heavy-atom graph, so that bonds and angles run along real bonds and the soft
backbone torsions are coordinates (Noé, Olsson, Köhler, Wu, "Boltzmann generators",
Science 2019, arXiv 1812.01729).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import mdtraj
import torch
from torch import Tensor

FRAME_DIM = 6
"""Global degrees of freedom: origin (3, nm) and rotation (θ₁, φ₁, ψ₂)."""


# --------------------------------------------------------------------------- Z-matrix


def _is_hydrogen(atom: mdtraj.core.topology.Atom) -> bool:
    return atom.element is not None and atom.element.number == 1


def neighbours(topology: mdtraj.Topology) -> list[list[int]]:
    """The bond graph of ``topology``: for each atom, its bonded atoms' indices, sorted."""
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
        graph = neighbours(topology)
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
