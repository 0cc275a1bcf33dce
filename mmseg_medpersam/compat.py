"""Make mmsegmentation importable under ``mmcv-lite`` (no compiled ops).

PyPI has no binary wheel of full mmcv 2.x, so this plugin runs on the pure-Python ``mmcv-lite``.
``mmseg.models`` and ``mmseg.datasets`` import ``mmcv.ops`` at import time, whose package
``__init__`` loads the compiled extension ``mmcv._ext``. When that fails we register a stand-in
``mmcv.ops`` package that exposes mmcv's own pure-PyTorch ``point_sample`` (the only op mmseg
needs at import time) and turns every other op into a stub that raises a clear error when used.
With full mmcv installed this is a no-op. It must run before anything imports ``mmseg.models``.

Under the stand-in, mmcv's transformer bricks warn once at import that
``MultiScaleDeformableAttention`` (a compiled op no SAM-family model uses) is unavailable; they
are imported here with that one warning silenced (``quiet_bricks``), so runs stay silent.
"""
from __future__ import annotations

import importlib
import importlib.util
import os.path as osp
import sys
import types
import warnings
from typing import Any, Callable

STAND_IN_ATTR = '__medpersam_stand_in__'


def _missing_op(name: str) -> Callable[..., Any]:
    """A placeholder for a compiled mmcv op that fails loudly when used."""

    def _raise(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f'mmcv.ops.{name} needs the compiled mmcv (mmcv._ext), but mmcv-lite is '
            'installed. mmseg-medpersam does not use it; install full mmcv>=2.0,<2.2 '
            'built for your torch if a model of yours does.')

    _raise.__name__ = name
    return _raise


def _stand_in_ops() -> types.ModuleType:
    import mmcv

    ops = types.ModuleType('mmcv.ops')
    ops.__path__ = [osp.join(osp.dirname(mmcv.__file__), 'ops')]  # submodules resolve
    ops.__file__ = None
    setattr(ops, STAND_IN_ATTR, True)
    sys.modules['mmcv.ops'] = ops
    point_sample = importlib.import_module('mmcv.ops.point_sample')
    ops.point_sample = point_sample.point_sample

    def __getattr__(name: str) -> Any:
        if name.startswith('__'):
            raise AttributeError(name)
        return _missing_op(name)

    ops.__getattr__ = __getattr__  # type: ignore[attr-defined]
    mmcv.ops = ops  # type: ignore[attr-defined]
    return ops


def has_compiled_mmcv_ops() -> bool:
    """Whether the real, compiled ``mmcv.ops`` is importable."""
    module = sys.modules.get('mmcv.ops')
    if module is not None:
        return not getattr(module, STAND_IN_ATTR, False)
    try:
        importlib.import_module('mmcv.ops')
    except (ImportError, OSError):
        for name in [n for n in sys.modules if n == 'mmcv.ops' or n.startswith('mmcv.ops.')]:
            del sys.modules[name]
        return False
    return True


def ensure_mmcv_ops() -> bool:
    """Install the stand-in ``mmcv.ops`` when the compiled one is missing.

    Returns True when the stand-in is (now) in use, False when real mmcv ops are present.
    """
    if importlib.util.find_spec('mmcv') is None:
        raise ImportError(
            'mmseg-medpersam needs mmcv, which is not installed: pip install '
            '"mmseg-medpersam[lite]" (mmcv-lite, pure Python, enough for this plugin) or a full, '
            'compiled mmcv>=2.0,<2.2 (e.g. with mim install mmcv).')
    if has_compiled_mmcv_ops():
        return False
    if 'mmcv.ops' not in sys.modules:
        _stand_in_ops()
    quiet_bricks()
    return True


#: What mmcv's transformer bricks warn at import when the compiled ops are missing.
DEFORM_ATTN_WARNING = 'Fail to import ``MultiScaleDeformableAttention``'


def quiet_bricks() -> None:
    """Import mmcv's transformer bricks (mmseg's models do) without their warning about the
    compiled ``MultiScaleDeformableAttention``, which the stand-in cannot give."""
    if 'mmcv.cnn.bricks.transformer' in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=DEFORM_ATTN_WARNING, category=UserWarning)
        importlib.import_module('mmcv.cnn.bricks.transformer')


USING_STAND_IN_OPS = ensure_mmcv_ops()
