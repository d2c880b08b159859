"""Image-sequence encoders: a per-frame CNN shared across dates, a temporal aggregator, pooling.

Masking contract: pixel values where ``valid`` is False are zeroed before the CNN (the mask is an
extra input channel), and frames with too few valid pixels are excluded from attention keys, from
the GRU's state updates and from pooling, so a fully masked frame cannot change the embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

Capacity = Literal["small", "medium", "large"]
Aggregator = Literal["transformer", "gru"]


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to rebuild an encoder (stored beside its weights)."""

    in_channels: int = 6
    capacity: Capacity = "small"
    aggregator: Aggregator = "transformer"
    min_valid_fraction: float = 0.1  # frames with fewer valid pixels count as masked

    @property
    def widths(self) -> tuple[int, ...]:
        return {"small": (16, 32), "medium": (32, 64, 128), "large": (64, 128, 256)}[self.capacity]

    @property
    def dim(self) -> int:
        return {"small": 32, "medium": 128, "large": 256}[self.capacity]

    @property
    def layers(self) -> int:
        return {"small": 1, "medium": 2, "large": 4}[self.capacity]

    def to_dict(self) -> dict:
        return asdict(self)


class FrameBackbone(nn.Module):
    """Conv blocks that downsample first (cheap on CPU); GroupNorm, since batch statistics would mix in masked frames."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], dim: int):
        super().__init__()
        blocks, c = [], in_channels + 1  # + validity mask channel
        for w in widths:
            blocks += [
                nn.Conv2d(c, w, 3, stride=2, padding=1),
                nn.GroupNorm(min(8, w // 4), w),
                nn.GELU(),
                nn.Conv2d(w, w, 3, padding=1),
                nn.GroupNorm(min(8, w // 4), w),
                nn.GELU(),
            ]
            c = w
        self.body = nn.Sequential(*blocks)
        self.proj = nn.Linear(c, dim)

    def forward(self, frames: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W), (N, H, W) -> (N, dim)."""
        mask = valid.unsqueeze(1).to(frames.dtype)
        x = torch.cat([frames * mask, mask], dim=1).contiguous(memory_format=torch.channels_last)
        return self.proj(self.body(x).mean(dim=(2, 3)))


def date_encoding(years: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of (fractional) years since the first date: (..., T) -> (..., T, dim)."""
    freqs = torch.exp(torch.linspace(0, math.log(1 / 64), dim // 2, device=years.device))
    angles = years.unsqueeze(-1) * freqs * 2 * math.pi / 16
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TemporalTransformer(nn.Module):
    def __init__(self, dim: int, layers: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            dim, nhead=max(2, dim // 32), dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, frame_ok: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens, src_key_padding_mask=~frame_ok)


class TemporalGRU(nn.Module):
    """A stack of ``layers`` GRU cells that carries every layer's state unchanged across masked frames.

    Written with cells rather than ``nn.GRU`` because a masked frame must skip the update, not feed zeros.
    """

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.cells = nn.ModuleList(nn.GRUCell(dim, dim) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, frame_ok: torch.Tensor) -> torch.Tensor:
        h = [tokens.new_zeros(tokens.shape[0], tokens.shape[2]) for _ in self.cells]
        states = []
        for t in range(tokens.shape[1]):
            keep = frame_ok[:, t : t + 1].to(tokens.dtype)
            x = tokens[:, t]
            for i, cell in enumerate(self.cells):
                h[i] = keep * cell(x, h[i]) + (1 - keep) * h[i]
                x = h[i]
            states.append(x)
        return torch.stack(states, dim=1)


class SequenceEncoder(nn.Module):
    """(B, T, C, H, W) reflectance + (B, T, H, W) validity + (T,) years -> (B, dim) embedding."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        self.spec = spec
        self.backbone = FrameBackbone(spec.in_channels, spec.widths, spec.dim)
        temporal = {"transformer": TemporalTransformer, "gru": TemporalGRU}[spec.aggregator]
        self.temporal = temporal(spec.dim, spec.layers)
        self.norm = nn.LayerNorm(spec.dim)

    def frame_mask(self, valid: torch.Tensor) -> torch.Tensor:
        return valid.float().mean(dim=(2, 3)) >= self.spec.min_valid_fraction

    def forward(self, x: torch.Tensor, valid: torch.Tensor, years: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        frame_ok = self.frame_mask(valid)
        safe_ok = frame_ok.clone()
        safe_ok[~frame_ok.any(dim=1), 0] = True  # an all-masked sequence would make attention NaN
        tokens = self.backbone(x.flatten(0, 1), valid.flatten(0, 1)).view(b, t, -1)
        tokens = tokens + date_encoding(years.to(tokens.dtype), self.spec.dim).expand(b, t, -1)
        hidden = self.temporal(tokens, safe_ok)
        weights = frame_ok.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.norm(pooled)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
