"""Shared helpers of the detection tests: one torch thread (tiny tensors), boxes written to dataset folders."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and the CI machine has 2 shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
