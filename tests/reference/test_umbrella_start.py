"""Umbrella walkers started from reference frames: each window's starts are frames near its
centre (on the circle for a torsion), and the double well's ΔF stays right."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from boltzgen.records.reference_sets import load_manifest
from boltzgen.reference.torch_pt import TorchPTReferenceSettings, generate_torch_pt_reference
from boltzgen.reference.umbrella import generate_umbrella_reference
from boltzgen.reference.umbrella_mbar import Windows
from boltzgen.reference.umbrella_start import distance_to_centres, nearest_frames, start_distances
from boltzgen.runner.cli import EXIT_USAGE, main
from boltzgen.systems import load_system
from tests.reference.umbrella_settings import DOUBLE_WELL

NAME = "double_well_2d"
CIRCLE = Windows(
    -math.pi + 2 * math.pi * torch.arange(12, dtype=torch.float64) / 12, 4.0, 2 * math.pi
)
UMBRELLA = DOUBLE_WELL


def test_distances_wrap_around_the_circle():
    d = distance_to_centres(torch.tensor([3.1, -3.1, 0.0]), CIRCLE)
    # the first centre is −π: 3.1 and −3.1 are both 0.0416 from it, 0 is π from it
    torch.testing.assert_close(
        d[0], torch.tensor([math.pi - 3.1, math.pi - 3.1, math.pi], dtype=torch.float64)
    )
    assert bool((d <= math.pi + 1e-12).all())


def test_each_window_draws_distinct_frames_from_its_nearest_pool():
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(5000, generator=g) * 2 - 1) * math.pi
    index = nearest_frames(s, CIRCLE, n_chains=6, generator=g, pool=40)
    assert index.shape == (12 * 6,)
    d = distance_to_centres(s, CIRCLE)
    for k in range(12):
        own = index[6 * k : 6 * (k + 1)]
        assert len(set(own.tolist())) == 6  # without replacement
        cutoff = d[k].sort().values[39]  # the 40th nearest frame's distance
        assert bool((d[k, own] <= cutoff).all())
    # 5000 uniform frames put the 40 nearest within ≈ 40/5000·π of a centre
    assert float(start_distances(s[index], CIRCLE, 6).max()) < 0.05


def test_the_draw_is_random_but_reproducible():
    s = torch.linspace(-3.0, 3.0, 500)
    a = nearest_frames(s, CIRCLE, 4, torch.Generator().manual_seed(1))
    b = nearest_frames(s, CIRCLE, 4, torch.Generator().manual_seed(1))
    c = nearest_frames(s, CIRCLE, 4, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_too_few_frames_are_refused():
    with pytest.raises(ValueError, match="too few"):
        nearest_frames(torch.zeros(10), CIRCLE, 4, torch.Generator(), pool=64)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    pt = TorchPTReferenceSettings(
        n_temperatures=4, t_max=8.0, n_iterations=600, n_chains=8, n_discard=100, n_frames=2000
    )
    generate_torch_pt_reference(load_system(NAME), pt, root=root)
    return root


def test_walkers_start_near_their_windows_and_the_free_energy_stays_right(data_root, monkeypatch):
    monkeypatch.setenv("BOLTZGEN_DATA", str(data_root))
    system = load_system(NAME)
    settings = replace(UMBRELLA, start="reference")
    generate_umbrella_reference(system, settings, root=data_root)
    manifest = load_manifest(NAME, "umbrella", data_root)
    start = manifest["start"]
    assert start["from"] == "reference" and start["kind"] == "pt" and start["frames"] == 1000
    generate_umbrella_reference(system, UMBRELLA, root=data_root)
    from_structure = load_manifest(NAME, "umbrella", data_root)["start"]
    assert from_structure["from"] == "structure"
    # the structure sits at one place; the frames cover the left well densely and the right
    # one (ΔF ≈ 4.5 kT above) sparsely, so the windows there start from the nearest frames
    assert start["mean_distance"] < 0.6 * from_structure["mean_distance"]
    exact = system.reference_estimates()["right_vs_left"].value
    fe = manifest["free_energies"]["right_vs_left"]
    assert fe["converged"] is True
    assert 0 < fe["stderr"] < 0.6
    assert abs(fe["value"] - exact) < 4 * fe["stderr"]


def test_starting_from_a_missing_reference_set_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="boltzgen reference double_well_2d --method pt"):
        generate_umbrella_reference(
            load_system(NAME), replace(UMBRELLA, start="reference"), root=tmp_path
        )


def test_the_cli_starts_from_reference_frames_or_says_what_is_missing(
    data_root, tmp_path, monkeypatch, capsys
):
    args = ["reference", NAME, "--method", "umbrella", "--windows", "5", "--cv-range", "-2", "2"]
    args += ["--chains", "4", "--iterations", "30", "--steps-per-iteration", "2"]
    args += ["--start-from", "reference"]
    monkeypatch.delenv("BOLTZGEN_DATA", raising=False)
    assert main([*args, "--data", str(tmp_path)]) == EXIT_USAGE
    assert "cannot start from reference frames" in capsys.readouterr().err
    assert main([*args, "--data", str(data_root)]) == 0
    assert load_manifest(NAME, "umbrella", data_root)["start"]["from"] == "reference"
