"""The one writer of predicted label maps as PNG files (``--out-masks`` and mmseg's ``--out``)."""
from __future__ import annotations

import os.path as osp

import numpy as np

from .atomic import atomic_write_png
from .naming import prediction_name


def write_prediction_png(out_dir: str, sample) -> str:
    """A sample's ``pred_sem_seg`` as ``out_dir/<prediction name>.png`` (class indices, uint8),
    written atomically; returns the path."""
    path = osp.join(out_dir, prediction_name(sample.metainfo) + '.png')
    atomic_write_png(path, sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8))
    return path


__all__ = ['write_prediction_png']
