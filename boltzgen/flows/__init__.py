"""Normalizing flows: the Flow contract, priors, coupling layers, splines, linear maps,
Cartesian Transformer flows and temperature-steerable flows."""

from boltzgen.flows.base import Flatten, Flow, GaussianPrior, Prior, Sequential
from boltzgen.flows.coupling import (
    AffineCoupling,
    Coupling,
    RQSplineCoupling,
    alternating_masks,
    make_spline_flow,
)
from boltzgen.flows.linear import AffineFlow, ElementwiseAffine
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

__all__ = [
    "AffineCoupling",
    "AffineFlow",
    "CenteredGaussianPrior",
    "Coupling",
    "ElementwiseAffine",
    "Flatten",
    "Flow",
    "GaussianPrior",
    "Prior",
    "RQSplineCoupling",
    "Sequential",
    "TemperatureSteerableFlow",
    "TransformerBlock",
    "VolumePreservingCoupling",
    "alternating_masks",
    "make_spline_flow",
    "make_steerable_flow",
    "make_transformer_flow",
    "random_rotation",
]
