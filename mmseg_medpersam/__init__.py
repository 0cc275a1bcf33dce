"""mmseg-medpersam: one-shot medical segmentation with a frozen SAM, as an mmseg plugin.

Importing the package registers every module (``custom_imports`` in the configs does this).
``compat`` runs first so mmseg's models import under mmcv-lite.
"""
# ``compat`` must come first (mmseg.models needs it under mmcv-lite); it sorts first too.
from . import (  # noqa: F401
    compat,
    datasets,
    engine,
    evaluation,
    methods,
    prompts,
    sam,
    segmentors,
    utils,
    visualization,
)
from .version import __version__

__all__ = ['__version__']
