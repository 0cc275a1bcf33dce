"""Segmentors run under mmengine's Runner (and mmseg's ``init_model`` / ``tools/test.py``).

* ``base.py``: what they share: predictions without target labels, raw SAM checkpoints
  loaded into the backend, mmseg's builder arguments;
* ``one_shot_sam.py``: ``OneShotSAMSegmentor``: the reference -> the method's fit -> per
  class the method's prediction -> one label map;
* ``oracle_box.py``: ``OracleBoxSegmentor``: SAM prompted with each target's ground-truth box,
  the upper reference for tables and the one reader of target labels.
"""
from .base import OneShotSegmentorBase, without_labels
from .one_shot_sam import OneShotSAMSegmentor, ReferenceSet
from .oracle_box import OracleBoxSegmentor

__all__ = ['OneShotSegmentorBase', 'OneShotSAMSegmentor', 'OracleBoxSegmentor',
           'ReferenceSet', 'without_labels']
