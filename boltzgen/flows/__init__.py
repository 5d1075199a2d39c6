"""Normalizing flows: the Flow contract, priors, coupling layers, splines, linear maps,
Cartesian Transformer flows and temperature-steerable flows."""

from boltzgen.flows.base import Flatten, Flow, GaussianPrior, Prior, Sequential
from boltzgen.flows.circular import (
    CircularSplineCoupling,
    MixedCoupling,
    MixedPrior,
    circular_rq_spline,
    make_internal_flow,
)
from boltzgen.flows.coupling import (
    AffineCoupling,
    Coupling,
    RQSplineCoupling,
    alternating_masks,
    make_spline_flow,
)
from boltzgen.flows.internal import (
    FixedFrameInternalCoordinates,
    InternalCoordinates,
    StandardizeInternal,
)
from boltzgen.flows.linear import AffineFlow, ElementwiseAffine
from boltzgen.flows.ode import ContinuousFlow, VectorField, flow_matching_loss
from boltzgen.flows.steerable import (
    TemperatureSteerableFlow,
    VolumePreservingCoupling,
    make_steerable_flow,
)
from boltzgen.flows.transformer import (
    CenteredGaussianPrior,
    TransformerBlock,
    make_transformer_flow,
    random_rotation,
)
from boltzgen.flows.zmatrix import InternalLayout, ZMatrix

__all__ = [
    "AffineCoupling",
    "AffineFlow",
    "CenteredGaussianPrior",
    "CircularSplineCoupling",
    "ContinuousFlow",
    "Coupling",
    "ElementwiseAffine",
    "FixedFrameInternalCoordinates",
    "Flatten",
    "Flow",
    "GaussianPrior",
    "InternalCoordinates",
    "InternalLayout",
    "MixedCoupling",
    "MixedPrior",
    "Prior",
    "RQSplineCoupling",
    "Sequential",
    "StandardizeInternal",
    "TemperatureSteerableFlow",
    "TransformerBlock",
    "VectorField",
    "VolumePreservingCoupling",
    "ZMatrix",
    "alternating_masks",
    "circular_rq_spline",
    "flow_matching_loss",
    "make_internal_flow",
    "make_spline_flow",
    "make_steerable_flow",
    "make_transformer_flow",
    "random_rotation",
]
