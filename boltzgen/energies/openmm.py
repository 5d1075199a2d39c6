"""An exact bridge from an ``openmm.System`` to the reduced :class:`Energy` contract.

:class:`OpenMMEnergy` evaluates the potential energy U(x) (kJ/mol) and forces
−∇U (kJ/mol/nm) of configurations ``x: [B, N, 3]`` (nm) with OpenMM and returns the
reduced energy u = U / kT and reduced force −∇u = −∇U / kT (1/nm) in float64, where
kT = R·T is taken from ``openmm.unit.MOLAR_GAS_CONSTANT_R`` at an explicit
temperature T in kelvin — never from an integrator.

A batch is evaluated either in this process by one ``openmm.Context``
(``n_workers=0``) or by a pool of worker processes started with the ``spawn``
method. Each worker deserialises the System (``openmm.XmlSerializer``), owns one
Context and evaluates one contiguous chunk of the batch; positions, energies and
forces cross the pipes as numpy arrays. A worker that dies is replaced and its chunk
retried once. Workers are stopped by :meth:`OpenMMEnergy.close`, when the energy is
garbage-collected, and at interpreter exit. A worker runs the file of
:mod:`boltzgen.energies.openmm_worker`, which needs only NumPy and OpenMM, so it starts
without importing torch or the rest of boltzgen.

A configuration on which OpenMM raises, or whose energy or forces are not finite,
gets u = +inf and zero force; it never crashes the batch.

Limits: periodic systems use the System's default box for every configuration
(per-configuration boxes are not supported yet); constraints are ignored (u is the
potential energy of the given positions); Systems with virtual sites are refused
(their forces would have to be passed on to the parent atoms).
"""

from __future__ import annotations

import atexit
import itertools
import math
import runpy
import signal
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import Any

import numpy as np
import openmm
import torch
from openmm import unit
from torch import Tensor

from boltzgen.energies import openmm_worker
from boltzgen.energies.base import Energy
from boltzgen.energies.openmm_worker import KJ_PER_MOL, RUN_NAME, ContextEvaluator, Reply

_STARTUP_TIMEOUT_S = 300.0
_JOIN_TIMEOUT_S = 5.0


def thermal_energy(temperature: float) -> float:
    """kT = R·T in kJ/mol for ``temperature`` in kelvin (R from ``openmm.unit``)."""
    return (unit.MOLAR_GAS_CONSTANT_R * temperature * unit.kelvin).value_in_unit(KJ_PER_MOL)


@dataclass
class _Worker:
    process: Any  # a multiprocessing SpawnProcess
    conn: connection.Connection


def _describe_exit(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by signal {-code} ({signal.Signals(-code).name})"
    return f"exit code {code}"


class _WorkerPool:
    """Worker processes, one Context each, that evaluate contiguous chunks of a batch.

    Args:
        system_xml: the System serialised by ``openmm.XmlSerializer``.
        platform: OpenMM platform name of every worker's Context.
        threads: CPU-platform threads per worker.
        n_workers: number of worker processes (≥ 1).
        target: the worker body, called as ``target(conn, system_xml, platform, threads)``;
            by default (None) :func:`~boltzgen.energies.openmm_worker.worker_main`, run
            from its file so that the worker does not import boltzgen and torch.
    """

    def __init__(
        self,
        system_xml: str,
        platform: str,
        threads: int,
        n_workers: int,
        target: Callable[..., None] | None = None,
    ):
        self._args = (system_xml, platform, threads)
        self._target = target
        self._mp = get_context("spawn")
        self._closed = False
        self._workers = [self._spawn(slot) for slot in range(n_workers)]
        for slot in range(n_workers):
            self._await_ready(slot)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def _spawn(self, slot: int) -> _Worker:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        worker_args = (child_conn, *self._args)
        if self._target is None:
            target, args = runpy.run_path, (openmm_worker.__file__,)
            kwargs = {"init_globals": {"WORKER_ARGS": worker_args}, "run_name": RUN_NAME}
        else:
            target, args, kwargs = self._target, worker_args, {}
        process = self._mp.Process(
            target=target,
            args=args,
            kwargs=kwargs,
            name=f"boltzgen-openmm-worker-{slot}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # the child holds its own copy; ours would hide its death
        return _Worker(process, parent_conn)

    def _await_ready(self, slot: int) -> None:
        worker = self._workers[slot]
        reply = self._receive(worker, timeout=_STARTUP_TIMEOUT_S)
        if reply is not None and reply[0] == "ready":
            return
        self.close()
        if reply is None:
            raise RuntimeError(
                f"OpenMM worker process {worker.process.pid} did not start within "
                f"{_STARTUP_TIMEOUT_S:.0f} s ({_describe_exit(worker.process)}; its traceback, "
                "if any, is on stderr). "
                "Workers are started with 'spawn': a script that creates an OpenMMEnergy with "
                "n_workers >= 1 must do so under `if __name__ == '__main__':`; or use "
                "n_workers=0 to evaluate in this process"
            )
        raise RuntimeError(f"OpenMM worker process failed to build its Context:\n{reply[1]}")

    def _receive(self, worker: _Worker, timeout: float | None = None) -> Reply | None:
        """The worker's next reply, or None if it died first."""
        ready = connection.wait([worker.conn, worker.process.sentinel], timeout)
        if worker.conn not in ready:
            return None
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            return None

    def _send(self, worker: _Worker, request: tuple) -> bool:
        try:
            worker.conn.send(request)
        except OSError:
            return False
        return True

    def _exchange(self, slot: int, request: tuple) -> Reply | None:
        worker = self._workers[slot]
        return self._receive(worker) if self._send(worker, request) else None

    def _replace(self, slot: int) -> None:
        old = self._workers[slot]
        old.process.join(_JOIN_TIMEOUT_S)
        old.conn.close()
        self._workers[slot] = self._spawn(slot)
        self._await_ready(slot)

    def evaluate(
        self, positions: np.ndarray, with_forces: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Energies ``[B]`` (kJ/mol) and, if ``with_forces``, forces ``[B, N, 3]``
        (kJ/mol/nm) of ``positions: [B, N, 3]`` (nm).

        The batch is split into one contiguous chunk per worker. Every reply is
        collected before an error is raised, so that the pipes stay in step.
        """
        if self._closed:
            raise RuntimeError("the OpenMM worker pool is closed; create a new OpenMMEnergy")
        bounds = np.linspace(0, positions.shape[0], len(self._workers) + 1).astype(int)
        chunks = [
            (s, a, b) for s, (a, b) in enumerate(itertools.pairwise(bounds.tolist())) if b > a
        ]
        sent = {
            s: self._send(self._workers[s], (positions[a:b], with_forces)) for s, a, b in chunks
        }
        replies = []
        for slot, a, b in chunks:
            reply = self._receive(self._workers[slot]) if sent[slot] else None
            if reply is None:
                reply = self._retry(slot, (positions[a:b], with_forces))
            replies.append(reply)
        errors = [
            f"rows {a}..{b - 1}: {r[1]}"
            for (_, a, b), r in zip(chunks, replies, strict=True)
            if r[0] != "ok"
        ]
        if errors:
            raise RuntimeError("\n".join(errors))
        energies = np.concatenate([r[1] for r in replies])
        return energies, np.concatenate([r[2] for r in replies]) if with_forces else None

    def _retry(self, slot: int, request: tuple) -> Reply:
        """Replace the dead worker in ``slot`` and send it its chunk once more."""
        dead = self._workers[slot].process
        self._replace(slot)
        reply = self._exchange(slot, request)
        if reply is not None:
            return reply
        again = self._workers[slot].process
        again.join(_JOIN_TIMEOUT_S)
        return "error", (
            f"OpenMM worker process {dead.pid} died ({_describe_exit(dead)}) while evaluating "
            f"these rows, and its replacement {again.pid} died too ({_describe_exit(again)}). "
            "These configurations may crash OpenMM, or the machine may be out of memory; "
            "a later call starts a new worker."
        )

    def close(self) -> None:
        """Stop and join every worker (terminate, then kill, those that do not stop)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            self._send(worker, None)
        for worker in self._workers:
            worker.process.join(_JOIN_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(_JOIN_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


class _ReducedEnergy(torch.autograd.Function):
    """u(x) from OpenMM, with ∂u/∂x = −force saved from the same evaluation."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, energy: OpenMMEnergy) -> Tensor:
        u, force = energy._evaluate(x, with_forces=True)
        ctx.save_for_backward(force)
        ctx.input_dtype = x.dtype
        return u

    @staticmethod
    def backward(ctx: Any, grad_u: Tensor) -> tuple[Tensor, None]:
        (force,) = ctx.saved_tensors
        grad_x = -grad_u.to(force.dtype)[:, None, None] * force
        return grad_x.to(ctx.input_dtype), None


class OpenMMEnergy(Energy):
    """Reduced energy u = U/kT of an ``openmm.System`` at an explicit temperature.

    ``x: [B, N, 3]`` in nm → ``u: [B]`` (float64); forces −∇u ``[B, N, 3]`` in 1/nm
    come straight from OpenMM. ``energy(x)`` is differentiable: for ``x`` that
    requires grad, one OpenMM call gives both u and the forces used by backward.

    Args:
        openmm_system: the System; it is copied (serialised), so later changes to
            it are not seen.
        temperature: T in kelvin; kT = R·T with R = ``openmm.unit.MOLAR_GAS_CONSTANT_R``.
        n_workers: 0 evaluates in this process with one Context; n ≥ 1 starts n
            worker processes ("spawn"), each with its own Context and one contiguous
            chunk of every batch.
        platform: OpenMM platform name of every Context, e.g. ``"CPU"`` or ``"Reference"``.
        threads_per_worker: the CPU platform's ``Threads`` property for each Context
            (the in-process one too).

    Attributes:
        kT: R·T in kJ/mol, the factor between OpenMM's energies and ``u``.
        worker_pids: process ids of the workers (empty in-process).

    Periodic systems use ``openmm_system.getDefaultPeriodicBoxVectors()`` for every
    configuration; per-configuration boxes are not supported yet.

    Worker processes are stopped by :meth:`close` (or leaving a ``with`` block), when
    the energy is garbage-collected, or at interpreter exit.

    Example:
        >>> with OpenMMEnergy(system, temperature=300.0, n_workers=2) as target:
        ...     u = target.energy(x)          # [B]
        ...     f = target.force(x)           # [B, N, 3]
    """

    def __init__(
        self,
        openmm_system: openmm.System,
        temperature: float = 300.0,
        n_workers: int = 2,
        platform: str = "CPU",
        threads_per_worker: int = 1,
    ):
        _check_arguments(openmm_system, temperature, n_workers, platform, threads_per_worker)
        super().__init__((openmm_system.getNumParticles(), 3), temperature)
        self.kT = thermal_energy(self.temperature)
        self.n_workers = int(n_workers)
        self.platform = platform
        self._evaluator: ContextEvaluator | None = None
        self._pool: _WorkerPool | None = None
        self._closed = False
        if self.n_workers == 0:
            self._evaluator = ContextEvaluator(openmm_system, platform, threads_per_worker)
            return
        xml = openmm.XmlSerializer.serialize(openmm_system)
        self._pool = _WorkerPool(xml, platform, threads_per_worker, self.n_workers)
        self._finalizer = weakref.finalize(self, self._pool.close)
        atexit.register(self._finalizer)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (empty in-process or after :meth:`close`)."""
        return [] if self._pool is None or self._closed else self._pool.pids

    def _evaluate(self, x: Tensor, with_forces: bool) -> tuple[Tensor, Tensor | None]:
        """Reduced energies ``[B]`` and, if ``with_forces``, reduced forces ``[B, N, 3]``
        (float64, on ``x.device``)."""
        if self._closed:
            raise RuntimeError("this OpenMMEnergy is closed; create a new one to evaluate")
        positions = x.detach().to("cpu", torch.float64).numpy()
        if positions.shape[0] == 0:
            energies, forces = np.zeros(0), np.zeros_like(positions)
        elif self._pool is not None:
            energies, forces = self._pool.evaluate(positions, with_forces)
        else:
            energies, forces = self._evaluator.evaluate(positions, with_forces)
        u = torch.from_numpy(energies / self.kT).to(x.device)
        if not with_forces:
            return u, None
        return u, torch.from_numpy(forces / self.kT).to(x.device)

    def _energy(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _ReducedEnergy.apply(x, self)
        return self._evaluate(x, with_forces=False)[0]

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, force = self._evaluate(x, with_forces=True)
        assert force is not None
        return u, force

    def close(self) -> None:
        """Stop and join the worker processes (or drop the in-process Context). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._evaluator = None
        if self._pool is not None:
            self._finalizer()
            atexit.unregister(self._finalizer)

    def __enter__(self) -> OpenMMEnergy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_arguments(
    system: object, temperature: float, n_workers: int, platform: str, threads: int
) -> None:
    if not isinstance(system, openmm.System):
        raise TypeError(f"openmm_system must be an openmm.System, got {type(system).__name__}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a number in kelvin, got {temperature!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (kelvin), got {temperature}")
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ValueError(f"n_workers must be an integer ≥ 0 (0: in-process), got {n_workers!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads_per_worker must be an integer ≥ 1, got {threads!r}")
    sites = [i for i in range(system.getNumParticles()) if system.isVirtualSite(i)]
    if sites:
        raise ValueError(
            f"openmm_system has {len(sites)} virtual sites (the first is particle {sites[0]}), "
            "which OpenMMEnergy does not support yet: their forces would have to be passed "
            "on to their parent atoms. Build the System without them (e.g. TIP3P, not TIP4P)"
        )
    names = [
        openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
    ]
    if platform not in names:
        raise ValueError(f"platform must be one of {', '.join(names)}, got {platform!r}")
