"""The one rule for a batch-padded image: its own pixels are the top-left ``img_shape``."""
from __future__ import annotations

from typing import Tuple

from torch import Tensor


def image_size(image: Tensor, metainfo: dict) -> Tuple[int, int]:
    """``(h, w)`` of the image before the data preprocessor padded it into a batch: mmseg's
    ``img_shape``, else the tensor's own size (nothing was padded)."""
    h, w = metainfo.get('img_shape', image.shape[-2:])
    return int(h), int(w)


def crop_padding(image: Tensor, metainfo: dict) -> Tensor:
    """The ``(..., h, w)`` pixels of the image itself, without the batch padding."""
    h, w = image_size(image, metainfo)
    return image[..., :h, :w]


__all__ = ['image_size', 'crop_padding']
