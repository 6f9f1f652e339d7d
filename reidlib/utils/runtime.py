"""Where and how a network runs: device, autocast dtype, memory format (training and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Runtime:
    """Where and how a network runs: device, autocast dtype (None = fp32), memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a network to the device, in channels_last when the runtime uses it."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, images: Tensor) -> Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.to(self.device, non_blocking=True, memory_format=fmt)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)
