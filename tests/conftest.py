"""Test-suite settings: one torch thread per test process (CPU-bound, small tensors).

Statistical checks are within 4 standard errors unless a test's docstring (or its
module's) states another number; ``tests/test_tolerances.py`` holds every test to it."""

import torch

torch.set_num_threads(1)
