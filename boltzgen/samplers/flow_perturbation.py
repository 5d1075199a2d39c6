"""Flow perturbation: importance weights of a flow without its Jacobian determinant.

Peng & Gao, "Flow perturbation to accelerate unbiased sampling of Boltzmann
distribution", arXiv 2407.10666 (Nat. Commun. 2025), and the multi-step version,
"Flow Perturbation++", arXiv 2601.21177. For a flow x = f(z) whose log-det is expensive
(a continuous flow needs D backward passes per field evaluation) the weight
w = exp(−u(x)) |det ∂f/∂z| / p_Z(z) is replaced by a weight on an extended path that
never needs the Jacobian:

    z ~ p_Z,   x = f(z),   x' = x + σξ, ξ ~ N(0, I)          (forward path)
    δz = z − f⁻¹(x'),      σ_z = σ·exp(s(x'))                (trained latent scale)

    log w = −u(x') + u_Z(z) + ΔS,
    ΔS = log N(δz; 0, σ_z²) − log N(σξ; 0, σ²)
       = −½|δz/σ_z|² + ½|ξ|² − Σ_i log(σ_z,i / σ).

This is the path weight of a stochastic normalizing flow (Wu, Köhler, Noé, arXiv
2002.06707) whose backward kernel draws z ~ N(f⁻¹(x'), σ_z²) in latent space: the
Jacobians of the forward density p_Z(z)/|det J| and of the backward density cancel,
so E[w] = Z exactly for any σ, any σ_z(x') and any approximate inverse f⁻¹ — unbiased
in the path-space sense, and the perturbed x' are the weighted samples. The variance is
smallest when σ_z² matches the law of δz ≈ J⁻¹σξ; the paper trains σ_z(x') by fitting
|δz/σ_z|² to |ξ|² (``objective="norm"``); ``"kl"`` fits it by maximum likelihood, which
is the path KL. For an affine map δz = σL⁻¹ξ and the weights have finite variance iff
every eigenvalue of (σ²/σ_z²)L⁻ᵀL⁻¹ exceeds ½: too large a σ_z makes them heavy-tailed.

Multi-step (Flow Perturbation++): with f = φ_K ∘ … ∘ φ_1 (e.g. a continuous flow cut in
time, :meth:`~boltzgen.flows.ode.ContinuousFlow.segments`) the perturbation is applied
after every step and the ΔS_k add up. Each φ_k is close to the identity, so each ΔS_k
has small variance, while the cost stays one forward and one reverse solve.

``estimator="radial"`` is the single-configuration estimator of the same paper: the
sample stays at x and each step's log-det is replaced by −(D/2)·log(|δz|²/|σξ|²) with
the central difference δz = (φ⁻¹(x + σξ) − φ⁻¹(x − σξ))/2. Since E_u[|Au|⁻ᴰ] = 1/|det A|
for directions u uniform on the sphere, exp(ΔS) is unbiased for |det J| when φ is
affine; for a non-linear φ it has an O(σ²) bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from boltzgen.energies.base import Energy
from boltzgen.flows.base import Flow, Prior
from boltzgen.flows.ode import ContinuousFlow, ODECounter
from boltzgen.metrics.weights import weight_summary
from boltzgen.records import CostMeter, WeightedSamples

Estimator = Literal["path", "radial"]
ScaleObjective = Literal["norm", "kl"]


def _push(step: Flow, x: Tensor) -> Tensor:
    """φ(x) without its log-det (a continuous flow then skips the trace entirely)."""
    return step.push(x) if isinstance(step, ContinuousFlow) else step(x)[0]


def _pull(step: Flow, x: Tensor) -> Tensor:
    """φ⁻¹(x) without its log-det."""
    return step.pull(x) if isinstance(step, ContinuousFlow) else step.inverse(x)[0]


class PerturbationScale(nn.Module):
    """log(σ_z,k(x')/σ) ``[B, D]`` of the latent (backward) kernel of step k: a small MLP.

    Its input is the perturbed point x' alone, which keeps the backward kernel a
    normalised density in z. The last layer starts at zero (σ_z = σ).

    Args:
        dim: D.
        n_steps: number of perturbed steps K (one output head per step).
        hidden: width of the hidden layer.
        diagonal: one scale per coordinate instead of one per configuration.
        dtype: parameter dtype.
        seed: seeds the hidden layer's initialisation.
    """

    def __init__(
        self,
        dim: int,
        n_steps: int = 1,
        hidden: int = 32,
        diagonal: bool = False,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ):
        super().__init__()
        self.dim, self.n_steps, self.diagonal = int(dim), int(n_steps), bool(diagonal)
        width = dim if diagonal else 1
        g = torch.Generator().manual_seed(seed)
        first = nn.Linear(dim, hidden, dtype=dtype)
        with torch.no_grad():
            first.weight.uniform_(-(dim**-0.5), dim**-0.5, generator=g)
            first.bias.zero_()
        last = nn.Linear(hidden, n_steps * width, dtype=dtype)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(first, nn.Tanh(), last)

    def forward(self, x: Tensor, step: int) -> Tensor:
        out = self.net(x).reshape(x.shape[0], self.n_steps, -1)[:, step]
        return out.expand(x.shape[0], self.dim)


@dataclass(frozen=True)
class PerturbedPath:
    """One batch of perturbed paths.

    Attributes:
        x: ``[B, D]`` the weighted configurations (x' for ``"path"``, x for ``"radial"``).
        log_weights: ``[B]`` log w = −u(x) + u_Z(z) + Σ_k ΔS_k.
        energies: ``[B]`` u(x).
        delta_s: ``[B]`` Σ_k ΔS_k, the stand-in for log|det ∂f/∂z|.
    """

    x: Tensor
    log_weights: Tensor
    energies: Tensor
    delta_s: Tensor


@dataclass(frozen=True)
class _Displacements:
    """Per step k: the perturbed point x'_k, the latent displacement δz_k and ξ_k."""

    points: list[Tensor]
    dz: list[Tensor]
    xi: list[Tensor]


class FlowPerturbation(nn.Module):
    """Importance sampling from a flow with perturbation weights in place of log-dets.

    Args:
        prior: p_Z on ``[B, D]``.
        flow: a :class:`Flow` (one perturbed step), or a sequence of flows φ_1, …, φ_K
            applied in order (multi-step, Flow Perturbation++).
        energy: the target u, evaluated once per sample.
        sigma: σ, the configuration-space perturbation scale.
        scale: the trained latent scale σ_z(x') (default: an untrained
            :class:`PerturbationScale`, i.e. σ_z = σ).
        estimator: ``"path"`` (unbiased path weights on x') or ``"radial"``.

    Example:
        >>> import torch
        >>> from boltzgen.energies.toy import DoubleWell2D
        >>> from boltzgen.flows import GaussianPrior
        >>> from boltzgen.flows.ode import ContinuousFlow, VectorField
        >>> cnf = ContinuousFlow(VectorField(2))  # trained beforehand, e.g. by flow matching
        >>> fp = FlowPerturbation(GaussianPrior(2), cnf.segments(4), DoubleWell2D(), 1e-3,
        ...                       PerturbationScale(2, n_steps=4))
        >>> from boltzgen.training import train_perturbation_scale
        >>> losses = train_perturbation_scale(fp, 20, 256, 1e-2, torch.Generator().manual_seed(0))
        >>> samples = fp.sample(1000, torch.Generator().manual_seed(1))
        >>> samples.info["backward_passes"]
        0
    """

    def __init__(
        self,
        prior: Prior,
        flow: Flow | Sequence[Flow],
        energy: Energy,
        sigma: float,
        scale: PerturbationScale | None = None,
        estimator: Estimator = "path",
    ):
        super().__init__()
        steps = [flow] if isinstance(flow, Flow) else list(flow)
        if not steps or not sigma > 0 or estimator not in ("path", "radial"):
            raise ValueError(
                "FlowPerturbation needs at least one flow step, sigma > 0 and estimator "
                f"'path' or 'radial', got {len(steps)} steps, sigma={sigma}, {estimator!r}"
            )
        self.prior, self.energy = prior, energy
        self.steps = nn.ModuleList(steps)
        self.sigma, self.estimator = float(sigma), estimator
        dtype = next(iter(prior.buffers())).dtype if list(prior.buffers()) else torch.float64
        self.scale = scale or PerturbationScale(prior.dim, len(steps), dtype=dtype)
        if self.scale.n_steps != len(steps) or self.scale.dim != prior.dim:
            raise ValueError(
                f"scale has {self.scale.n_steps} heads of dim {self.scale.dim}, the flow "
                f"{len(steps)} steps of dim {prior.dim}"
            )

    def _target(self, x: Tensor) -> Tensor:
        return self.energy.energy(x.reshape(x.shape[0], *self.energy.event_shape))

    def _path_steps(self, z: Tensor, generator: torch.Generator) -> _Displacements:
        """x_k = φ_k(x_{k−1}) + σξ_k and δz_k = x_{k−1} − φ_k⁻¹(x_k), for every step."""
        points, dz, xi = [], [], []
        x = z
        for step in self.steps:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            y = _push(step, x) + self.sigma * noise
            dz.append(x - _pull(step, y))
            points.append(y)
            xi.append(noise)
            x = y
        return _Displacements(points, dz, xi)

    def _path_delta_s(self, moves: _Displacements) -> Tensor:
        """Σ_k log N(δz_k; 0, σ_z,k²) − log N(σξ_k; 0, σ²)."""
        total = moves.points[0].new_zeros(moves.points[0].shape[0])
        for k, (y, dz, xi) in enumerate(zip(moves.points, moves.dz, moves.xi, strict=True)):
            log_ratio = self.scale(y, k)
            r = dz / (self.sigma * log_ratio.exp())
            total = total - 0.5 * r.square().sum(1) + 0.5 * xi.square().sum(1)
            total = total - log_ratio.sum(1)
        return total

    def _radial(self, z: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Unperturbed x = f(z) and Σ_k −(D/2) log(|δz_k|²/|σξ_k|²) (central differences)."""
        x, total, d = z, z.new_zeros(z.shape[0]), z.shape[1]
        for step in self.steps:
            y = _push(step, x)
            dx = self.sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
            dz = 0.5 * (_pull(step, y + dx) - _pull(step, y - dx))
            total = total - 0.5 * d * (dz.square().sum(1) / dx.square().sum(1)).log()
            x = y
        return x, total

    def path(self, n: int, generator: torch.Generator) -> PerturbedPath:
        """``n`` perturbed paths: weighted configurations and their log-weights."""
        z = self.prior.sample(n, generator)
        if self.estimator == "radial":
            x, delta_s = self._radial(z, generator)
        else:
            moves = self._path_steps(z, generator)
            x, delta_s = moves.points[-1], self._path_delta_s(moves)
        u = self._target(x)
        return PerturbedPath(x, -u + self.prior.energy(z) + delta_s, u, delta_s)

    def sample(
        self, n: int, generator: torch.Generator, batch_size: int = 10_000
    ) -> WeightedSamples:
        """``n`` weighted samples (no gradients) with log Z, ESS and the flow's work in info.

        ``cost`` counts one target energy evaluation per sample; ``info`` adds
        ``log_z``/``log_z_se``, Kish ``ess``/``ess_fraction``, and for continuous flows the
        ``field_evals``/``backward_passes`` spent (batched calls, zero backward passes).
        """
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be positive, got {n}, {batch_size}")
        meter, before = CostMeter(self.energy), self._ode_work()
        with meter.measure(), torch.no_grad():
            parts = [self.path(min(batch_size, n - s), generator) for s in range(0, n, batch_size)]
        x = torch.cat([p.x for p in parts]).reshape(n, *self.energy.event_shape)
        log_w = torch.cat([p.log_weights for p in parts])
        u = torch.cat([p.energies for p in parts])
        spent = self._ode_work().since(before)
        info = weight_summary(log_w, u) | {
            "sampler": "flow_perturbation",
            "estimator": self.estimator,
            "sigma": self.sigma,
            "n_steps": len(self.steps),
            "field_evals": spent.field_evals,
            "backward_passes": spent.backward_passes,
        }
        return WeightedSamples(x, log_w, u, meter.cost, info)

    def _ode_work(self) -> ODECounter:
        counters = {id(s.counter): s.counter for s in self.steps if isinstance(s, ContinuousFlow)}
        total = ODECounter()
        for c in counters.values():
            total = ODECounter(
                total.field_evals + c.field_evals, total.backward_passes + c.backward_passes
            )
        return total

    def scale_loss(
        self, n: int, generator: torch.Generator, objective: ScaleObjective = "norm"
    ) -> Tensor:
        """Loss of the latent scale σ_z on ``n`` fresh paths (no energy evaluations).

        ``"norm"``: mean over steps of E|‖δz_k/σ_z,k‖² − ‖ξ_k‖²| (Peng & Gao's criterion:
        the perturbation term of ΔS should vanish path by path). ``"kl"``: the Gaussian
        negative log-likelihood E[½‖δz/σ_z‖² + Σ log σ_z], i.e. the path KL as a function
        of σ_z. The paths are detached: only the scale network receives gradients.
        """
        if objective not in ("norm", "kl"):
            raise ValueError(f"objective must be 'norm' or 'kl', got {objective!r}")
        with torch.no_grad():
            moves = self._path_steps(self.prior.sample(n, generator), generator)
        losses = []
        for k, (y, dz, xi) in enumerate(zip(moves.points, moves.dz, moves.xi, strict=True)):
            log_ratio = self.scale(y, k)
            r2 = (dz / (self.sigma * log_ratio.exp())).square().sum(1)
            if objective == "norm":
                losses.append((r2 - xi.square().sum(1)).abs().mean())
            else:
                losses.append((0.5 * r2 + log_ratio.sum(1)).mean())
        return torch.stack(losses).mean()


def flow_perturbation_evaluations(n_samples: int) -> int:
    """Target evaluations of :meth:`FlowPerturbation.sample`: one per sample.

    Training the perturbation scale spends only flow pushes and pulls.
    """
    return n_samples
