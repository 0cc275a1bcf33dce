"""Segmentors run under mmengine's Runner: the one-shot segmentor and the oracle reference."""
from .one_shot_sam import OneShotSAMSegmentor, ReferenceSet, sample_key
from .oracle_box import OracleBoxSegmentor

__all__ = ['OneShotSAMSegmentor', 'OracleBoxSegmentor', 'ReferenceSet', 'sample_key']
