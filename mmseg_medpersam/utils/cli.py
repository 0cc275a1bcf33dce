"""Command-line helpers shared by the tools."""
from __future__ import annotations

import os

from mmengine.config import DictAction


class ConfigOptionsAction(DictAction):
    """mmengine's ``--cfg-options key=value`` parser, without losing spaces in plain values.

    mmengine removes every space of a value before parsing it, so a path such as
    ``/data/my scans`` becomes ``/data/myscans``. Here a value is parsed as a list or tuple
    only when it is bracketed, or is a bare comma list (``4,6``) with no space or path
    separator; any other value keeps its characters (numbers, booleans and None are still
    recognised).
    """

    @staticmethod
    def _parse_iterable(val: str):
        text = val.strip()
        bracketed = text[:1] in '[(' and text[-1:] in '])'
        bare_list = ',' in text and ' ' not in text and os.sep not in text
        if bracketed or bare_list:
            return DictAction._parse_iterable(text)
        return DictAction._parse_int_float_bool(text.strip('\'"'))


__all__ = ['ConfigOptionsAction']
