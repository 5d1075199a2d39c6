"""The worker side of :class:`~boltzgen.energies.openmm.OpenMMEnergy`: one OpenMM Context
that evaluates batches of positions, and the loop a worker process runs around it.

This module imports only the standard library, NumPy and OpenMM. The pool starts each
worker by running this file by path (``runpy.run_path`` with ``run_name`` set to
:data:`RUN_NAME`), not by importing it from the package, so that a worker starts without
importing ``boltzgen`` (and with it torch): seconds per worker instead of a fraction of
one. Its arguments arrive as the global ``WORKER_ARGS`` (``runpy``'s ``init_globals``).
"""

from __future__ import annotations

import math
import os
import signal
import traceback
from multiprocessing import connection

import numpy as np
import openmm
from openmm import unit

KJ_PER_MOL = unit.kilojoule_per_mole
KJ_PER_MOL_NM = unit.kilojoule_per_mole / unit.nanometer
RUN_NAME = "__boltzgen_openmm_worker__"
"""``__name__`` of this file when a worker process runs it by path."""

# Replies on a worker pipe: ("ready", pid), ("ok", energies, forces | None), ("error", text).
Reply = tuple


class ContextEvaluator:
    """One ``openmm.Context`` that evaluates batches of positions row by row.

    Args:
        system: the System; the Context keeps its own copy.
        platform: an OpenMM platform name, e.g. ``"CPU"`` or ``"Reference"``.
        threads: the ``Threads`` property of the CPU platform (ignored by others).

    On the CPU platform ``DeterministicForces`` is on, so that every Context (in this
    process or in any worker) gives bit-identical forces for the same positions.
    """

    def __init__(self, system: openmm.System, platform: str, threads: int):
        properties = {}
        if platform == "CPU":
            properties = {"Threads": str(threads), "DeterministicForces": "true"}
        self.context = openmm.Context(
            system,
            openmm.VerletIntegrator(0.001),  # never stepped: only needed to build a Context
            openmm.Platform.getPlatformByName(platform),
            properties,
        )
        if system.usesPeriodicBoundaryConditions():
            self.context.setPeriodicBoxVectors(*system.getDefaultPeriodicBoxVectors())

    def evaluate(
        self, positions: np.ndarray, with_forces: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Energies U ``[b]`` (kJ/mol) and, if ``with_forces``, forces ``[b, N, 3]``
        (kJ/mol/nm) of ``positions: [b, N, 3]`` (nm). Failed rows: U = +inf, force 0."""
        energies = np.full(positions.shape[0], np.inf)
        forces = np.zeros_like(positions) if with_forces else None
        for i, row in enumerate(positions):
            try:
                energy, force = self._evaluate_row(row, with_forces)
            except openmm.OpenMMException:
                continue
            if math.isfinite(energy) and (force is None or np.isfinite(force).all()):
                energies[i] = energy
                if forces is not None:
                    forces[i] = force
        return energies, forces

    def _evaluate_row(self, row: np.ndarray, with_forces: bool) -> tuple[float, np.ndarray | None]:
        self.context.setPositions(row)
        state = self.context.getState(getEnergy=True, getForces=with_forces)
        energy = state.getPotentialEnergy().value_in_unit(KJ_PER_MOL)
        if not with_forces:
            return energy, None
        return energy, state.getForces(asNumpy=True).value_in_unit(KJ_PER_MOL_NM)


def worker_main(conn: connection.Connection, system_xml: str, platform: str, threads: int) -> None:
    """Body of a worker process: build a Context, then answer evaluation requests.

    Requests are ``(positions [b, N, 3], with_forces)``; ``None`` (or a closed pipe,
    e.g. because the parent died) ends the worker. The worker then leaves with
    ``os._exit``: it holds nothing to flush, and skipping the interpreter's teardown
    (torch, OpenMM) makes :meth:`boltzgen.energies.openmm._WorkerPool.close` fast.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        system = openmm.XmlSerializer.deserialize(system_xml)
        evaluator = ContextEvaluator(system, platform, threads)
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    serve(conn, evaluator)
    conn.close()
    os._exit(0)


def serve(conn: connection.Connection, evaluator: ContextEvaluator) -> None:
    """Answer requests on ``conn`` until told to stop or the parent goes away."""
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            reply: Reply = ("ok", *evaluator.evaluate(*request))
        except Exception:
            reply = ("error", f"OpenMM worker {os.getpid()} failed:\n{traceback.format_exc()}")
        try:
            conn.send(reply)
        except OSError:
            return


if __name__ == RUN_NAME:  # a worker process, started by boltzgen.energies.openmm._WorkerPool
    worker_main(*globals()["WORKER_ARGS"])
