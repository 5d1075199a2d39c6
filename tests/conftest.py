"""Test-suite settings: one torch thread per test process (CPU-bound, small tensors)."""

import torch

torch.set_num_threads(1)
