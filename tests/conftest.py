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
