"""Continuous normalizing flows: the flow map of an ODE, with exact or Hutchinson log-dets.

A vector field v(x, t) defines x(1) = f(x(0)) by dx/dt = v(x, t) on t ∈ [0, 1]
(Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations",
arXiv 1806.07366). Its log-determinant obeys the instantaneous change of variables

    d/dt log|det ∂x(t)/∂x(0)| = tr(∂v/∂x)(x(t), t),

so forward(z) integrates the pair (x, ℓ) from t = 0 to 1 and inverse(x) from 1 to 0
(which yields log|det ∂z/∂x| = −ℓ directly). The trace is

* exact: D vector–Jacobian products (backward passes) per field evaluation, one per
  basis vector eᵢ (rows of ∂v/∂x), batched with ``is_grads_batched``;
* Hutchinson: tr A = E[εᵀAε] for probes with E[εεᵀ] = I (Rademacher or Gaussian), one
  backward pass per probe, with the probe held fixed along the trajectory, as in FFJORD
  (Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, arXiv 1810.01367). The estimate of
  ℓ is unbiased, but exp(ℓ̂) — what an importance weight needs — is not (Jensen);
* none: :meth:`ContinuousFlow.push` / :meth:`ContinuousFlow.pull` transport points
  only, for samplers that avoid the log-det (flow perturbation).

Integration uses torchdiffeq (fixed-step ``"rk4"`` by default: a known number of field
evaluations, hence a known cost; ``"dopri5"`` for adaptive steps). A fixed-step
solver's inverse is exact only up to the discretisation error (O(h⁴) for RK4).
:func:`flow_matching_loss` trains the field by regression without solving the ODE
(Lipman, Chen, Ben-Hamu, Nickel, Le, "Flow matching for generative modeling",
arXiv 2210.02747).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint

from boltzgen.flows.base import Flow

Trace = Literal["exact", "hutchinson", "none"]
Probe = Literal["rademacher", "gaussian"]


def _linear(n_in: int, n_out: int, dtype: torch.dtype, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, dtype=dtype)
    bound = n_in**-0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class VectorField(nn.Module):
    """v(x, t): an MLP on (x, t) ``[B, D + 1] → [B, D]`` with tanh activations.

    The last layer starts at zero, so the flow starts as the identity map.

    Args:
        dim: D.
        hidden: width of the hidden layers.
        n_layers: number of hidden layers.
        dtype: parameter dtype.
        seed: seeds the initialisation of the hidden layers.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        n_layers: int = 2,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ):
        super().__init__()
        if dim < 1 or hidden < 1 or n_layers < 1:
            raise ValueError(
                f"VectorField needs dim, hidden, n_layers ≥ 1, got {(dim, hidden, n_layers)}"
            )
        g = torch.Generator().manual_seed(seed)
        sizes = [dim + 1] + [hidden] * n_layers
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [_linear(n_in, n_out, dtype, g), nn.Tanh()]
        last = nn.Linear(hidden, dim, dtype=dtype)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.dim = int(dim)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity ``[B, D]`` at ``x: [B, D]`` and time ``t`` (a number, ``[]`` or ``[B, 1]``)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return self.net(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))


@dataclass
class ODECounter:
    """Work done by a continuous flow: batched field evaluations and backward passes."""

    field_evals: int = 0
    backward_passes: int = 0

    def snapshot(self) -> ODECounter:
        return ODECounter(self.field_evals, self.backward_passes)

    def since(self, earlier: ODECounter) -> ODECounter:
        return ODECounter(
            self.field_evals - earlier.field_evals,
            self.backward_passes - earlier.backward_passes,
        )


def draw_probes(
    shape: tuple[int, ...], kind: Probe, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """Hutchinson probes with E[εεᵀ] = I: Rademacher (±1) or standard Gaussian."""
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
    raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {kind!r}")


def exact_divergence(v: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """tr(∂v/∂x) ``[B]`` from D batched vector–Jacobian products eᵢᵀ ∂v/∂x."""
    d = x.shape[1]
    basis = torch.eye(d, dtype=x.dtype, device=x.device)[:, None, :].expand(d, x.shape[0], d)
    (rows,) = torch.autograd.grad(
        v, x, basis, create_graph=create_graph, is_grads_batched=True
    )  # rows[i, b, j] = ∂v_i/∂x_j of sample b
    return torch.einsum("ibi->b", rows)


def hutchinson_divergence(v: Tensor, x: Tensor, probes: Tensor, create_graph: bool) -> Tensor:
    """(1/P) Σ_p ε_pᵀ (∂v/∂x) ε_p ``[B]`` for probes ``[P, B, D]``: P backward passes."""
    (vjp,) = torch.autograd.grad(v, x, probes, create_graph=create_graph, is_grads_batched=True)
    return (vjp * probes).sum(dim=2).mean(dim=0)


class _Dynamics(nn.Module):
    """Right-hand side of d(x, ℓ)/dt = (v, tr ∂v/∂x) for torchdiffeq, with counting."""

    def __init__(self, flow: ContinuousFlow, trace: Trace, probes: Tensor | None):
        super().__init__()
        self.flow, self.trace, self.probes = flow, trace, probes

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        counter = self.flow.counter
        counter.field_evals += 1
        if self.trace == "none":
            return self.flow.field(x, t), torch.zeros_like(state[1])
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x_in = x if x.requires_grad else x.detach().requires_grad_(True)
            v = self.flow.field(x_in, t)
            if self.trace == "exact":
                div = exact_divergence(v, x_in, keep_graph)
                counter.backward_passes += x.shape[1]
            else:
                assert self.probes is not None
                div = hutchinson_divergence(v, x_in, self.probes, keep_graph)
                counter.backward_passes += self.probes.shape[0]
        if not keep_graph:
            v, div = v.detach(), div.detach()
        return v, div


class ContinuousFlow(Flow):
    """x = f(z): the time-``t1`` map of dx/dt = v(x, t) from ``t0`` (default [0, 1]).

    Args:
        field: the vector field v(x, t).
        hutchinson: estimate tr ∂v/∂x with ``n_probes`` probes (one backward pass each)
            instead of exactly (D backward passes).
        probe: ``"rademacher"`` or ``"gaussian"`` Hutchinson probes.
        n_probes: probes per trajectory (held fixed along it).
        method: a torchdiffeq solver; fixed-step ``"rk4"``, ``"midpoint"``, ``"euler"``
            use ``n_steps`` steps, adaptive ones (``"dopri5"``) ``rtol`` / ``atol``.
        n_steps: steps of a fixed-step solver over [t0, t1].
        rtol: relative tolerance of an adaptive solver.
        atol: absolute tolerance of an adaptive solver.
        t_span: (t0, t1).
        seed: seeds :attr:`generator`, the only source of the probes drawn by
            :meth:`forward` / :meth:`inverse` (call :meth:`integrate` to pass your own).

    Attributes:
        counter: field evaluations and backward passes so far (:class:`ODECounter`).

    Example:
        >>> import torch
        >>> flow = ContinuousFlow(VectorField(2, hidden=16))
        >>> x, logdet = flow(torch.randn(8, 2, dtype=torch.float64))
        >>> z, inv_logdet = flow.inverse(x)   # z ≈ input, inv_logdet ≈ −logdet
    """

    def __init__(
        self,
        field: VectorField,
        hutchinson: bool = False,
        probe: Probe = "rademacher",
        n_probes: int = 1,
        method: str = "rk4",
        n_steps: int = 16,
        rtol: float = 1e-7,
        atol: float = 1e-9,
        t_span: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ):
        super().__init__()
        if n_probes < 1 or n_steps < 1 or not t_span[1] > t_span[0]:
            raise ValueError(
                f"need n_probes ≥ 1, n_steps ≥ 1 and t_span (t0, t1) with t1 > t0, got "
                f"{n_probes}, {n_steps}, {t_span}"
            )
        if probe not in ("rademacher", "gaussian"):
            raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
        self.field = field
        self.hutchinson, self.probe, self.n_probes = bool(hutchinson), probe, int(n_probes)
        self.method, self.n_steps, self.rtol, self.atol = method, int(n_steps), rtol, atol
        self.t_span = (float(t_span[0]), float(t_span[1]))
        self.generator = torch.Generator().manual_seed(seed)
        self.counter = ODECounter()

    def with_options(self, **changes: object) -> ContinuousFlow:
        """Another view of the same field (shared parameters and counter) with changed
        options, e.g. ``flow.with_options(hutchinson=True)``."""
        options = {
            "hutchinson": self.hutchinson,
            "probe": self.probe,
            "n_probes": self.n_probes,
            "method": self.method,
            "n_steps": self.n_steps,
            "rtol": self.rtol,
            "atol": self.atol,
            "t_span": self.t_span,
        }
        unknown = set(changes) - set(options)
        if unknown:
            raise ValueError(f"unknown ContinuousFlow options {sorted(unknown)}")
        view = ContinuousFlow(self.field, **{**options, **changes})  # type: ignore[arg-type]
        view.counter = self.counter
        view.generator.set_state(self.generator.get_state())
        return view

    def segments(self, k: int) -> list[ContinuousFlow]:
        """The flow split in time into ``k`` consecutive pieces sharing the field and counter.

        Composed in order they give the same map; a fixed-step solver gives each piece
        ``ceil(n_steps / k)`` steps.
        """
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        t0, t1 = self.t_span
        edges = torch.linspace(t0, t1, k + 1, dtype=torch.float64).tolist()
        steps = -(-self.n_steps // k)
        return [
            self.with_options(t_span=(a, b), n_steps=steps) for a, b in itertools.pairwise(edges)
        ]

    def integrate(
        self,
        x: Tensor,
        reverse: bool = False,
        trace: Trace = "exact",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Solve from ``t0`` to ``t1`` (or back if ``reverse``) for ``x: [B, D]``.

        Args:
            x: the start points.
            reverse: integrate from t1 to t0 (the inverse map).
            trace: ``"exact"``, ``"hutchinson"`` (needs ``generator``) or ``"none"``.
            generator: randomness of the Hutchinson probes.

        Returns:
            ``(end points [B, D], log|det ∂end/∂start| [B])`` (zeros for ``"none"``).
        """
        probes = None
        if trace == "hutchinson":
            if generator is None:
                raise ValueError("trace='hutchinson' needs a torch.Generator for the probes")
            shape = (self.n_probes, *x.shape)
            probes = draw_probes(shape, self.probe, generator, x.dtype).to(x.device)
        elif trace not in ("exact", "none"):
            raise ValueError(f"trace must be 'exact', 'hutchinson' or 'none', got {trace!r}")
        t0, t1 = self.t_span
        times = torch.tensor([t1, t0] if reverse else [t0, t1], dtype=x.dtype, device=x.device)
        options = {"step_size": (t1 - t0) / self.n_steps} if self._fixed_step else None
        state = (x, x.new_zeros(x.shape[0]))
        dynamics = _Dynamics(self, trace, probes)
        xs, logdets = odeint(
            dynamics,
            state,
            times,
            rtol=self.rtol,
            atol=self.atol,
            method=self.method,
            options=options,
        )
        return xs[-1], logdets[-1]

    @property
    def _fixed_step(self) -> bool:
        return self.method in ("rk4", "euler", "midpoint", "explicit_adams", "implicit_adams")

    def _trace(self) -> Trace:
        return "hutchinson" if self.hutchinson else "exact"

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(z, False, self._trace(), self.generator)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(x, True, self._trace(), self.generator)

    def push(self, z: Tensor) -> Tensor:
        """x = f(z) without the log-det: one solve, no backward passes."""
        return self.integrate(z, False, "none")[0]

    def pull(self, x: Tensor) -> Tensor:
        """z = f⁻¹(x) without the log-det: one reverse solve, no backward passes."""
        return self.integrate(x, True, "none")[0]


def flow_matching_loss(
    field: VectorField, z: Tensor, x: Tensor, generator: torch.Generator
) -> Tensor:
    """Conditional flow-matching loss E_t ‖v(x_t, t) − (x − z)‖², x_t = (1 − t)z + t·x.

    Lipman et al., arXiv 2210.02747 (σ_min = 0, i.e. the rectified-flow path of Liu et al.,
    arXiv 2209.03003): the minimiser over v is the velocity that transports the law of
    ``z`` onto the law of ``x``, so the CNF is trained without solving the ODE.

    Args:
        field: v(x, t).
        z: ``[B, D]`` prior draws.
        x: ``[B, D]`` target samples (paired at random with ``z``).
        generator: draws t ~ U(0, 1).
    """
    t = torch.rand(x.shape[0], 1, generator=generator, dtype=x.dtype).to(x.device)
    xt = (1 - t) * z + t * x
    return (field(xt, t) - (x - z)).square().sum(dim=1).mean()
