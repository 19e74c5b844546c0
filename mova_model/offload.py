"""Offload for small GPUs, written device-agnostically (tested on CPU).

- COMPONENT: a whole component lives on the storage device (CPU) and is moved to the compute
  device only while it runs (`on_device`).
- BLOCK: a tower's `blocks` stay on the storage device; each block is moved to the compute device
  just before its forward and back right after (`enable_block_streaming`), so only one block's
  weights occupy the accelerator at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Events = list[tuple[str, str]]  # ("load" | "release", module name), for observing the schedule


class OffloadMode(StrEnum):
    NONE = "none"
    COMPONENT = "component"
    BLOCK = "block"


@contextmanager
def on_device(module: nn.Module, device: str | torch.device, *,
              storage_device: str | torch.device = "cpu", events: Events | None = None,
              name: str = "component") -> Iterator[nn.Module]:
    """Keep `module` on `device` inside the block, on `storage_device` after it."""
    target, storage = torch.device(device), torch.device(storage_device)
    module.to(target)
    if events is not None:
        events.append(("load", name))
    try:
        yield module
    finally:
        module.to(storage)
        if events is not None:
            events.append(("release", name))


class BlockStreaming:
    """Hooks that stream `module.blocks[i]` to the compute device around each block call."""

    def __init__(self, module: nn.Module, compute_device: str | torch.device,
                 storage_device: str | torch.device = "cpu",
                 events: Events | None = None) -> None:
        blocks = getattr(module, "blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            raise TypeError(f"{type(module).__name__} has no nn.ModuleList `blocks` to stream")
        self.compute = torch.device(compute_device)
        self.storage = torch.device(storage_device)
        self.events = events
        self._handles: list[RemovableHandle] = []
        # Everything but the blocks is small and used every call: keep it on the compute device.
        for name, child in module.named_children():
            if name != "blocks":
                child.to(self.compute)
        for param in module.parameters(recurse=False):
            param.data = param.data.to(self.compute)
        for index, block in enumerate(blocks):
            block.to(self.storage)
            self._handles.append(block.register_forward_pre_hook(self._loader(f"blocks.{index}")))
            self._handles.append(block.register_forward_hook(self._releaser(f"blocks.{index}")))

    def _loader(self, name: str) -> Any:
        def hook(block: nn.Module, args: Any) -> None:
            block.to(self.compute)
            if self.events is not None:
                self.events.append(("load", name))
        return hook

    def _releaser(self, name: str) -> Any:
        def hook(block: nn.Module, args: Any, output: Any) -> None:
            block.to(self.storage)
            if self.events is not None:
                self.events.append(("release", name))
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def enable_block_streaming(module: nn.Module, compute_device: str | torch.device,
                           storage_device: str | torch.device = "cpu",
                           events: Events | None = None) -> BlockStreaming:
    """Start streaming `module.blocks`; call `.remove()` on the result to stop."""
    return BlockStreaming(module, compute_device, storage_device, events)
