"""Command-line helpers shared by the tools."""
from __future__ import annotations

import os
import re
import sys
from typing import Callable, Optional, Tuple

from mmengine.config import DictAction

from ..structures.errors import (  # noqa: F401  (the exit codes, re-exported for the tools)
    EXIT_CHECKPOINT,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    ConfigError,
    exit_code,
)


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


def parse_window(text: Optional[str], flag: str = '--window') -> Optional[Tuple[float, float]]:
    """``LOW,HIGH`` -> (low, high), e.g. ``-160,240``; a bad one is a ``ConfigError``."""
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(','))
    except ValueError:
        raise ConfigError(f'{flag} {text}: expected LOW,HIGH (two numbers), e.g. -160,240')
    if not high > low:
        raise ConfigError(f'{flag} {text}: HIGH must be above LOW')
    return low, high


def parse_cfg_options(items) -> dict:
    """``--cfg-options`` given as ``KEY=VALUE`` strings (a tool parses them after its --help,
    which must not wait for the heavy imports) -> the dict mmengine merges, by
    ``ConfigOptionsAction``'s rule. A dict is returned as it is."""
    if not items:
        return {}
    if isinstance(items, dict):
        return items
    import argparse
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--o', nargs='+', action=ConfigOptionsAction, default={})
    return parser.parse_args(['--o'] + list(items)).o




def config_error_message(err: BaseException) -> str:
    """One line for a bad setting: the innermost message, without the ``class `X` in
    registry/path:`` prefixes mmengine adds at every level of a nested build."""
    text = str(err.args[0]) if err.args else str(err)
    text = text.strip().splitlines()[-1] if text.strip() else type(err).__name__
    return re.sub(r'(class `[^`]+` in [^:]+: )+', '', text)


#: Exit codes of the tools: 2 checkpoint, 3 input, 4 setting, 5 an output cannot be written,
#: 130 interrupted (Ctrl-C; what was finished is kept).
EXIT_OK = 0


def run_tool(main: Callable[[], int]) -> int:
    """Run a tool's body; its errors as one line on stderr and the documented exit code
    (``structures.errors``: 2 checkpoint, 3 input, 4 setting, 5 output, 130 interrupted)."""
    try:
        return main()
    except tuple(cls for cls, _ in EXIT_CODES) as e:
        print(f'error: {e}', file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        print('interrupted: what was finished is kept (files written so far are complete)',
              file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ['ConfigOptionsAction', 'parse_cfg_options', 'ConfigError', 'config_error_message',
           'EXIT_OK', 'EXIT_CHECKPOINT', 'EXIT_INPUT', 'EXIT_CONFIG', 'EXIT_OUTPUT',
           'EXIT_INTERRUPTED', 'run_tool']
