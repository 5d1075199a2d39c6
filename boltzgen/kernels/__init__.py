"""Markov kernels over a potential: leapfrog, HMC, MALA, Langevin, Metropolis tests.

Every kernel receives the target as a plain function, a
:data:`~boltzgen.kernels.potential.Potential` ``x: [B, *event] -> (u: [B], ∇u: [B, *event])``,
at each call instead of binding it at construction (the style of blackjax,
``kernel(rng, state, logdensity_fn, step_size)``). A sampler that needs a derived target
(a tempered ladder, an interpolation between a prior and the target, the target pulled
back through a flow) builds it with the constructors of
:mod:`~boltzgen.kernels.potential` and hands it to the same kernels.

Modules, one concept each: :mod:`potential`, :mod:`noise` (Gaussian and uniform draws),
:mod:`metropolis` (the accept test), :mod:`leapfrog`, :mod:`hmc`, :mod:`langevin`
(overdamped Langevin proposals and their transition densities), :mod:`mala`,
:mod:`adaptation` (dual averaging of the step size).
"""

from boltzgen.kernels.potential import Potential

__all__ = ["Potential"]
