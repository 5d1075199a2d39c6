"""The Energy contract: batched reduced potentials u(x) = U(x) / kT.

Every sampler in boltzgen sees a target only through an :class:`Energy`. It maps
a batch of configurations ``x: [B, *event_shape]`` to reduced energies ``[B]``,
computes forces ``-∇u`` (autograd unless a subclass knows better), and counts
every configuration it evaluates so that samplers can be charged for their cost.

A configuration that is not finite, or whose energy is not finite, gets
``u = +inf`` (importance weight zero) and is counted in ``counter.nonfinite``;
it never crashes the batch and never silently becomes 0.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from boltzgen.records.cost import EvaluationCounter


class Energy(abc.ABC):
    """A reduced potential u(x) = U(x)/kT at ``temperature``, batched over configurations.

    Subclasses implement :meth:`_energy` for finite inputs of the right shape and may
    override :meth:`_force`. Users call :meth:`energy`, :meth:`force` or
    :meth:`energy_and_force`, which validate shapes, mask non-finite rows and count.

    Args:
        event_shape: shape of one configuration, e.g. ``(N, 3)`` or ``(2,)``.
        temperature: the temperature at which ``u`` is reduced (kelvin for molecular
            systems; 1.0 for toy systems defined directly in reduced units).
    """

    symmetries: frozenset[str] = frozenset()
    """Named involutions g of configuration space that leave u and volume unchanged
    (g∘g = id, u(g x) = u(x), |det ∂g| = 1): ``"negate"`` for x ↦ −x. A generator may be
    averaged over them (:class:`boltzgen.samplers.symmetrized.SymmetrizedGenerator`)."""

    def __init__(self, event_shape: tuple[int, ...], temperature: float):
        self.event_shape = tuple(int(s) for s in event_shape)
        self.temperature = float(temperature)
        self.counter = EvaluationCounter()

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.event_shape))
        c = self.counter
        return (
            f"{type(self).__name__}(event_shape={shape}, temperature={self.temperature:g}, "
            f"evaluated: {c.energy} energies, {c.force} forces)"
        )

    @property
    def dim(self) -> int:
        """Number of degrees of freedom of one configuration."""
        n = 1
        for s in self.event_shape:
            n *= s
        return n

    @abc.abstractmethod
    def _energy(self, x: Tensor) -> Tensor:
        """Reduced energy ``[B]`` of finite configurations ``x: [B, *event_shape]``."""

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energy ``[B]`` and force ``-∇u: [B, *event_shape]`` by autograd."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u = self._energy(x)
            (grad,) = torch.autograd.grad(u.sum(), x)
        return u.detach(), -grad

    def _check_shape(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"configurations must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 1 + len(self.event_shape) or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"configurations must have shape [B, {', '.join(map(str, self.event_shape))}], "
                f"got {list(x.shape)}"
            )

    def _finite_rows(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Rows of ``x`` that are finite, and ``x`` with the others replaced by zeros."""
        finite = torch.isfinite(x.flatten(1)).all(dim=1)
        mask = finite.reshape((-1,) + (1,) * len(self.event_shape))
        return finite, torch.where(mask, x, torch.zeros_like(x))

    def energy(self, x: Tensor) -> Tensor:
        """Reduced energies ``[B]`` of ``x: [B, *event_shape]``; differentiable.

        Non-finite inputs or outputs give ``+inf`` and are counted.
        """
        self._check_shape(x)
        finite, safe = self._finite_rows(x)
        u = self._energy(safe)
        ok = finite & torch.isfinite(u)
        self.counter.energy += x.shape[0]
        self.counter.nonfinite += int((~ok).sum())
        return torch.where(ok, u, torch.full_like(u, float("inf")))

    def energy_and_force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Energies ``[B]`` and forces ``-∇u: [B, *event_shape]`` (detached).

        Rows whose energy is ``+inf`` get zero force.
        """
        self._check_shape(x)
        finite, safe = self._finite_rows(x)
        u, f = self._force(safe)
        ok = finite & torch.isfinite(u) & torch.isfinite(f.reshape(f.shape[0], -1)).all(dim=1)
        self.counter.force += x.shape[0]
        self.counter.nonfinite += int((~ok).sum())
        u = torch.where(ok, u, torch.full_like(u, float("inf")))
        f = torch.where(ok.reshape((-1,) + (1,) * len(self.event_shape)), f, torch.zeros_like(f))
        return u, f

    def force(self, x: Tensor) -> Tensor:
        """Forces ``-∇u: [B, *event_shape]`` (detached); zero where u is ``+inf``."""
        return self.energy_and_force(x)[1]

    def __call__(self, x: Tensor) -> Tensor:
        return self.energy(x)

    def at_temperature(self, temperature: float) -> Energy:
        """A view reduced at another temperature: u_T(x) = u(x) · T_ref / T.

        The view shares this energy's counter, so its evaluations are charged too.
        """
        return TemperedEnergy(self, temperature)

    def close(self) -> None:
        """Release resources (worker processes, devices); a no-op by default."""
        return None


class TemperedEnergy(Energy):
    """``base`` reduced at another temperature: u_T = u_base · T_base / T."""

    def __init__(self, base: Energy, temperature: float):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(base.event_shape, temperature)
        self.base = base
        self.counter = base.counter
        self.scale = base.temperature / float(temperature)
        self.symmetries = base.symmetries

    def _energy(self, x: Tensor) -> Tensor:
        return self.scale * self.base._energy(x)

    def _force(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, f = self.base._force(x)
        return self.scale * u, self.scale * f

    def at_temperature(self, temperature: float) -> Energy:
        return TemperedEnergy(self.base, temperature)
