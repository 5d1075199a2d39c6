"""TorchForceField: the reduced energy of an OpenMM System, batched in torch.

``TorchForceField.from_openmm(system, temperature)`` compiles the System's forces once
(:mod:`~boltzgen.energies.forcefield.compile`) into tensors of parameters and index
lists, then evaluates configurations ``x: [B, N, 3]`` (nm) on CPU or CUDA, in float32
or float64, with no Python loop over atoms or configurations and no host-device
synchronisation in the hot path:

* ``energy(x)``: u = U/kT ``[B]``, a torch expression that autograd differentiates
  (to any order);
* ``energy_and_force(x)``: u and −∇u = −∇U/kT ``[B, N, 3]`` (1/nm) in one pass with
  hand-written gradients.

kT = R·T in kJ/mol at the explicit temperature (:mod:`boltzgen.energies.units`), as in
:class:`~boltzgen.energies.openmm.OpenMMEnergy`; both follow the same Energy contract
(shape checks, non-finite rows → u = +inf and zero force, evaluation counting).

``chunk_size`` evaluates a large batch ``chunk_size`` configurations at a time, so
that the peak memory of ``energy_and_force`` stays bounded (the pair tensors are
``[P, 3, chunk]``). ``energy`` under autograd keeps every chunk's graph alive until
backward. With ``chunk_size=None`` a CPU force field picks chunks whose ``[P, chunk]``
tensors fill about 512 KiB, a core's L2 cache (1 MiB when compiled): 256
configurations of a 22-atom peptide in float64, 32 of a 62-atom one; that is several
times faster than one big chunk. A GPU force field evaluates the whole batch at once.

``compile=True`` fuses each term's arithmetic, with its gathers and scatters, into
a few kernels (:mod:`~boltzgen.energies.forcefield.kernels`): 2-10× faster on CPU and
GPU after a first call that compiles them (about 10 s per system and dtype; a C++
compiler on CPU, Triton on GPU). The default, ``compile=None``, compiles where a
compiler exists, for calls of at least :data:`COMPILE_MIN_BATCH` configurations (small
calls, which compiling would not repay, run eagerly); without a compiler it runs
eagerly with a one-line note. Positions that require grad always take the eager
kernels, so that ``energy`` stays differentiable to any order. Custom forces evaluated
from their expressions (:mod:`~boltzgen.energies.forcefield.custom`) run eagerly.

``accumulate=torch.float64`` with ``dtype=torch.float32`` (for sampling): positions,
parameters and forces in float32, the total energy of each configuration summed over
the terms in float64 and returned in float64 (each term's own sum stays float32).

Constraints in the System are ignored (the energy of any configuration is defined);
periodic systems use the System's default box for every configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import openmm
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.forcefield.compile import compile_terms
from boltzgen.energies.forcefield.geometry import Box, Frame, atoms_first, batch_first
from boltzgen.energies.forcefield.kernels import EAGER, Kernels, compiler_available, note_once
from boltzgen.energies.forcefield.terms import Term, move
from boltzgen.energies.units import kt_kj_per_mol

COMPILE_MIN_BATCH = 256
"""With ``compile=None``, calls with at least this many configurations run compiled."""

CACHE_BYTES = {False: 512 * 1024, True: 1024 * 1024}
"""Target size of one ``[P, chunk]`` tensor on CPU, eager and compiled (which holds
fewer such tensors at once)."""


class TorchForceField(Energy):
    """Reduced energy u = U/kT of compiled force-field terms, batched in torch.

    Args:
        terms: compiled terms (float64 on CPU, as :func:`compile_terms` gives them).
        n_particles: N; configurations are ``[B, N, 3]`` in nm.
        temperature: T in kelvin; kT = R·T.
        box: the periodic box of periodic terms, or None.
        device: where to evaluate ("cpu", "cuda", ...).
        dtype: torch.float64 or torch.float32.
        chunk_size: evaluate at most this many configurations at once (None: a
            cache-sized chunk on CPU, the whole batch on GPU).
        compile: fuse the elementwise kernels with ``torch.compile`` where autograd is
            off (:mod:`~boltzgen.energies.forcefield.kernels`): each kernel compiles on
            first use (seconds each), then runs several times faster. None (default):
            where a compiler exists, for calls of ≥ ``COMPILE_MIN_BATCH`` configurations.
        accumulate: None, or torch.float64 to sum a float32 force field's terms in
            float64 (energies returned in float64).

    Attributes:
        kT: R·T in kJ/mol.

    Results are on the device of ``x``, in ``dtype``.

    Example:
        >>> system = boltzgen.load_system("alanine_dipeptide_implicit")
        >>> ff = TorchForceField.from_openmm(system.openmm_system, temperature=300.0)
        >>> u, f = ff.energy_and_force(system.initial_positions[None])  # [1], [1, 22, 3]
    """

    def __init__(
        self,
        terms: list[Term],
        n_particles: int,
        temperature: float,
        box: Box | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        chunk_size: int | None = None,
        compile: bool | None = None,
        accumulate: torch.dtype | None = None,
    ):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        super().__init__((n_particles, 3), temperature)
        self.kT = kt_kj_per_mol(temperature)
        self.device, self.dtype, self.chunk_size, self.box = (
            torch.device(device),
            dtype,
            chunk_size,
            box,
        )
        if accumulate not in (None, torch.float64):
            raise ValueError(f"accumulate must be None or torch.float64, got {accumulate}")
        self._source = list(terms)
        self.terms = move(self._source, self.device, dtype)
        self.compile, self.accumulate = compile, accumulate
        available = compile is not None or compiler_available(self.device)
        if not available:
            note_once("TorchForceField: no compiler for torch.compile found; running eagerly")
        self.kernels = Kernels(bool(compile) if compile is not None else available)

    @classmethod
    def from_openmm(
        cls,
        system: openmm.System,
        temperature: float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        chunk_size: int | None = None,
        compile: bool | None = None,
        accumulate: torch.dtype | None = None,
    ) -> TorchForceField:
        """Compile ``system``'s forces (see :mod:`~boltzgen.energies.forcefield.compile`).

        Raises:
            UnsupportedForceError: naming every force that cannot be compiled.
        """
        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        terms, box = compile_terms(system)
        return cls(
            terms,
            system.getNumParticles(),
            temperature,
            box,
            device,
            dtype,
            chunk_size,
            compile,
            accumulate,
        )

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TorchForceField:
        """The same force field on another device or dtype (a new counter)."""
        return TorchForceField(
            self._source,
            self.event_shape[0],
            self.temperature,
            self.box,
            self.device if device is None else device,
            self.dtype if dtype is None else dtype,
            self.chunk_size,
            self.compile,
            self.accumulate,
        )

    @property
    def effective_chunk_size(self) -> int | None:
        """Configurations evaluated at once: ``chunk_size``, or on CPU the cache-sized
        default (see the module docstring), or None (the whole batch)."""
        if self.chunk_size is not None or self.device.type != "cpu":
            return self.chunk_size
        n = self.event_shape[0]
        pair_bytes = max(n * (n - 1) // 2, 1) * torch.finfo(self.dtype).bits // 8
        target = CACHE_BYTES[self.kernels.compile]
        return 2 ** min(max(int(math.log2(target / pair_bytes)), 3), 12)

    def _chunks(self, x: Tensor) -> Iterator[Tensor]:
        size = self.effective_chunk_size or max(x.shape[0], 1)
        yield from x.split(size) if x.shape[0] else [x]

    def _kernels(self, batch: int) -> Kernels:
        """Compiled kernels for a call of ``batch`` configurations, or the eager ones."""
        if self.compile is None and batch < COMPILE_MIN_BATCH:
            return EAGER
        return self.kernels

    def _evaluate(
        self, x: Tensor, with_gradient: bool, kernels: Kernels
    ) -> tuple[Tensor, Tensor | None]:
        """U ``[b]`` (kJ/mol) and, if asked, dU/dx ``[b, N, 3]`` of one chunk."""
        X = atoms_first(x.to(self.device, self.dtype))
        differentiable = torch.is_grad_enabled() and x.requires_grad
        frame = Frame(X, self.box, with_gradient, EAGER if differentiable else kernels)
        total = self.accumulate or self.dtype
        potential = x.new_zeros(x.shape[0], dtype=total, device=self.device)
        for term in self.terms:
            potential = potential + term.energy(frame).to(total)
        gradient = batch_first(frame.gradient_kj()) if with_gradient else None
        return potential, gradient

    def potential_energy(self, x: Tensor) -> Tensor:
        """U ``[B]`` in kJ/mol of ``x: [B, N, 3]`` (nm); differentiable by autograd."""
        kernels = self._kernels(x.shape[0])
        parts = [self._evaluate(chunk, False, kernels)[0] for chunk in self._chunks(x)]
        return torch.cat(parts).to(x.device)

    def potential_energy_and_forces(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """U ``[B]`` (kJ/mol) and forces −∇U ``[B, N, 3]`` (kJ/mol/nm), detached."""
        energies, forces = [], []
        kernels = self._kernels(x.shape[0])
        with torch.no_grad():
            for chunk in self._chunks(x):
                potential, gradient = self._evaluate(chunk, True, kernels)
                energies.append(potential)
                forces.append(-gradient)
        return torch.cat(energies).to(x.device), torch.cat(forces).to(x.device)

    def _energy(self, x: Tensor) -> Tensor:
        return self.potential_energy(x) / self.kT

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        potential, forces = self.potential_energy_and_forces(x)
        return potential / self.kT, forces / self.kT
