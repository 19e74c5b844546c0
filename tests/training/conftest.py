"""Training tests run single-threaded: on a shared CPU, torch's 2-thread kernels wait on each
other at every one of the codecs' many small ops, which made a step tens of times slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
