"""Building a Boltzmann generator for a system from experiment settings.

Five flow families (``flow.kind``):

* ``spline`` — rational-quadratic spline couplings on the flat configuration with a
  standard normal prior (toy systems; any event shape but U(1) links, which are angles).
* ``internal`` — molecules: a mixed circular/interval spline flow on internal
  coordinates (3N − 6: bonds, angles, torsions from an automatic Z-matrix) with a
  prior uniform on torsions and normal elsewhere, standardised on training data
  (or, without data, around a minimised structure with physical widths),
  then placed in a fixed Cartesian frame (Noé et al. 2019; Köhler et al. 2021).
* ``transformer`` — molecules in Cartesian coordinates: TarFlow-style autoregressive
  Transformer blocks on the zero-centre-of-mass subspace (Tan et al. 2025).
* ``lattice`` — scalar fields ``[L, L]``: checkerboard affine (``coupling: affine``, the
  default) or spline (``coupling: spline``, ``n_bins`` bins on ±``tail_bound``) couplings
  with circular convolutions (``hidden`` channels, ``conditioner_layers`` hidden
  convolutions) and an i.i.d. standard normal prior (Albergo, Kanwar, Shanahan 2019;
  arXiv 2101.08176).
* ``u1_gauge`` — U(1) links ``[2, L, L]``: gauge-equivariant plaquette couplings with
  mixtures of ``n_bins`` non-compact projections (``coupling: ncp``, the default) or
  circular splines of ``n_bins`` bins (``coupling: spline``) and a uniform (Haar) prior
  (Kanwar et al., arXiv 2003.06413), or with ``prior_beta: β₀`` the exactly drawn Wilson
  action at β₀ (:class:`~boltzgen.flows.wilson_prior.WilsonPrior`), so that the flow only
  carries the field from β₀ to the card's β.

Both lattice families take ``activation``, their conditioners' nonlinearity:
``leaky_relu`` (the default, the tutorial's) or ``silu``, which makes the flow smooth, as
HMC on the pulled-back action (field-transformation HMC) needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import mdtraj
import torch
from torch import Tensor

from boltzgen.energies.base import Energy
from boltzgen.energies.lattice import LatticeAction, U1Wilson
from boltzgen.energies.restricted import RestrictedEnergy
from boltzgen.flows import (
    CenteredGaussianPrior,
    Flatten,
    GaussianPrior,
    Sequential,
    make_spline_flow,
    make_transformer_flow,
)
from boltzgen.flows.circular import MixedPrior, make_internal_flow
from boltzgen.flows.gauge import make_gauge_flow
from boltzgen.flows.internal import (
    ChiralCentres,
    FixedFrameInternalCoordinates,
    InternalWidths,
    StandardizeInternal,
    ZMatrix,
    circular_mask,
)
from boltzgen.flows.lattice import ACTIVATIONS, Activation, make_lattice_flow
from boltzgen.flows.plaquette_map import after_plaquette_map
from boltzgen.flows.wilson_prior import gauge_prior
from boltzgen.runner.methods.base import ADDED_SETTING
from boltzgen.samplers.importance import BoltzmannGenerator
from boltzgen.systems import System

FlowKind = Literal["spline", "internal", "transformer", "lattice", "u1_gauge"]
CouplingKind = Literal["default", "affine", "spline", "ncp"]
LATTICE_COUPLINGS = {"lattice": ("affine", "spline"), "u1_gauge": ("ncp", "spline")}
DEFAULT_ACTIVATION: Activation = "leaky_relu"


@dataclass(frozen=True)
class FlowParams:
    """The generator's flow (``kind``) and its size.

    For ``internal`` flows, ``standardize`` chooses how bonds and angles are scaled:
    ``"data"`` (mean and spread of the training frames, else the minimum) or
    ``"minimum"`` (around the minimised structure with the fixed widths ``bond_nm``,
    ``angle_rad``, ``torsion_rad``, stiff torsions standardised too and only the soft
    ones circular — the recipe of Midgley et al., arXiv 2208.01893). ``bounded``: splines
    without linear tails on ±``tail_bound`` and a prior truncated there, so no sample
    leaves ±``tail_bound`` widths (no stretched bond). ``chirality: L`` gives the target
    weight zero on D stereoisomers (:class:`~boltzgen.energies.restricted.RestrictedEnergy`).
    ``coupling`` picks the transform of the lattice families (``lattice``: ``affine`` or
    ``spline``; ``u1_gauge``: ``ncp`` or ``spline``; ``default``: the first of each).
    ``activation`` is the lattice conditioners' nonlinearity: ``leaky_relu`` (piecewise
    linear, the tutorial's) or ``silu`` (smooth: field-transformation HMC integrates the
    flow's Jacobian, whose jumps under LeakyReLU make the leapfrog error first order in
    the step); other flow kinds refuse anything but the default.
    ``init_from`` names a task folder of a finished run whose generator (same kind and
    size; any L for the lattice kinds) starts this one's training, its cost charged here
    (:func:`~boltzgen.runner.methods.boltzmann_generator.initialise_from`).
    ``prior_beta`` (``u1_gauge`` only): the latent links are drawn from the Wilson action at
    this β₀ instead of the Haar measure (field-transformation HMC then moves in a latent space
    close to the β₀ theory; docs/lattice.md). ``plaquette_map`` (with ``prior_beta``): the
    analytic map of every plaquette's marginal from β₀ to the system's β
    (:class:`~boltzgen.flows.plaquette_map.PlaquetteMarginalMap`) comes first, the
    ``n_layers`` learned couplings (zero allowed: nothing to train) after it.
    ``dtype`` is the flow's arithmetic (parameters, latents, log-densities): ``float32``
    roughly halves the cost of a training step on a CPU; the target energy keeps its own
    dtype (a float32 configuration is evaluated in the energy's float64), so log-weights
    −u(x) − log q(x) are float64 sums with log q rounded to float32.
    """

    kind: FlowKind = "spline"
    n_layers: int = 6
    hidden: int = 64
    n_bins: int = 8
    tail_bound: float = 5.0
    conditioner_layers: int = 2
    n_heads: int = 4
    standardize: Literal["data", "minimum"] = "data"
    bounded: bool = False
    chirality: Literal["any", "L"] = "any"
    bond_nm: float = 0.005
    angle_rad: float = 0.15
    torsion_rad: float = 0.2
    coupling: CouplingKind = "default"
    dtype: Literal["float64", "float32"] = "float64"
    activation: Activation = field(default=DEFAULT_ACTIVATION, metadata=ADDED_SETTING)
    init_from: str | None = field(default=None, metadata=ADDED_SETTING)
    prior_beta: float | None = field(default=None, metadata=ADDED_SETTING)
    plaquette_map: bool = field(default=False, metadata=ADDED_SETTING)

    def __post_init__(self) -> None:
        if self.plaquette_map and self.prior_beta is None:
            raise ValueError(
                "flow plaquette_map carries the plaquettes from the Wilson prior's β₀: "
                "set prior_beta (kind 'u1_gauge')"
            )
        if self.prior_beta is not None and (self.kind != "u1_gauge" or not self.prior_beta > 0):
            raise ValueError(
                f"flow prior_beta (a Wilson prior at β₀ > 0) applies to kind 'u1_gauge' only, "
                f"got {self.prior_beta!r} for kind {self.kind!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"flow activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.activation != DEFAULT_ACTIVATION and self.kind not in LATTICE_COUPLINGS:
            raise ValueError(
                f"flow activation applies to the lattice kinds {sorted(LATTICE_COUPLINGS)}; "
                f"kind {self.kind!r} takes only {DEFAULT_ACTIVATION!r}"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64

    def lattice_coupling(self) -> str:
        """The coupling transform of a lattice flow kind (``default`` resolved)."""
        allowed = LATTICE_COUPLINGS[self.kind]
        if self.coupling == "default":
            return allowed[0]
        if self.coupling not in allowed:
            raise ValueError(
                f"flow kind {self.kind!r} takes coupling {allowed}, got {self.coupling!r}"
            )
        return self.coupling


def lattice_flow_kind(energy: Energy) -> FlowKind | None:
    """The flow family made for a lattice action's configurations: ``u1_gauge`` for U(1)
    links ``[2, L, L]`` (angles, uniform Haar prior), ``lattice`` for a scalar field
    ``[L, L]`` (normal prior); ``None`` for an energy that is not a lattice action."""
    if isinstance(energy, U1Wilson):
        return "u1_gauge"
    if isinstance(energy, LatticeAction):
        return "lattice"
    return None


def _spline(system: System, p: FlowParams, seed: int) -> BoltzmannGenerator:
    if lattice_flow_kind(system.energy) == "u1_gauge":
        raise ValueError(
            f"flow kind 'spline' has a normal prior on R^D, but {system.name}'s links are angles: "
            "exp(−u) is 2π-periodic and has no normalisable density on R^D; "
            "use flow: {kind: u1_gauge} (uniform Haar prior, gauge-equivariant couplings)"
        )
    dim = system.energy.dim
    flow = make_spline_flow(
        dim, p.n_layers, p.hidden, p.n_bins, p.tail_bound, torch.float64, p.conditioner_layers, seed
    )
    if len(system.energy.event_shape) > 1:
        flow = Sequential(flow, Flatten(system.energy.event_shape))
    return BoltzmannGenerator(GaussianPrior(dim), flow, system.energy)


def _topology(system: System, kind: str) -> mdtraj.Topology:
    if system.topology is None:
        raise ValueError(f"flow kind {kind!r} needs a molecule; {system.name} has no topology")
    return system.topology


def _internal(system: System, p: FlowParams, seed: int, data: Tensor | None) -> BoltzmannGenerator:
    topology = _topology(system, "internal")
    zmatrix = ZMatrix.from_topology(topology)
    ic = FixedFrameInternalCoordinates(zmatrix)
    mask = ic.layout.torsion_mask
    if p.standardize == "data" and data is not None and data.shape[0] >= 2:
        q, _ = ic.inverse(data.to(torch.float64))
        standardize = StandardizeInternal.from_data(q, mask)
    else:
        if p.standardize == "minimum":
            mask = circular_mask(zmatrix, topology)
        q0, _ = ic.inverse(minimise(system.energy, system.initial_positions)[None])
        widths = InternalWidths(p.bond_nm, p.angle_rad, p.torsion_rad)
        standardize = StandardizeInternal.around(q0[0], ic.layout, widths, mask)
    couplings = make_internal_flow(
        ic.dim,
        mask,
        p.n_layers,
        p.hidden,
        p.n_bins,
        p.tail_bound,
        p.conditioner_layers,
        seed=seed,
        linear_tails=not p.bounded,
    )
    prior = MixedPrior(mask, p.torch_dtype, bound=p.tail_bound if p.bounded else None)
    return BoltzmannGenerator(prior, Sequential(couplings, standardize, ic), target(system, p))


def target(system: System, p: FlowParams) -> Energy:
    """The system's energy, restricted to L stereocentres with ``chirality: L``."""
    if p.chirality == "any":
        return system.energy
    centres = ChiralCentres.from_topology(_topology(system, "chirality: L"))
    if centres.atoms.shape[0] == 0:
        raise ValueError(f"chirality: L, but {system.name} has no stereocentre (N, CA, C, CB)")
    return RestrictedEnergy(system.energy, centres.is_l)


def minimise(energy: Energy, x0: Tensor, max_evals: int = 200) -> Tensor:
    """A local energy minimum near ``x0: [*event_shape]`` (L-BFGS on u; evaluations counted).

    Falls back to ``x0`` when the minimiser meets a non-finite energy.
    """
    x = x0.detach().to(torch.float64).clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [x], lr=1.0, max_iter=max_evals, max_eval=max_evals, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        u, force = energy.energy_and_force(x.detach()[None])
        x.grad = -force[0]
        return u[0]

    optimiser.step(closure)
    with torch.no_grad():
        finite = bool(torch.isfinite(energy.energy(x.detach()[None]))[0])
    return x.detach() if finite else x0.detach().to(torch.float64)


def _transformer(
    system: System, p: FlowParams, seed: int, data: Tensor | None
) -> BoltzmannGenerator:
    n_atoms = _topology(system, "transformer").n_atoms
    spread = 0.1
    if data is not None:
        centred = data - data.mean(dim=1, keepdim=True)
        spread = float(centred.std())
    flow = make_transformer_flow(
        n_atoms, p.n_layers, p.hidden, p.n_heads, p.conditioner_layers, seed=seed
    )
    prior = CenteredGaussianPrior(n_atoms, std=spread)
    return BoltzmannGenerator(prior, flow, system.energy)


def _lattice(system: System, p: FlowParams, seed: int) -> BoltzmannGenerator:
    shape = system.energy.event_shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"flow kind 'lattice' needs a scalar field [L, L]; {system.name} has {shape}"
        )
    flow = make_lattice_flow(
        shape[0],
        p.n_layers,
        p.hidden,
        p.conditioner_layers,
        seed=seed,
        transform=p.lattice_coupling(),
        n_bins=p.n_bins,
        tail_bound=p.tail_bound,
        activation=p.activation,
    )
    return BoltzmannGenerator(GaussianPrior(system.energy.dim), flow, system.energy)


def _u1_gauge(system: System, p: FlowParams, seed: int) -> BoltzmannGenerator:
    shape = system.energy.event_shape
    if len(shape) != 3 or shape[0] != 2 or shape[1] != shape[2]:
        raise ValueError(f"flow kind 'u1_gauge' needs links [2, L, L]; {system.name} has {shape}")
    flow = make_gauge_flow(
        shape[1],
        p.n_layers,
        p.hidden,
        p.conditioner_layers,
        p.n_bins,
        seed=seed,
        transform=p.lattice_coupling(),
        activation=p.activation,
    )
    if p.plaquette_map:
        beta = float(system.energy.beta)
        flow = after_plaquette_map(flow, shape[1], p.prior_beta, beta)
    prior = gauge_prior(shape[1], p.prior_beta)
    return BoltzmannGenerator(prior, flow, system.energy)


def build_generator(
    system: System, params: FlowParams, seed: int, data: Tensor | None = None
) -> BoltzmannGenerator:
    """The untrained generator of ``params.kind`` for ``system`` (``data`` sets scales),
    its flow and prior in ``params.dtype``."""
    if params.kind == "spline":
        model = _spline(system, params, seed)
    elif params.kind == "internal":
        model = _internal(system, params, seed, data)
    elif params.kind == "lattice":
        model = _lattice(system, params, seed)
    elif params.kind == "u1_gauge":
        model = _u1_gauge(system, params, seed)
    else:
        model = _transformer(system, params, seed, data)
    return model.to(params.torch_dtype)
