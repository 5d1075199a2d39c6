"""Two-state kinetics: a state's mean residence time from first exits, and what it implies
for the error of a free energy read off one long trajectory.

**Residence time.** Started from equilibrium inside a metastable state A, a trajectory
leaves A for good (reaches the core of the other state) after a time that is exponential
with mean τ = 1/k₋, k₋ the rate out of A (relaxation within A being fast against τ). From n
runs with times tᵢ, of which m end in an exit and the others are cut at their end without
one (right-censored), the exponential likelihood Π_exits τ⁻¹e^{−tᵢ/τ} Π_cut e^{−tᵢ/τ} is
largest at

    τ̂ = Σᵢ tᵢ / m,

with standard error τ̂/√m (inverse Fisher information; Lawless, *Statistical Models and
Methods for Lifetime Data*, 2nd ed. 2003, §2.2).

**ΔF from a trajectory.** Along an equilibrium trajectory of a two-state (telegraph)
process with rates k₊ into A and k₋ out of it, the indicator h(t) of A has autocorrelation
p(1 − p)e^{−t/τc}, with p = k₊/(k₊ + k₋) and τc = 1/(k₊ + k₋) = (1 − p)τ. Its time average
p̂ over T ≫ τc has variance 2p(1 − p)τc/T, so ΔF̂ = −ln(p̂/(1 − p̂)) (A against the rest)
has, to first order,

    Var ΔF̂ = Var p̂ / (p(1 − p))² = 2τ / (pT),

the trajectory paying about 2τ/p of time per unit of inverse variance: a rare state that
is left quickly is as costly as a common one left slowly.

**Budget.** n independent trajectories all lie within t of the truth with probability c
when zσ(T) ≤ t, z = Φ⁻¹((1 + c^{1/n})/2), i.e. from T = 2τz²/(p t²) — the forecast of the
time-to-ΔF benchmark, here for a method whose error comes from its transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResidenceTime:
    """Mean residence time in a state from first exits, in the units of the times given.

    Attributes:
        value: τ̂ = total observed time / number of exits (``inf`` without an exit).
        stderr: τ̂/√(exits) (``inf`` without an exit).
        n_exits: runs that ended in an exit.
        n_runs: runs in all (the others were cut without one).
        total: Σ tᵢ over every run, exits and cut runs alike.
    """

    value: float
    stderr: float
    n_exits: int
    n_runs: int
    total: float


def residence_time(times: np.ndarray, exited: np.ndarray) -> ResidenceTime:
    """Censored maximum-likelihood mean of exponential exit times.

    Args:
        times: ``[n]`` time of each run until its exit, or until its end if ``exited`` is
            false for it.
        exited: ``[n]`` whether the run ended in an exit.

    Example:
        >>> residence_time(np.array([2.0, 5.0, 5.0]), np.array([True, False, False])).value
        12.0
    """
    t = np.asarray(times, dtype=np.float64)
    done = np.asarray(exited, dtype=bool)
    if t.ndim != 1 or t.shape != done.shape or len(t) == 0:
        raise ValueError(f"need matching 1-D times and flags, got {t.shape} and {done.shape}")
    if (t < 0).any() or not np.isfinite(t).all():
        raise ValueError("exit times must be finite and non-negative")
    total, exits = float(t.sum()), int(done.sum())
    if exits == 0:
        return ResidenceTime(math.inf, math.inf, 0, len(t), total)
    value = total / exits
    return ResidenceTime(value, value / math.sqrt(exits), exits, len(t), total)


def _check(residence: float, probability: float) -> None:
    if not residence > 0 or not 0.0 < probability < 1.0:
        raise ValueError(f"need τ > 0 and 0 < p < 1, got τ = {residence}, p = {probability}")


def two_state_stderr(residence: float, probability: float, length: float) -> float:
    """σ(ΔF̂) = √(2τ/(pT)) in kT for a trajectory of ``length`` T (units of τ) that visits
    a state of equilibrium probability ``probability`` p with mean residence ``residence`` τ."""
    _check(residence, probability)
    if not length > 0:
        raise ValueError(f"trajectory length must be positive, got {length}")
    return math.sqrt(2.0 * residence / (probability * length))


def two_state_length(residence: float, probability: float, tolerance: float, z: float) -> float:
    """T = 2τz²/(p t²): the trajectory length (units of τ) at which zσ(ΔF̂) = ``tolerance``."""
    _check(residence, probability)
    if not tolerance > 0 or not z > 0:
        raise ValueError(f"need tolerance > 0 and z > 0, got {tolerance}, {z}")
    return 2.0 * residence * z * z / (probability * tolerance * tolerance)
