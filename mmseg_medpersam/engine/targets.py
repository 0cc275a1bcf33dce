"""A dataset's targets as the model sees them (the test loop's, the fit's and the tools')."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from torch import Tensor

from ..datasets.io import OneShotDataError


def preprocess_targets(dataset, model, collate: Callable, count: Optional[int] = None,
                       failures: Optional[List[str]] = None
                       ) -> Tuple[List[Tensor], List[dict]]:
    """Each of the first ``count`` targets of ``dataset`` through ``collate`` and the model's
    preprocessor, cropped to its image (the test loop's view of a target)."""
    images, metas = [], []
    for i in range(len(dataset) if count is None else min(count, len(dataset))):
        try:
            batch = collate([dataset[i]])
        except OneShotDataError as e:
            if failures is None:
                raise
            failures.append(str(e))
            continue
        data = model.data_preprocessor(batch, False)
        for img, sample in zip(data['inputs'], data['data_samples']):
            h, w = sample.metainfo.get('img_shape', img.shape[-2:])
            images.append(img[:, :h, :w].float())
            metas.append(sample.metainfo)
    return images, metas


__all__ = ['preprocess_targets']
