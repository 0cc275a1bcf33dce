"""Matcher's own dependencies (timm, POT, scikit-learn): the ``[matcher]`` extra."""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: import name -> PyPI name, of what Matcher needs beyond the plugin's core.
MATCHER_PACKAGES = {'timm': 'timm', 'ot': 'POT', 'sklearn': 'scikit-learn'}


def require_matcher_package(name: str) -> ModuleType:
    """Import one of Matcher's packages, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f'Matcher needs {MATCHER_PACKAGES[name]}, which is not installed: '
                          'pip install "mmseg-medpersam[matcher]"') from e


def check_matcher_packages() -> None:
    """Every Matcher package importable (a head checks this when it is built)."""
    for name in MATCHER_PACKAGES:
        if importlib.util.find_spec(name) is None:
            require_matcher_package(name)


__all__ = ['MATCHER_PACKAGES', 'require_matcher_package', 'check_matcher_packages']
