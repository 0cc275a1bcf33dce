"""Segmentors run under mmengine's Runner (and mmseg's ``init_model`` / ``tools/test.py``).

* ``base.py``: what they share: predictions without target labels, raw SAM checkpoints
  loaded into the backend, mmseg's builder arguments;
* ``one_shot_sam.py``: ``OneShotSAMSegmentor``: the reference -> the method's fit -> per
  class the method's prediction -> one label map;
* ``oracle_box.py``: ``OracleBoxSegmentor``: SAM prompted with each target's ground-truth box,
  the upper reference for tables and the one reader of target labels;
* ``mmseg_api.py``: what mmseg's ``init_model`` / ``inference_model`` / ``MMSegInferencer``
  need: raw SAM-family files read as checkpoints with a ``meta`` (registered with mmengine's
  checkpoint loaders here), the config's task and reference.
"""
from .base import OneShotSegmentorBase, without_labels
from .mmseg_api import register_checkpoint_loaders
from .one_shot_sam import OneShotSAMSegmentor, ReferenceSet
from .oracle_box import OracleBoxSegmentor

register_checkpoint_loaders()

__all__ = ['OneShotSegmentorBase', 'OneShotSAMSegmentor', 'OracleBoxSegmentor',
           'ReferenceSet', 'without_labels']
