"""mmseg-medpersam: one-shot medical segmentation with a frozen SAM, as an mmseg plugin.

Importing the package registers every module (``custom_imports`` in the configs does this).
``compat`` runs first so mmseg's models import under mmcv-lite.
"""
from . import (  # noqa: F401
               compat,  # noqa: F401  (must precede any mmseg.models import)
               datasets,
               engine,
               evaluation,
               heads,
               matching,
               prompts,
               sam,
               segmentors,
               warping,
)
from .version import __version__

__all__ = ['__version__']
