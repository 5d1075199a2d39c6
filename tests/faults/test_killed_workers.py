"""Worker processes SIGKILLed at random instants during a 20-task sweep, on the local
executor and on a dask LocalCluster: after reruns every result equals a clean run's bit
for bit (wall-clock fields aside) and no task was computed to completion twice.

The harness is ``benchmarks/fault_injection.py`` (its 100-kill-point run is the
benchmark); here it makes a few kills per executor.
"""

import random

import pytest

pytestmark = pytest.mark.faults

SEEDS = list(range(10))  # × (hmc, bg) = 20 tasks


@pytest.fixture(scope="module")
def clean(harness, tmp_path_factory):
    return harness.clean_run(tmp_path_factory.mktemp("clean"), SEEDS)


@pytest.mark.parametrize(("executor", "seed"), [("local", 11), ("dask", 12)])
def test_random_kills_lose_nothing_and_change_nothing(harness, clean, tmp_path, executor, seed):
    path = harness.write_experiment(tmp_path, harness.experiment(SEEDS, executor))
    run_dir = tmp_path / "run"
    verdict = harness.run_with_kills(path, run_dir, 4, random.Random(seed), max_delay_s=5.0)
    keys = harness.task_keys(SEEDS)
    harness.compare(clean, run_dir, keys, verdict)
    log = (tmp_path / "run.log").read_text()
    assert len(verdict.kills) >= 3, log
    assert verdict.lost == [], log
    assert verdict.wrong == []
    assert verdict.twice == []
    completions = harness.count_completions(run_dir)
    assert set(completions) <= set(keys) and max(completions.values()) == 1
