"""A dataset's targets as the model sees them (the fit's and the tools'), without their labels.

The targets of a transductive fit are loaded by the dataset's pipeline minus its annotation
loader: the fit never depends on a label file (an unreadable ground truth skips that target's
score, not its place in the fit).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from torch import Tensor

from ..datasets.transforms import LoadOneShotAnnotations
from ..structures.errors import OneShotDataError
from ..utils.padding import crop_padding


def unlabeled_sample(dataset, index: int) -> dict:
    """Sample ``index`` of ``dataset`` through its pipeline without ``LoadOneShotAnnotations``."""
    results = dataset.get_data_info(index)
    for transform in dataset.pipeline.transforms:
        if not isinstance(transform, LoadOneShotAnnotations):
            results = transform(results)
    return results


def preprocess_targets(dataset, model, collate: Callable, count: Optional[int] = None,
                       failures: Optional[List[str]] = None
                       ) -> Tuple[List[Tensor], List[dict]]:
    """Each of the first ``count`` targets of ``dataset`` through ``collate`` and the model's
    preprocessor, cropped to its image (the test loop's view of a target)."""
    images, metas = [], []
    for i in range(len(dataset) if count is None else min(count, len(dataset))):
        try:
            batch = collate([unlabeled_sample(dataset, i)])
        except OneShotDataError as e:
            if failures is None:
                raise
            failures.append(str(e))
            continue
        data = model.data_preprocessor(batch, False)
        for img, sample in zip(data['inputs'], data['data_samples']):
            images.append(crop_padding(img, sample.metainfo).float())
            metas.append(sample.metainfo)
    return images, metas


__all__ = ['preprocess_targets', 'unlabeled_sample']
