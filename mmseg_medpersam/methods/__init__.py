"""The methods: each folder owns one method's whole procedure (fit -> predict).

* ``base.py``: ``BaseOneShotHead`` (the interface every method implements), ``HeadResult``,
  ``TargetImage`` and the fitted-state types' base;
* ``refinement.py``: SAM-output helpers shared by the methods (cascaded refinement, logits to
  masks and to the image);
* ``medpersam/``: Med-PerSAM: the warping model (``warping/``: flow network, spatial
  transformer, losses, augmentation) and ``head.py``, which owns the transductive fit, the
  refinement with its guard, the retraining rounds and their pseudo-label rule;
* ``persam/``: PerSAM and PerSAM-F: the location prior, the decoder hook, both heads, the
  multimask fusion PerSAM-F fits;
* ``matcher/``: Matcher: DINOv2 (or SAM-encoder) features, patch matching, the robust sampler,
  instance-level scoring and the head.

Methods import only ``prompts``, ``sam`` and ``utils`` (the layers below them); the
segmentor above calls them. The ground-truth-box oracle is a segmentor
(``segmentors/oracle_box.py``): it is the one reader of target labels.
"""
from .base import BaseOneShotHead, FitState, HeadResult, TargetImage
from .matcher import MatcherHead, MatcherPromptSampler
from .medpersam import MedPerSAMHead, WarpingModel
from .persam import PerSAMDecoderHook, PerSAMFHead, PerSAMHead, PerSAMLocationPrior
from .refinement import cascaded_refinement, logits_to_mask, to_image_logits

__all__ = ['BaseOneShotHead', 'FitState', 'HeadResult', 'TargetImage', 'PerSAMHead',
           'PerSAMFHead', 'PerSAMLocationPrior', 'PerSAMDecoderHook', 'MatcherHead',
           'MatcherPromptSampler', 'MedPerSAMHead', 'WarpingModel', 'cascaded_refinement',
           'logits_to_mask', 'to_image_logits']
