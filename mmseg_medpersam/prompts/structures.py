"""``Prompts``: one batch of SAM prompt sets for one image, in the image's own pixels."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..sam.backend import DecoderHook, DecoderOutput, ImageEmbedding, SAMBackend
from ..sam.geometry import FrameGeometry


@dataclass
class Prompts:
    """B prompt sets for one target image; every field is optional.

    Coordinates are in the ORIGINAL image's pixels (x, y); the backend maps them to its
    frame. ``mask_logits`` are already over the model's padded frame (B,1,256,256), as SAM's
    ``mask_input``. ``decoder_hook`` changes the decoder itself (e.g. PerSAM's
    ``PerSAMDecoderHook``) and applies to every set.

    Attributes:
        point_coords: (B, N, 2) float xy pixels.
        point_labels: (B, N) long; 1 foreground, 0 background, -1 not a point.
        boxes: (B, 4) float xyxy pixels.
        mask_logits: (B, 1, m, m) float logits over the padded frame (m = 256).
        decoder_hook: a ``sam.DecoderHook`` the decoder runs under, or None.
    """

    point_coords: Optional[Tensor] = None
    point_labels: Optional[Tensor] = None
    boxes: Optional[Tensor] = None
    mask_logits: Optional[Tensor] = None
    decoder_hook: Optional[DecoderHook] = None

    def __post_init__(self) -> None:
        if (self.point_coords is None) != (self.point_labels is None):
            raise ValueError('point_coords and point_labels must be given together')
        sizes = {name: getattr(self, name).shape[0]
                 for name in ('point_coords', 'point_labels', 'boxes', 'mask_logits')
                 if getattr(self, name) is not None}
        if len({n for n in sizes.values() if n != 1}) > 1:
            raise ValueError(f'prompt fields disagree on the number of prompt sets: {sizes}')
        if self.point_coords is not None:
            if self.point_coords.ndim != 3 or self.point_coords.shape[-1] != 2:
                raise ValueError(
                    f'point_coords must be (B,N,2), got {tuple(self.point_coords.shape)}')
            if self.point_labels.shape != self.point_coords.shape[:2]:
                raise ValueError('point_labels must be (B,N) like point_coords')
        if self.boxes is not None and (self.boxes.ndim != 2 or self.boxes.shape[-1] != 4):
            raise ValueError(f'boxes must be (B,4), got {tuple(self.boxes.shape)}')
        if self.mask_logits is not None and (
                self.mask_logits.ndim != 4 or self.mask_logits.shape[1] != 1
                or self.mask_logits.shape[2] != self.mask_logits.shape[3]):
            raise ValueError(
                f'mask_logits must be (B,1,256,256), got {tuple(self.mask_logits.shape)}')

    @property
    def num_sets(self) -> int:
        """Number of prompt sets B (1 when only hooks or nothing are given)."""
        sizes = [getattr(self, n).shape[0] for n in ('point_coords', 'boxes', 'mask_logits')
                 if getattr(self, n) is not None]
        return max(sizes) if sizes else 1

    @property
    def is_empty(self) -> bool:
        """True when no point, box or mask is given (hooks alone do not locate anything)."""
        return self.point_coords is None and self.boxes is None and self.mask_logits is None

    def expand(self, num_sets: int) -> 'Prompts':
        """Broadcast single-set fields to ``num_sets`` sets."""

        def _expand(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None or t.shape[0] == num_sets:
                return t
            if t.shape[0] != 1:
                raise ValueError(f'cannot broadcast {t.shape[0]} prompt sets to {num_sets}')
            return t.expand(num_sets, *t.shape[1:])

        return replace(self, point_coords=_expand(self.point_coords),
                       point_labels=_expand(self.point_labels), boxes=_expand(self.boxes),
                       mask_logits=_expand(self.mask_logits))

    @classmethod
    def merge(cls, parts: Iterable['Prompts']) -> 'Prompts':
        """Combine the outputs of several prompt generators into one ``Prompts``.

        Points are concatenated set by set; a box, a mask and a decoder hook may each come
        from one generator only.
        """
        parts = [p for p in parts if p is not None]
        if not parts:
            return cls()
        num_sets = max(p.num_sets for p in parts)
        parts = [p.expand(num_sets) for p in parts]
        merged: Dict[str, Any] = {}
        for name in ('boxes', 'mask_logits', 'decoder_hook'):
            given = [getattr(p, name) for p in parts if getattr(p, name) is not None]
            if len(given) > 1:
                raise ValueError(f'two prompt generators both produced {name}; keep one')
            merged[name] = given[0] if given else None
        coords = [p.point_coords for p in parts if p.point_coords is not None]
        labels = [p.point_labels for p in parts if p.point_labels is not None]
        if coords:
            merged['point_coords'] = torch.cat(coords, dim=1)
            merged['point_labels'] = torch.cat(labels, dim=1)
        return cls(**merged)

    def select(self, index: Tensor) -> 'Prompts':
        """Keep the prompt sets at ``index`` (the hook is shared by all sets)."""

        def _take(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None:
                return None
            return t if t.shape[0] == 1 else t[index]

        return replace(self, point_coords=_take(self.point_coords),
                       point_labels=_take(self.point_labels), boxes=_take(self.boxes),
                       mask_logits=_take(self.mask_logits))

    def restrict_to_boxes(self, geometry: FrameGeometry) -> 'Prompts':
        """Each set's points and mask logits kept inside that set's box.

        With one box per component (B sets), set k should be about component k only: points
        outside box k become padding (label -1) and mask logits outside it are set to the
        set's minimum (certain background). A no-op without several boxes.
        """
        if self.boxes is None or self.boxes.shape[0] < 2:
            return self
        out = self.expand(self.boxes.shape[0])
        labels, logits = out.point_labels, out.mask_logits
        if labels is not None:
            x, y = out.point_coords[..., 0], out.point_coords[..., 1]
            b = out.boxes[:, None, :]
            inside = (x >= b[..., 0]) & (x <= b[..., 2]) & (y >= b[..., 1]) & (y <= b[..., 3])
            labels = torch.where(inside, labels, torch.full_like(labels, -1))
        if logits is not None:
            m = logits.shape[-1]
            frame = geometry.boxes_to_frame(out.boxes.float()) * (m / geometry.frame_size)
            grid = torch.arange(m, device=logits.device, dtype=torch.float32) + 0.5
            inx = (grid[None, :] >= frame[:, 0:1]) & (grid[None, :] <= frame[:, 2:3] + 1)
            iny = (grid[None, :] >= frame[:, 1:2]) & (grid[None, :] <= frame[:, 3:4] + 1)
            keep = (iny[:, :, None] & inx[:, None, :])[:, None]
            floor = logits.amin(dim=(1, 2, 3), keepdim=True)
            logits = torch.where(keep, logits, floor.expand_as(logits))
        return replace(out, point_labels=labels, mask_logits=logits)

    def to(self, device: torch.device) -> 'Prompts':
        """Move every tensor to ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), Tensor)})

    def to_numpy(self) -> Dict[str, np.ndarray]:
        """Points, labels and boxes as numpy arrays (what is stored with a prediction)."""
        out = {}
        for name in ('point_coords', 'point_labels', 'boxes'):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.detach().cpu().numpy()
        return out


def decode_prompts(sam: SAMBackend, emb: ImageEmbedding, prompts: Prompts,
                   multimask: bool = True) -> DecoderOutput:
    """Decode every set of ``prompts`` on ``emb`` in one call of the backend."""
    return sam.decode(emb, prompts.point_coords, prompts.point_labels, prompts.boxes,
                      prompts.mask_logits, multimask=multimask,
                      decoder_hook=prompts.decoder_hook)


def decode_union(sam: SAMBackend, emb: ImageEmbedding, prompts: Prompts,
                 multimask: bool = True) -> Tuple[Tensor, Tensor]:
    """One mask from B prompt sets about parts of one structure (e.g. one box per component).

    The sets are decoded in one batch (each set's prompts restricted to its box), each set's
    best output by predicted IoU is kept, and the parts are merged: the union of the masks,
    as the maximum of the logits. Returns (1, 1, 256, 256) logits and each set's (B,) IoU.
    """
    prompts = prompts.restrict_to_boxes(emb.geometry)
    logits, iou = decode_prompts(sam, emb, prompts, multimask=multimask).best()
    return logits.amax(dim=0, keepdim=True), iou


def points_prompt(coords: Tensor, labels: Tensor) -> Prompts:
    """One prompt set from (N,2) xy points and (N,) labels."""
    return Prompts(point_coords=coords.reshape(1, -1, 2).float(),
                   point_labels=labels.reshape(1, -1).long())
