"""Normalizing flows: the Flow contract, priors, coupling layers, splines, linear maps."""

from boltzgen.flows.base import Flatten, Flow, GaussianPrior, Prior, Sequential
from boltzgen.flows.coupling import (
    AffineCoupling,
    Coupling,
    RQSplineCoupling,
    alternating_masks,
    make_spline_flow,
)
from boltzgen.flows.linear import AffineFlow, ElementwiseAffine

__all__ = [
    "AffineCoupling",
    "AffineFlow",
    "Coupling",
    "ElementwiseAffine",
    "Flatten",
    "Flow",
    "GaussianPrior",
    "Prior",
    "RQSplineCoupling",
    "Sequential",
    "alternating_masks",
    "make_spline_flow",
]
