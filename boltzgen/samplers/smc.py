"""Sequential Monte Carlo Boltzmann generator: flow draws annealed to the target.

Tan, Bose, Lin, Klein, Bronstein, Tong, "Scalable equilibrium sampling with sequential
Boltzmann generators", arXiv 2502.18462 (SBG). Particles start as exact draws of a
normalising-flow model q (a :class:`~boltzgen.samplers.importance.BoltzmannGenerator`)
and are carried to the target p ∝ exp(−u) through the geometric path

    π_β(x) ∝ q(x)^{1−β} exp(−β u(x)),     u_β(x) = −(1−β) log q(x) + β u(x),

on a schedule 0 = β_0 < β_1 < … < β_K = 1. This is an SMC sampler (Del Moral, Doucet,
Jasra, "Sequential Monte Carlo samplers", J. R. Stat. Soc. B 68, 2006) with MCMC moves
that leave π_{β_k} invariant, i.e. annealed importance sampling (Neal, "Annealed
importance sampling", Stat. Comput. 11, 2001) plus resampling. Each stage k does

1. reweight: log w ← log w − (β_k − β_{k−1}) (u(x) + log q(x)), the log of
   π̃_{β_k}(x) / π̃_{β_{k−1}}(x) (the Jarzynski work increment; Jarzynski, "Nonequilibrium
   equality for free energy differences", Phys. Rev. Lett. 78, 2690, 1997);
2. resample (systematic) when the Kish ESS falls below ``resample_threshold · n``;
   every log-weight is then reset to the log of the mean weight, so that the weights
   keep carrying the normalising constant;
3. move: ``n_mcmc`` sweeps of ULA, MALA or HMC (the kernels of :mod:`boltzgen.kernels`)
   on u_β, whose force −∇u_β = (1−β) ∇log q + β F uses the target force F = −∇u and
   ∇log q by autograd through the flow inverse.

(blackjax writes the same cycle as resample → move → reweight, starting one step later.)
Because q is normalised (Z_0 = 1), Ẑ = (1/n) Σ_i w_i of the final weights is an unbiased
estimate of Z = ∫ exp(−u) (Del Moral et al. 2006). With the reset-to-mean rule it equals
the product over resampling stages of the mean weight (each relative to the value of the
previous reset) times the final mean weight, i.e. the usual
``log Ẑ = Σ_stages log mean w + log mean w_final``. log Ẑ itself is biased low
(Jensen). Exact unbiasedness needs π_β-invariant kernels fixed in advance: ULA is not
invariant (its bias is O(ε)), and a step size adapted on the particles makes the kernels
depend on them (consistent, but not exactly unbiased at finite n).

Error bars need independent replicates. After a resampling step the particles are
correlated copies, so any error formula that treats them as independent draws is too
small. With ``n_runs = R ≥ 2`` the n particles are split into R independent SMC runs of
n/R particles each (own resampling, own step-size adaptation); run r's final weights
carry its Ẑ_r, so the pooled particles are a valid weighted sample and

    log Ẑ = log (1/R) Σ_r Ẑ_r,     se(log Ẑ) = t_R · sd_r(Ẑ_r / Ẑ) / √R,

with t_R the Student-t factor of :mod:`boltzgen.metrics.runs`; ΔF gets the same
between-run error. The returned samples are stored run after run (``n_runs`` set).

Effective sample size: Kish's (Σw)²/Σw² counts resampled copies as independent (after
resampling without moves, 144 distinct particles of 1000 read as ESS = 1000). The ESS
reported here (``info["lineage_ess"]``, also ``info["ess"]``) is, summed over runs,

    ESS_r = min(Kish ESS of the final weights with identical particles merged,
                Kish ESS just before the run's last resampling),

where merging adds up the weights of particles that are still exact copies (no move
accepted since they were duplicated), so k copies count once, and the second term says
that resampling and moves cannot create more independent draws than the weights held
when the run last resampled. Without resampling it is the Kish ESS, comparable with a
Boltzmann generator's.

Cost: n force evaluations for the initial particles, then n per ULA/MALA sweep and n·L per
HMC sweep (``L`` leapfrog steps); no energy-only evaluations. Flow passes (configurations
pushed through the flow, either direction) are not target evaluations; they are counted
in ``info["flow_evals"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from boltzgen.energies.base import Energy
from boltzgen.metrics.weights import batch_ess
from boltzgen.records import Cost, CostMeter, WeightedSamples
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.samplers.smc_moves import (
    Particles,
    hmc_step,
    langevin_step,
)

Kernel = Literal["ula", "mala", "hmc"]
KERNELS: tuple[Kernel, ...] = ("ula", "mala", "hmc")
ScheduleName = Literal["linear", "geometric"]
ADAPT_GAIN = 1.0
"""Robbins–Monro gain of the step-size update log ε ← log ε + gain · (ᾱ − α*)."""


def beta_schedule(
    schedule: ScheduleName | Sequence[float], n_steps: int, beta_min: float = 1e-3
) -> Tensor:
    """Inverse temperatures ``[n_steps + 1]`` from β_0 = 0 to β_K = 1 (float64).

    * ``"linear"``: β_k = k / K.
    * ``"geometric"``: β_0 = 0, then β_k = β_min^{(K−k)/(K−1)} for k = 1…K (constant ratio
      from β_min to 1; needs K ≥ 2 unless β_min = 1).
    * a sequence: strictly increasing values in (0, 1] ending at 1 (a leading 0 is
      optional); its length, without the leading 0, must equal ``n_steps``.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps}")
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    if schedule == "geometric":
        if not 0.0 < beta_min <= 1.0 or (n_steps == 1 and beta_min != 1.0):
            raise ValueError(f"geometric schedule needs 0 < beta_min ≤ 1, got {beta_min}")
        powers = torch.linspace(1.0, 0.0, n_steps, dtype=torch.float64)
        return torch.cat([torch.zeros(1, dtype=torch.float64), beta_min**powers])
    if isinstance(schedule, str):
        raise ValueError(f"schedule must be 'linear', 'geometric' or a list, got {schedule!r}")
    betas = torch.as_tensor([float(b) for b in schedule], dtype=torch.float64)
    if betas.numel() and betas[0] != 0.0:
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
    if betas.numel() != n_steps + 1 or betas[-1] != 1.0 or not bool((betas.diff() > 0).all()):
        raise ValueError(
            f"a given schedule must be {n_steps} strictly increasing β in (0, 1] ending at 1 "
            f"(n_steps = {n_steps}), got {list(schedule)}"
        )
    return betas


def systematic_resample(log_weights: Tensor, generator: torch.Generator) -> Tensor:
    """Indices ``[n]`` of a systematic resample of ``log_weights: [n]``.

    One uniform U ~ U[0, 1) places n evenly spaced points (i + U)/n on the cumulative
    normalised weights (Kitagawa, "Monte Carlo filter and smoother for non-Gaussian
    nonlinear state space models", J. Comput. Graph. Stat. 5, 1996; Douc, Cappé, Moulines,
    "Comparison of resampling schemes for particle filtering", arXiv cs/0507025). Index i
    is drawn ⌊n w̃_i⌋ or ⌈n w̃_i⌉ times, so the resample is unbiased with low variance.
    Returned sorted.
    """
    n = log_weights.shape[0]
    w = torch.softmax(log_weights.to(torch.float64), dim=0)
    u = torch.rand((), generator=generator, dtype=torch.float64, device=generator.device)
    points = (torch.arange(n, dtype=torch.float64, device=w.device) + u.to(w.device)) / n
    cumulative = torch.cumsum(w, dim=0)
    cumulative[-1] = 1.0
    return torch.searchsorted(cumulative, points, right=True).clamp(max=n - 1)


def clip_log_weights(log_weights: Tensor, fraction: float) -> Tensor:
    """Set the ⌈fraction·n⌉ largest log-weights to the next largest value. BIASED.

    Weight clipping trades bias for variance: it caps the few particles that dominate a
    heavy-tailed weight distribution, raising the ESS, but the clipped estimator of
    ⟨O⟩_p (and of Z) is no longer consistent for a fixed fraction. Use it only where the
    bias is checked to be below the statistical error, and report that it was used.
    """
    n = log_weights.shape[0]
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"clip_fraction must lie in (0, 1), got {fraction}")
    k = math.ceil(fraction * n)
    if k >= n:
        raise ValueError(f"clip_fraction {fraction} would clip all {n} weights")
    threshold = torch.topk(log_weights, k + 1).values[-1]
    return log_weights.clamp(max=threshold)


def log_mean_exp(values: Tensor) -> Tensor:
    """log((1/n) Σ exp(values_i)) of ``values: [n]``, stable."""
    return torch.logsumexp(values, dim=0) - math.log(values.shape[0])


def _log_z(log_weights: Tensor) -> float:
    """log mean w as a float (−inf if every weight is 0)."""
    if not bool(torch.isfinite(log_weights).any()):
        return -math.inf
    return float(log_mean_exp(log_weights))


def flow_score(model: BoltzmannGenerator, x: Tensor) -> tuple[Tensor, Tensor]:
    """log q(x) ``[B]`` and ∇_x log q(x) ``[B, *event]`` by autograd through the flow inverse.

    The flow runs in its parameters' dtype (a float32 flow on a float64 target, whose
    forces turn the particles into float64); both results come back in ``x``'s dtype.
    Rows where either is not finite get log q = −inf and gradient 0. A model whose log q
    does not depend on x (a uniform prior, e.g. the Haar measure of U(1) links, through a
    reshape) has gradient 0.
    """
    flow_dtype = next(model.parameters(), x).dtype
    with torch.enable_grad():
        inside = x.detach().to(flow_dtype).requires_grad_(True)
        log_q = model.log_prob(inside)
        if log_q.requires_grad:
            (grad,) = torch.autograd.grad(log_q.sum(), inside)
        else:
            grad = torch.zeros_like(inside)
    log_q, grad = log_q.detach().to(x.dtype), grad.to(x.dtype)
    ok = torch.isfinite(log_q) & torch.isfinite(grad.reshape(grad.shape[0], -1)).all(dim=1)
    rows = ok.reshape((-1,) + (1,) * (x.dim() - 1))
    return log_q.where(ok, -math.inf), grad.where(rows, 0.0)


@dataclass(frozen=True)
class SMCState:
    """State of the particle system after stage ``stage``.

    Attributes:
        particles: the n particles, evaluated.
        log_weights: ``[n]`` unnormalised log-weights; log mean exp of them is log Ẑ_{β}.
        stage: index k of the current β_k in the schedule (0 after :meth:`SMCSampler.init`).
        step_size: ε for the next moves (adapted, or the initial value).
        flow_evals: configurations pushed through the flow so far.
        resampled_ess: Kish ESS just before the last resampling (n if none yet).
    """

    particles: Particles
    log_weights: Tensor
    stage: int
    step_size: float
    flow_evals: int
    resampled_ess: float


@dataclass(frozen=True)
class SMCInfo:
    """What one stage did.

    Attributes:
        beta: β_k of the stage.
        ess: Kish ESS after reweighting, before resampling.
        resampled: whether the particles were resampled.
        log_z: running estimate log Ẑ_{β_k} = log mean w after reweighting (the free
            energy of π_{β_k} relative to q; unchanged by resampling and moves).
        acceptance: mean Metropolis acceptance probability of the moves (for ULA, that
            of the MALA test it skips: a diagnostic of its discretisation error).
        step_size: ε used by the stage's first sweep.
    """

    beta: float
    ess: float
    resampled: bool
    log_z: float
    acceptance: float
    step_size: float


class SMCSampler:
    """Sequential Monte Carlo from a flow model q to the target p (SBG, arXiv 2502.18462).

    Args:
        model: the flow model q (prior and flow); its ``training_cost`` is reported.
        energy: the target u, charged for every evaluation (may differ from
            ``model.energy``, e.g. a tempered view).
        n_steps: number of annealing stages K.
        schedule: ``"linear"``, ``"geometric"`` (from ``beta_min``) or K values of β
            (see :func:`beta_schedule`).
        kernel: ``"mala"`` (exact), ``"ula"`` (biased at O(ε), cheaper to tune) or
            ``"hmc"`` (``n_leapfrog`` steps, unit mass).
        step_size: ε (Langevin: x' = x + ε g + √(2ε) ξ; HMC: the leapfrog step), a number
            (initial value, adapted if ``target_acceptance`` is set) or K values, one per
            stage (then ``target_acceptance`` must be ``None``).
        resample_threshold: resample when Kish ESS < threshold · n (0: never, 1: always).
        n_mcmc: kernel sweeps per stage.
        clip_fraction: if set, the returned log-weights have their top ⌈fraction·n⌉
            values clipped (:func:`clip_log_weights`). BIASED; ``info["log_z"]`` always
            uses the unclipped weights.
        target_acceptance: after each sweep ε ← ε·exp(ADAPT_GAIN·(ᾱ − target)) with ᾱ
            the mean acceptance probability; ``None`` keeps ε fixed (or scheduled).
        n_leapfrog: leapfrog steps per HMC sweep.
        beta_min: first non-zero β of the geometric schedule.
        n_runs: R independent SMC runs sharing the n particles (n/R each), whose spread
            gives the error bars (see the module docstring); 1 runs one population,
            whose error cannot be estimated once it has resampled.

    Example:
        >>> smc = SMCSampler(model, energy, n_steps=20, kernel="mala")
        >>> samples = smc.sample(1000, torch.Generator().manual_seed(0))
        >>> samples.info["log_z"], samples.info["resampling_steps"]
    """

    def __init__(
        self,
        model: BoltzmannGenerator,
        energy: Energy,
        n_steps: int = 10,
        schedule: ScheduleName | Sequence[float] = "linear",
        kernel: Kernel = "mala",
        step_size: float | Sequence[float] = 0.05,
        resample_threshold: float = 0.5,
        n_mcmc: int = 1,
        clip_fraction: float | None = None,
        target_acceptance: float | None = 0.6,
        n_leapfrog: int = 5,
        beta_min: float = 1e-3,
        n_runs: int = 1,
    ):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if not 0.0 <= resample_threshold <= 1.0:
            raise ValueError(f"resample_threshold must lie in [0, 1], got {resample_threshold}")
        if n_mcmc < 0 or n_leapfrog < 1:
            raise ValueError(f"need n_mcmc ≥ 0 and n_leapfrog ≥ 1, got {n_mcmc}, {n_leapfrog}")
        if target_acceptance is not None and not 0.0 < target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
        if clip_fraction is not None and not 0.0 < clip_fraction < 1.0:
            raise ValueError(f"clip_fraction must lie in (0, 1), got {clip_fraction}")
        if n_runs < 1:
            raise ValueError(f"n_runs must be a positive integer, got {n_runs}")
        self.model = model
        self.energy = energy
        self.betas = beta_schedule(schedule, n_steps, beta_min)
        self.n_steps = int(n_steps)
        self.kernel = kernel
        self.step_sizes = self._step_sizes(step_size, target_acceptance)
        self.resample_threshold = float(resample_threshold)
        self.n_mcmc = int(n_mcmc)
        self.clip_fraction = clip_fraction
        self.target_acceptance = target_acceptance
        self.n_leapfrog = int(n_leapfrog)
        self.n_runs = int(n_runs)

    def _step_sizes(
        self, step_size: float | Sequence[float], target_acceptance: float | None
    ) -> list[float]:
        """ε per stage (a constant list when ε is a number; index 0 is the initial ε)."""
        sizes = (
            [float(step_size)] * self.n_steps
            if isinstance(step_size, int | float)
            else [float(s) for s in step_size]
        )
        if len(sizes) != self.n_steps or not all(s > 0 for s in sizes):
            raise ValueError(
                f"step_size must be a positive number or {self.n_steps} positive values, "
                f"got {step_size}"
            )
        if not isinstance(step_size, int | float) and target_acceptance is not None:
            raise ValueError("a step-size schedule needs target_acceptance=None (no adaptation)")
        return sizes

    def evaluate(self, x: Tensor) -> Particles:
        """Target energy and force (charged) and flow log q and ∇log q at ``x``."""
        u, force = self.energy.energy_and_force(x)
        log_q, grad_log_q = flow_score(self.model, x)
        return Particles(x.detach(), u, force, log_q, grad_log_q)

    def init(self, n: int, generator: torch.Generator) -> SMCState:
        """``n`` particles drawn from q (β_0 = 0), evaluated, with zero log-weights."""
        if n < 1:
            raise ValueError(f"the number of particles must be positive, got {n}")
        with torch.no_grad():
            x, _ = self.model.sample_with_log_prob(n, generator)
        particles = self.evaluate(x)
        zeros = torch.zeros_like(particles.energy)
        return SMCState(particles, zeros, 0, self.step_sizes[0], 2 * n, float(n))

    def reweight_and_resample(
        self, state: SMCState, generator: torch.Generator
    ) -> tuple[Particles, Tensor, float, bool]:
        """Reweight to β_{k+1}, resample if the ESS is low.

        Returns the particles, log-weights, ESS before resampling and whether it resampled.
        """
        k = state.stage + 1
        d_beta = float(self.betas[k] - self.betas[k - 1])
        log_w = state.log_weights - d_beta * state.particles.work()
        ess = batch_ess(log_w)
        n = log_w.shape[0]
        if not ess < self.resample_threshold * n:
            return state.particles, log_w, ess, False
        if not bool(torch.isfinite(log_w).any()):
            raise RuntimeError(
                f"every particle has weight zero at β = {float(self.betas[k]):.4g}: the flow "
                "draws only failed configurations, or the move step size is too large"
            )
        log_mean = log_mean_exp(log_w)
        index = systematic_resample(log_w, generator)
        return state.particles.select(index), log_mean.expand(n).clone(), ess, True

    def move(
        self, particles: Particles, beta: float, step_size: float, generator: torch.Generator
    ) -> tuple[Particles, float, float]:
        """``n_mcmc`` kernel sweeps on u_β; returns particles, mean acceptance and next ε."""
        acceptance = []
        for _ in range(self.n_mcmc):
            if self.kernel == "hmc":
                particles, prob = hmc_step(
                    self.evaluate, particles, beta, step_size, self.n_leapfrog, generator
                )
            else:
                adjusted = self.kernel == "mala"
                particles, prob = langevin_step(
                    self.evaluate, particles, beta, step_size, generator, adjusted
                )
            acceptance.append(float(prob.mean()))
            if self.target_acceptance is not None:
                step_size *= math.exp(ADAPT_GAIN * (acceptance[-1] - self.target_acceptance))
        mean = sum(acceptance) / len(acceptance) if acceptance else math.nan
        return particles, mean, step_size

    def step(self, state: SMCState, generator: torch.Generator) -> tuple[SMCState, SMCInfo]:
        """Stage k = ``state.stage + 1``: reweight to β_k, resample if needed, move on u_{β_k}."""
        k = state.stage + 1
        if k > self.n_steps:
            raise ValueError(f"the schedule has {self.n_steps} stages; the state is at the last")
        particles, log_w, ess, resampled = self.reweight_and_resample(state, generator)
        beta = float(self.betas[k])
        eps = state.step_size if self.target_acceptance is not None else self.step_sizes[k - 1]
        particles, acceptance, next_eps = self.move(particles, beta, eps, generator)
        per_sweep = self.n_leapfrog if self.kernel == "hmc" else 1
        flow_evals = state.flow_evals + self.n_mcmc * per_sweep * log_w.shape[0]
        last_ess = ess if resampled else state.resampled_ess
        new = SMCState(particles, log_w, k, next_eps, flow_evals, last_ess)
        info = SMCInfo(beta, ess, resampled, _log_z(log_w), acceptance, eps)
        return new, info

    def sample(self, n: int, generator: torch.Generator, progress: bool = False) -> WeightedSamples:
        """Run all K stages with ``n`` particles, split into ``n_runs`` independent runs.

        Returns:
            :class:`WeightedSamples` of the final particles (run after run, ``n_runs`` set
            when there are several runs or a run resampled; ⌊n/R⌋·R particles) with their
            log-weights (log mean exp of them is log Ẑ, unless clipped), target energies,
            the sampling cost on ``energy`` plus the model's training cost, and ``info``
            with the schedule, ``ess_history`` (per stage, after reweighting, summed over
            runs), ``resampling_steps`` (stages k ≥ 1 at which some run resampled),
            ``log_z_history`` (log Ẑ_{β_k} after each stage), ``acceptance_history`` and
            ``step_size_history`` (means over runs), ``log_z`` and ``run_log_z`` (per run,
            never clipped), ``flow_evals``, ``lineage_ess`` (= ``ess``, see the module
            docstring) and ``kish_ess`` of the returned weights.
        """
        if n < self.n_runs:
            raise ValueError(f"{n} particles cannot be split into {self.n_runs} runs")
        meter = CostMeter(self.energy)
        runs: list[tuple[SMCState, list[SMCInfo]]] = []
        with meter.measure():
            for _ in range(self.n_runs):
                runs.append(self._run(n // self.n_runs, generator, progress))
        return self._collect(runs, meter.cost)

    def _run(
        self, n: int, generator: torch.Generator, progress: bool
    ) -> tuple[SMCState, list[SMCInfo]]:
        """One SMC run of ``n`` particles through all K stages."""
        state = self.init(n, generator)
        infos: list[SMCInfo] = []
        for _ in tqdm(range(self.n_steps), desc="SMC", disable=not progress):
            state, info = self.step(state, generator)
            infos.append(info)
        return state, infos

    def _collect(self, runs: list[tuple[SMCState, list[SMCInfo]]], cost: Cost) -> WeightedSamples:
        """The runs' final particles pooled into one :class:`WeightedSamples`."""
        states = [state for state, _ in runs]
        log_w = torch.cat([state.log_weights for state in states])
        lineage = sum(
            lineage_ess(st.particles.x, st.log_weights, st.resampled_ess) for st in states
        )
        summary = self._summary(runs)
        if self.clip_fraction is not None:
            log_w = clip_log_weights(log_w, self.clip_fraction)
        summary.update(ess=lineage, ess_fraction=lineage / log_w.shape[0], lineage_ess=lineage)
        summary["kish_ess"] = batch_ess(log_w)
        energy = torch.cat([state.particles.energy for state in states])
        summary["n_nonfinite"] = int((~torch.isfinite(energy)).sum())
        correlated = self.n_runs > 1 or bool(summary["resampling_steps"])
        return WeightedSamples(
            torch.cat([state.particles.x for state in states]),
            log_w,
            energy,
            cost.with_training(self.model.training_cost),
            summary,
            n_runs=self.n_runs if correlated else None,
        )

    def _summary(self, runs: list[tuple[SMCState, list[SMCInfo]]]) -> dict[str, object]:
        """The ``info`` dictionary of :meth:`sample` (histories combined over runs)."""
        stages = list(zip(*(infos for _, infos in runs), strict=True))
        run_log_z = [_log_z(state.log_weights) for state, _ in runs]
        return {
            "sampler": "smc",
            "kernel": self.kernel,
            "n_particles": sum(state.log_weights.shape[0] for state, _ in runs),
            "n_runs": self.n_runs,
            "n_steps": self.n_steps,
            "n_mcmc": self.n_mcmc,
            "n_leapfrog": self.n_leapfrog if self.kernel == "hmc" else None,
            "betas": self.betas.tolist(),
            "resample_threshold": self.resample_threshold,
            "target_acceptance": self.target_acceptance,
            "clip_fraction": self.clip_fraction,
            "ess_history": [sum(i.ess for i in stage) for stage in stages],
            "resampling_steps": [
                k + 1 for k, st in enumerate(stages) if any(i.resampled for i in st)
            ],
            "log_z_history": [_log_mean([i.log_z for i in stage]) for stage in stages],
            "acceptance_history": [_mean([i.acceptance for i in stage]) for stage in stages],
            "step_size_history": [_mean([i.step_size for i in stage]) for stage in stages],
            "log_z": _log_mean(run_log_z),
            "run_log_z": run_log_z,
            "flow_evals": sum(state.flow_evals for state, _ in runs),
        }


def lineage_ess(x: Tensor, log_weights: Tensor, resampled_ess: float) -> float:
    """min(Kish ESS with exact copies merged, ``resampled_ess``) of one run.

    ``x: [n, *event]``, ``log_weights: [n]``; identical rows of ``x`` pool their weights.
    """
    if not bool(torch.isfinite(log_weights).any()):
        return 0.0
    _, group = torch.unique(x.reshape(x.shape[0], -1), dim=0, return_inverse=True)
    w = torch.softmax(log_weights.to(torch.float64), dim=0)
    merged = torch.zeros(int(group.max()) + 1, dtype=w.dtype, device=w.device)
    merged.index_add_(0, group, w)
    return min(float(1.0 / merged.square().sum()), float(resampled_ess))


def _any_resampled(stage: Sequence[SMCInfo]) -> bool:
    return any(info.resampled for info in stage)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _log_mean(values: list[float]) -> float:
    """log of the mean of exp(values) (−inf if every value is −inf)."""
    return _log_z(torch.tensor(values, dtype=torch.float64))


def smc_evaluations(
    n_particles: int, n_steps: int, n_mcmc: int, kernel: str, n_leapfrog: int
) -> int:
    """Target evaluations of :meth:`SMCSampler.sample`: N·(1 + steps·n_mcmc·L).

    One evaluation per particle at the start, then L forces per MCMC move (L = 1 for the
    ``"ula"`` and ``"mala"`` kernels, ``n_leapfrog`` for ``"hmc"``).
    """
    leapfrog = n_leapfrog if kernel == "hmc" else 1
    return n_particles * (1 + n_steps * n_mcmc * leapfrog)
