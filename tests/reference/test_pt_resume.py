"""A torch PT reference stopped and resumed equals one uninterrupted run, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from boltzgen.errors import ConfigError
from boltzgen.records.reference_sets import load_reference, reference_dir
from boltzgen.reference import TorchPTReferenceSettings, generate_torch_pt_reference, torch_pt
from boltzgen.reference.pt_checkpoint import checkpoint_path
from boltzgen.runner.cli import main
from boltzgen.systems import load_system

NAME = "double_well_2d"
WHOLE = TorchPTReferenceSettings(
    n_temperatures=4, t_max=8.0, n_iterations=300, n_chains=4, n_discard=30, n_frames=600,
    thin=2, min_entries=0,
)  # fmt: skip


def run(settings, root, resume=False):
    generate_torch_pt_reference(load_system(NAME), settings, root=root, resume=resume)
    return load_reference(NAME, "pt", root)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return run(WHOLE, tmp_path_factory.mktemp("whole"))


def test_a_run_resumed_twice_equals_the_uninterrupted_one(whole, tmp_path, monkeypatch):
    """100 + 100 + 100 iterations, the last two resumed: same frames, energies, ΔF, swap
    and move statistics; the cost adds up to the uninterrupted run's evaluations. The
    pieces checkpoint after every kept row as well, which must not change anything."""
    monkeypatch.setattr(torch_pt, "EVERY_S", 0.0)
    run(replace(WHOLE, n_iterations=100), tmp_path)
    run(replace(WHOLE, n_iterations=200), tmp_path, resume=True)
    pieces = run(WHOLE, tmp_path, resume=True)
    assert torch.equal(pieces.x, whole.x) and torch.equal(pieces.energies, whole.energies)
    a, b = pieces.manifest, whole.manifest
    assert a["free_energies"] == b["free_energies"]
    for key in ("entries", "transitions", "round_trips", "move_acceptance", "swap_acceptance"):
        assert a[key] == b[key], key
    assert a["iterations_run"] == 300 and not a["stopped_by_wall_clock"]
    assert a["cost"]["force_evals"] == b["cost"]["force_evals"]
    assert a["cost"]["energy_evals"] == b["cost"]["energy_evals"]


def test_the_checkpoint_holds_the_kept_rows_only(tmp_path):
    """The trace is preallocated for every iteration asked for; a run stopped after one
    kept row stores that row, whatever the allocation (40 000 rows here)."""
    sizes = []
    for n in (2, 40_000):
        path = tmp_path / str(n) / "pt_state.pt"
        settings = replace(WHOLE, n_iterations=n, max_wall_s=0.0)
        samples, _ = torch_pt.run_parallel_tempering(load_system(NAME), settings, False, path)
        assert len(samples) == WHOLE.n_chains
        sizes.append(path.stat().st_size)
    assert sizes[1] < 1.1 * sizes[0]


def test_a_resume_with_other_sampling_settings_is_refused(whole, tmp_path):
    run(replace(WHOLE, n_iterations=100), tmp_path)
    with pytest.raises(ConfigError, match=r"t_max: 8\.0 → 9\.0"):
        run(replace(WHOLE, t_max=9.0), tmp_path, resume=True)


def test_the_cli_resumes_with_its_default_discard_and_refuses_other_routes(
    tmp_path, monkeypatch, capsys
):
    """The default warm-up is a tenth of --iterations; a resumed run keeps the checkpoint's,
    so raising --iterations does not count as a change of settings."""
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    args = ["reference", NAME, "--method", "pt", "--chains", "2", "--frames", "40",
            "--min-entries", "0", "--temperatures", "3"]  # fmt: skip
    assert main([*args, "--iterations", "100"]) == 0
    saved = checkpoint_path(reference_dir(NAME, "pt", tmp_path))
    assert saved.exists()
    assert main([*args, "--iterations", "300", "--resume"]) == 0
    manifest = load_reference(NAME, "pt", tmp_path).manifest
    assert manifest["iterations_run"] == 300 and manifest["settings"]["n_discard"] == 10
    capsys.readouterr()
    assert main(["reference", NAME, "--method", "umbrella", "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOLTZGEN_DATA", str(tmp_path))
    status = main(["reference", NAME, "--method", "pt", "--iterations", "50", "--resume"])
    err = capsys.readouterr().err
    assert status == 2 and "no checkpoint to resume from" in err
