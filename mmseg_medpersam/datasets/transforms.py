"""Pipeline steps that load one-shot task data through ``datasets.io``."""
from __future__ import annotations

from typing import Optional, Sequence

from mmcv.transforms import BaseTransform
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

from .io import check_same_size, load_image, load_label_map

# What the model may see of a target besides its pixels. The target's own mask path is NOT
# here: methods never look at a target's label (the evaluators get it as ``gt_sem_seg``).
ONE_SHOT_META_KEYS = ('img_path', 'sample_idx', 'ori_shape', 'img_shape', 'pad_shape',
                      'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
                      'slice_index', 'axis', 'num_classes', 'window', 'ref_img_path',
                      'ref_seg_map_path', 'ref_slice_index')


@TRANSFORMS.register_module()
class LoadOneShotImage(BaseTransform):
    """Load an image (PNG/JPEG/TIFF of any depth, DICOM, or a NIfTI slice) as HxWx3 uint8 RGB.

    Args:
        window: (low, high) intensity window for non-8-bit data (e.g. a CT window); None uses
            the 0.5/99.5 percentiles of each image (see ``datasets.windowing``).
    """

    def __init__(self, window: Optional[Sequence[float]] = None) -> None:
        self.window = window

    def transform(self, results: dict) -> dict:
        img = load_image(results['img_path'], results.get('slice_index'),
                         results.get('axis', 2), self.window)
        results['img'] = img
        results['window'] = self.window  # the reference is read with the same window
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class LoadOneShotAnnotations(BaseTransform):
    """Load the ground-truth label map with the one-shot label rule (``datasets.io``)."""

    def transform(self, results: dict) -> dict:
        labels = load_label_map(results['seg_map_path'], int(results.get('num_classes', 2)),
                                results.get('slice_index'), results.get('axis', 2),
                                allow_ignore=True)
        if 'img' in results:
            check_same_size(results['img'], labels, results['img_path'],
                            results['seg_map_path'])
        results['gt_seg_map'] = labels
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results


@TRANSFORMS.register_module()
class PackOneShotInputs(PackSegInputs):
    """``PackSegInputs`` that also keeps the one-shot keys (reference, slice, window, classes)."""

    def __init__(self, meta_keys: Sequence[str] = ONE_SHOT_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))
