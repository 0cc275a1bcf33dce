"""The one-shot segmentor that runs a head on a frozen SAM under mmengine's Runner."""
from .one_shot_sam import OneShotSAMSegmentor, ReferenceSet, sample_key

__all__ = ['OneShotSAMSegmentor', 'ReferenceSet', 'sample_key']
