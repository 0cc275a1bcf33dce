"""mmseg's ``MMSegInferencer`` on one-shot configs.

``MMSegInferencer`` builds its pipeline from the config's test dataset pipeline and insists on
mmcv's ``LoadImageFromFile`` in it (which it swaps for its own loader of paths and arrays).
A one-shot dataset loads with ``LoadOneShotImage`` (volume slices, DICOM, non-8-bit windowing,
the reference), so mmseg refuses every one-shot config ('LoadImageFromFile is not found in the
test pipeline'); no pipeline can satisfy both that rule and the one-shot dataset.
``enable_mmseg_inferencer`` (run when the plugin is imported, as the configs' ``custom_imports``
do) answers that one refusal: a test pipeline that loads with ``LoadOneShotImage`` gets the
one-shot inference pipeline (``datasets.transforms.inference_pipeline``: a path or array in,
the model's reference). Every other config goes through mmseg's own code unchanged.
"""
from __future__ import annotations

from ..datasets.transforms import inference_pipeline

_PATCHED = '__medpersam_one_shot__'


def enable_mmseg_inferencer() -> None:
    """Give ``MMSegInferencer._init_pipeline`` the one-shot case (idempotent)."""
    from mmcv.transforms import Compose
    from mmseg.apis.mmseg_inferencer import MMSegInferencer

    mmseg_init_pipeline = MMSegInferencer._init_pipeline
    if getattr(mmseg_init_pipeline, _PATCHED, False):
        return

    def _init_pipeline(self, cfg) -> Compose:
        steps = inference_pipeline(cfg.test_dataloader.dataset.pipeline)
        if steps is None:
            return mmseg_init_pipeline(self, cfg)
        return Compose(steps)

    _init_pipeline.__doc__ = mmseg_init_pipeline.__doc__
    setattr(_init_pipeline, _PATCHED, True)
    MMSegInferencer._init_pipeline = _init_pipeline


__all__ = ['enable_mmseg_inferencer']
