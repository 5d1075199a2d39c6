"""Report figures for peptides: Ramachandran plots and reduced-energy histograms.

Both draw the *reweighted* distribution of each method (self-normalised importance
weights; uniform for MD and MCMC). Figures are built on matplotlib's Agg canvas without
pyplot, so they hold no global state; save them with ``fig.savefig(path)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from boltzgen.metrics.torsions import ramachandran_histogram
from boltzgen.metrics.weights import normalized_weights

Torsions = tuple[Tensor, Tensor, Tensor | None]
"""``(phi [n], psi [n], log_weights [n] or None)`` in radians."""

Energies = tuple[Tensor, Tensor | None]
"""``(u [n], log_weights [n] or None)``, reduced energies in kT."""


def _log_density(phi: Tensor, psi: Tensor, log_weights: Tensor | None, bins: int) -> np.ndarray:
    """ln of the (φ, ψ) probability density per rad², NaN in empty cells, ``[ψ cell, φ cell]``."""
    phi_psi = torch.stack([torch.as_tensor(phi), torch.as_tensor(psi)], dim=-1).reshape(-1, 2)
    p = ramachandran_histogram(phi_psi, log_weights, bins).numpy()
    cell_area = (2 * math.pi / bins) ** 2
    with np.errstate(divide="ignore"):
        density = np.log(p / cell_area)
    return np.where(p > 0, density, np.nan).T


def ramachandran_figure(
    phi_psi_by_method: dict[str, Torsions],
    reference: Torsions | None = None,
    title: str = "",
    bins: int = 60,
) -> Figure:
    """One Ramachandran panel per method (and the reference first): ln p(φ, ψ), shared scale.

    Args:
        phi_psi_by_method: ``{method: (phi [n], psi [n], log_weights [n] or None)}``.
        reference: the reference's ``(phi, psi, log_weights or None)``, if any.
        title: figure title.
        bins: histogram cells per angle on [−π, π).

    Returns:
        A matplotlib ``Figure``; empty cells are left blank.
    """
    panels = ({"reference": reference} if reference is not None else {}) | phi_psi_by_method
    if not panels:
        raise ValueError("ramachandran_figure: no method and no reference to plot")
    densities = {name: _log_density(*torsions, bins=bins) for name, torsions in panels.items()}
    top = max(float(np.nanmax(d)) for d in densities.values())
    norm = Normalize(vmin=top - 10.0, vmax=top)
    fig = Figure(figsize=(3.4 * len(panels) + 1.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    edges = np.linspace(-math.pi, math.pi, bins + 1)
    for ax, (name, density) in zip(axes, densities.items(), strict=True):
        mesh = ax.pcolormesh(edges, edges, density, norm=norm, cmap="viridis")
        ax.set(title=name, xlabel="φ (rad)", xlim=(-math.pi, math.pi), ylim=(-math.pi, math.pi))
        ax.set_aspect("equal")
    axes[0].set_ylabel("ψ (rad)")
    fig.colorbar(mesh, ax=list(axes), label="ln p(φ, ψ)  (rad⁻²)")
    fig.suptitle(title)
    return fig


def _finite(u: Tensor, log_weights: Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """Finite energies and their normalised weights (``+inf`` energies dropped)."""
    u = torch.as_tensor(u).detach().to(torch.float64).cpu()
    lw = torch.zeros_like(u) if log_weights is None else torch.as_tensor(log_weights)
    lw = lw.detach().to(torch.float64).cpu()
    keep = torch.isfinite(u)
    if not keep.any():
        raise ValueError("energy_histogram_figure: a method has no finite energy")
    return u[keep].numpy(), normalized_weights(lw[keep]).numpy()


def energy_histogram_figure(
    energies_by_method: dict[str, Energies],
    reference_u: Tensor | None = None,
    title: str = "",
    bins: int = 80,
) -> Figure:
    """Reweighted densities of reduced energies per method, over the reference (filled).

    Methods with importance weights are also drawn unweighted (dashed), showing what
    reweighting corrects. The range covers the central 99% of the reference (or of all
    energies without one), so a few overlapping samples do not squash the plot.

    Args:
        energies_by_method: ``{method: (u [n], log_weights [n] or None)}`` in kT.
        reference_u: ``[m]`` reference reduced energies, if any.
        title: axes title.
        bins: histogram bins across the range.

    Returns:
        A matplotlib ``Figure``.
    """
    curves = {name: _finite(u, lw) for name, (u, lw) in energies_by_method.items()}
    ref = None if reference_u is None else _finite(reference_u, None)[0]
    pooled = ref if ref is not None else np.concatenate([u for u, _ in curves.values()])
    low, high = np.percentile(pooled, [0.5, 99.5])
    pad = 0.1 * (high - low) + 1e-6
    edges = np.linspace(low - pad, high + pad, bins + 1)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if ref is not None:
        ax.hist(ref, bins=edges, density=True, color="0.8", label="reference")
    for i, (name, (u, w)) in enumerate(curves.items()):
        color = f"C{i}"
        ax.hist(u, bins=edges, weights=w, density=True, histtype="step", color=color, label=name)
        if energies_by_method[name][1] is not None:
            ax.hist(
                u,
                bins=edges,
                density=True,
                histtype="step",
                ls="--",
                color=color,
                label=f"{name} (unweighted)",
            )
    ax.set(xlabel="reduced energy u (kT)", ylabel="density", title=title)
    ax.legend(fontsize="small")
    return fig
