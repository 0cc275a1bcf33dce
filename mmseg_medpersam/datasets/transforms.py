"""Pipeline steps that load one-shot task data through ``datasets.loading`` and
``datasets.labels``."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

from ..structures.errors import OneShotDataError
from ..structures.references import REFERENCES_KEY, OneShotReferences
from .labels import check_same_size, load_label_map, load_reference
from .loading import load_image

# What the model may see of a target besides its pixels. The target's own mask path is NOT
# here: methods never look at a target's label (the evaluators get it as ``gt_sem_seg``).
# The references (``OneShotReferences``: their files and, loaded, their pixels) travel with
# every sample: the model reads no file.
ONE_SHOT_META_KEYS = ('img_path', 'sample_idx', 'ori_shape', 'img_shape', 'pad_shape',
                      'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
                      'slice_index', 'axis', 'num_classes', REFERENCES_KEY, 'target_name')


@TRANSFORMS.register_module()
class LoadOneShotImage(BaseTransform):
    """Load a target image and its task's labelled references, all with one window.

    Images may be PNG/JPEG/TIFF of any depth, DICOM, or NIfTI slices; they become HxWx3 uint8
    RGB. The references (``OneShotReferences``, which one-shot datasets attach: the files of
    each) are loaded once and handed to every sample with their pixels (``images``,
    ``label_maps``), so images and references are read by the same rule.

    Args:
        window: (low, high) intensity window for non-8-bit data (e.g. a CT window); None uses
            the 0.5/99.5 percentiles of each image (see ``datasets.windowing``).
    """

    def __init__(self, window: Optional[Sequence[float]] = None) -> None:
        self.window = window
        self._references: Dict[tuple, Tuple[np.ndarray, np.ndarray]] = {}

    def load_references(self, results: dict) -> OneShotReferences:
        """The sample's references with their pixels, each file read once per run."""
        refs = OneShotReferences.of(results)
        if not refs:
            raise OneShotDataError(
                'no reference: use a one-shot dataset that attaches one '
                '(OneShotFolderDataset, NiftiSliceDataset, the embedded tasks).')
        images, labels = [], []
        for ref in refs:
            key = (ref.img_path, ref.seg_map_path, ref.slice_index,
                   results.get('axis'), int(results.get('num_classes', 2)))
            if key not in self._references:
                self._references[key] = load_reference(
                    key[0], key[1], key[4], key[2], key[3], self.window)
            images.append(self._references[key][0])
            labels.append(self._references[key][1])
        return refs.with_pixels(images, labels)

    def transform(self, results: dict) -> dict:
        img = load_image(results['img_path'], results.get('slice_index'),
                         results.get('axis'), self.window)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        results[REFERENCES_KEY] = self.load_references(results)
        return results


@TRANSFORMS.register_module()
class LoadOneShotAnnotations(BaseTransform):
    """Load the ground-truth label map with the one-shot label rule (``datasets.labels``)."""

    def transform(self, results: dict) -> dict:
        labels = load_label_map(results['seg_map_path'], int(results.get('num_classes', 2)),
                                results.get('slice_index'), results.get('axis'),
                                allow_ignore=True, image_path=results.get('img_path'))
        if 'img' in results:
            check_same_size(results['img'], labels, results['img_path'],
                            results['seg_map_path'])
        results['gt_seg_map'] = labels
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results


@TRANSFORMS.register_module()
class PackOneShotInputs(PackSegInputs):
    """``PackSegInputs`` that also keeps the one-shot keys (reference, slice, classes)."""

    def __init__(self, meta_keys: Sequence[str] = ONE_SHOT_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))


@TRANSFORMS.register_module()
class LoadOneShotTarget(BaseTransform):
    """An image to segment, without label or reference: the first step of the pipeline mmseg's
    inference API runs (``inference_model``'s ``test_pipeline``, ``MMSegInferencer``).

    Takes what mmseg's API hands over: a path (any file ``LoadOneShotImage`` reads; a dict with
    ``img_path`` and ``slice_index`` for a slice of a volume), or an array, raw or in
    ``results['img']`` (as mmseg's ``LoadImageFromNDArray``, which ``inference_model`` puts in
    this step's place for arrays, leaves it). A path is read here as HxWx3 uint8 RGB by the
    windowing rule; an array is formatted by ``FormatOneShotTarget``, the next step. The
    reference is the model's (its config's test dataset, or ``model.set_reference``).

    Args:
        window: (low, high) intensity window for non-8-bit data; None: per-image percentiles.
    """

    def __init__(self, window: Optional[Sequence[float]] = None) -> None:
        self.window = window

    def transform(self, results) -> dict:
        if isinstance(results, str):
            results = dict(img_path=results)
        elif isinstance(results, np.ndarray):
            results = dict(img=results)
        else:
            results = dict(results)
        if results.get('img') is None:
            axis = {} if results.get('axis') is None else dict(axis=results['axis'])
            img = load_image(results['img_path'], results.get('slice_index'),
                             window=self.window, **axis)
            results.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        else:
            results['img_path'] = None  # an array: the segmentor names it by its pixels
        return results


@TRANSFORMS.register_module()
class FormatOneShotTarget(BaseTransform):
    """An image array of any dtype, (H, W) or (H, W, C) RGB, checked and made HxWx3 uint8 RGB
    by the windowing rule (``datasets.windowing``); an 8-bit RGB image passes unchanged.

    Args:
        window: (low, high) intensity window for non-8-bit data; None: per-image percentiles.
    """

    def __init__(self, window: Optional[Sequence[float]] = None) -> None:
        self.window = window

    def transform(self, results: dict) -> dict:
        from .windowing import to_uint8_rgb
        data = np.asarray(results['img'])
        if data.ndim not in (2, 3) or min(data.shape[:2]) < 2:
            raise OneShotDataError(f'an image array must be (H, W) or (H, W, C) with sides of '
                                   f'at least 2 pixels, got shape {data.shape}.')
        if data.dtype == bool or not np.issubdtype(data.dtype, np.number):
            raise OneShotDataError(f'an image array must hold numbers, got {data.dtype}.')
        if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).any():
            raise OneShotDataError('the image array has no finite value (all NaN or inf).')
        try:
            img = to_uint8_rgb(data, self.window)
        except ValueError as e:
            raise OneShotDataError(f'image array: {e}') from e
        results.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return results


#: What mmseg's inference API runs for a one-shot config: an image path or array in, no label
#: (``LoadOneShotAnnotations`` is left out), the one-shot keys packed.
INFERENCE_PIPELINE = (dict(type='LoadOneShotTarget'), dict(type='FormatOneShotTarget'),
                      dict(type='PackOneShotInputs'))


def inference_pipeline(pipeline: Sequence[dict]) -> Optional[list]:
    """The inference pipeline for a one-shot dataset ``pipeline`` (its ``LoadOneShotImage``'s
    window kept); None when ``pipeline`` does not load with ``LoadOneShotImage``."""
    loaders = [dict(step) for step in pipeline if step.get('type') == 'LoadOneShotImage']
    if not loaders:
        return None
    steps = [dict(step) for step in INFERENCE_PIPELINE]
    if loaders[0].get('window') is not None:
        steps[0]['window'] = steps[1]['window'] = loaders[0]['window']
    return steps
