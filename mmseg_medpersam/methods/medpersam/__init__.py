"""Med-PerSAM: the warping model (``warping/``) and the head that owns its procedure
(``head.py``: fit the warp on the unlabeled targets, prompt SAM from the warped mask, refine,
retrain on the trusted refinements)."""
from .head import MedPerSAMHead, MedPerSAMState
from .warping import WarpingModel

__all__ = ['MedPerSAMHead', 'MedPerSAMState', 'WarpingModel']
