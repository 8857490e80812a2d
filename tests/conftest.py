"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest
import torch

# Tests run on 2-core CI machines; keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def rng_seed() -> int:
    return 1234


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (results of tiny models are then the same on every machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
