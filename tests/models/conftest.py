"""Model tests run tiny networks and factorisations: one intra-op thread is faster, and far faster when another
process holds a core (OpenMP oversubscription on a shared 2-core machine)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
