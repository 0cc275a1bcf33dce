"""FlowUNet: a lightweight 2D U-Net that predicts the flow from a reference to a target image.

VoxelMorph-style: the two grayscale images are stacked as channels, strided convolutions
encode them, the decoder upsamples with skip connections and a 3x3 head outputs 2 channels.
The head starts near zero, so the initial flow is the identity. The flow may be predicted at
a coarser level of the decoder (``out_level``) and upsampled, which is cheaper and smoother,
and may be integrated as a stationary velocity field (scaling and squaring) to keep it
diffeomorphic. The output is always a pixel flow at the input size (see
:mod:`.spatial_transformer` for the convention).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from .spatial_transformer import integrate_velocity, resize_flow


class ConvAct(nn.Sequential):
    """3x3 convolution + LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.LeakyReLU(0.2, inplace=True))


@MODELS.register_module()
class FlowUNet(nn.Module):
    """U-Net mapping ``(reference, target)`` to the flow that warps reference onto target.

    Args:
        in_channels: channels of the stacked input (2: reference and target, grayscale).
        channels: encoder widths; level ``i`` (1-based) has stride ``2**i``.
        stem_channels: width of the full-resolution stem convolution.
        decoder_convs: extra convolutions after each decoder fusion.
        out_level: decoder level the flow is predicted at (0 = input resolution, 1 = half...),
            then resized to the input size.
        integration_steps: scaling-and-squaring steps (0 = plain displacement field).
        init_std: standard deviation of the flow head's initial weights (near identity).
    """

    def __init__(self,
                 in_channels: int = 2,
                 channels: Sequence[int] = (32, 32, 32, 32),
                 stem_channels: int = 16,
                 decoder_convs: int = 1,
                 out_level: int = 1,
                 integration_steps: int = 0,
                 init_std: float = 1e-5) -> None:
        super().__init__()
        if not 0 <= out_level <= len(channels):
            raise ValueError(f'out_level must be in [0, {len(channels)}], got {out_level}')
        self.depth = len(channels)
        self.out_level = out_level
        self.integration_steps = integration_steps
        self.init_std = init_std
        self.stem = ConvAct(in_channels, stem_channels)
        widths = [stem_channels] + list(channels)
        self.down = nn.ModuleList(
            ConvAct(widths[i], widths[i + 1], stride=2) for i in range(self.depth))
        # Decoder from the deepest level up to ``out_level``: fuse with the skip of level i.
        self.up = nn.ModuleList()
        width = widths[-1]
        for level in range(self.depth - 1, out_level - 1, -1):
            skip = out = widths[level]
            block = [ConvAct(width + skip, out)]
            block += [ConvAct(out, out) for _ in range(decoder_convs)]
            self.up.append(nn.Sequential(*block))
            width = out
        self.head = nn.Conv2d(width, 2, 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming init of the body; the flow head starts at (almost) zero."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity='leaky_relu')
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=self.init_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, reference: Tensor, target: Tensor) -> Tensor:
        """``(N, 1, H, W)`` images -> ``(N, 2, H, W)`` pixel flow (reference -> target)."""
        h, w = target.shape[-2:]
        x = torch.cat((reference, target), dim=1)
        skips: List[Tensor] = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips[-1]
        for i, up in enumerate(self.up):
            skip = skips[self.depth - 1 - i]
            x = F.interpolate(x, size=skip.shape[-2:], mode='nearest')
            x = up(torch.cat((x, skip), dim=1))
        flow = self.head(x)
        flow = integrate_velocity(flow, self.integration_steps)
        return resize_flow(flow, (h, w))
