"""Where umbrella walkers start: every window from reference frames that already lie in it.

Started from the card's one structure, every window's walkers share one configuration of
all the coordinates that the bias does not hold (for alanine dipeptide, ψ and the side
chains), and HMC at T_0 relaxes them slowly: the windows' ΔF then drifts from the start's
memory towards the right value over the whole run (docs/alanine_dipeptide_generator.md).
Frames of an unbiased reference set (parallel tempering mixes those coordinates through
its hot replicas) are close to equilibrium inside every window they reach: window k's C
walkers start from C frames drawn without replacement among the ``pool`` (default 2C) frames
whose s is nearest to its centre s_k (circular distance for a torsion). A window no frame reaches
(a barrier) starts from the nearest ones, and the springs, which grow during the warm-up,
pull them in. The estimate stays an umbrella estimate: the frames only set the start.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzgen.reference.umbrella_mbar import Windows


def distance_to_centres(s: Tensor, windows: Windows) -> Tensor:
    """``[K, N]``: |s_n − s_k|, on the circle (≤ period/2) for a periodic s."""
    centres = windows.centres.to(torch.float64)[:, None]
    return windows.deviation(s.to(torch.float64)[None, :], centres).abs()


def nearest_frames(
    s: Tensor,
    windows: Windows,
    n_chains: int,
    generator: torch.Generator,
    pool: int | None = None,
) -> Tensor:
    """Indices ``[K·C]`` into the frames (window-major, as the walkers): window k's C frames
    drawn without replacement among the ``max(pool, C)`` frames nearest to s_k.

    Args:
        s: ``[N]`` the collective variable of each reference frame.
        windows: the windows' centres and period.
        n_chains: C walkers per window.
        generator: the only source of randomness.
        pool: how many nearest frames each window draws from (default 2C; a wider pool
            gives more varied starts, a narrower one starts closer to the centre).
    """
    n = s.shape[0]
    size = max(pool if pool is not None else 2 * n_chains, n_chains)
    if n < size:
        raise ValueError(
            f"{n} reference frames are too few to start {n_chains} walkers per window "
            f"from a pool of {size}"
        )
    nearest = distance_to_centres(s, windows).topk(size, dim=1, largest=False).indices
    picks = torch.rand(nearest.shape, generator=generator).argsort(dim=1)[:, :n_chains]
    return nearest.gather(1, picks).reshape(-1)


def start_distances(s: Tensor, windows: Windows, n_chains: int) -> Tensor:
    """``[K·C]``: how far (units of s) each walker starts from its window's centre, walker
    i of window i // C starting at s[i]."""
    d = distance_to_centres(s, windows)
    own = torch.arange(windows.centres.shape[0]).repeat_interleave(n_chains)
    return d[own, torch.arange(s.shape[0])]
