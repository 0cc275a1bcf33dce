"""PerSAM and PerSAM-F (Zhang et al.): the location prior (``location_prior.py``), the decoder
hook (``decoder_hook.py``: target-guided attention and target-semantic prompting), the two
heads, and the multimask fusion PerSAM-F fits on the reference (``multimask_fusion.py``)."""
from .decoder_hook import PerSAMDecoderHook
from .location_prior import PerSAMLocationPrior
from .multimask_fusion import MultimaskFusion, fit_multimask_fusion
from .persam_f_head import PerSAMFHead
from .persam_head import PerSAMHead

__all__ = ['PerSAMDecoderHook', 'PerSAMLocationPrior', 'MultimaskFusion',
           'fit_multimask_fusion', 'PerSAMHead', 'PerSAMFHead']
