"""Simulator tests run on tiny tensors: serial torch avoids OpenMP team start-up costs (milliseconds per op on a
busy 2-core machine) that would dominate their run time."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread_torch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
