"""Every error type of the plugin, and the exit code a tool gives for each.

Errors cross layers (a dataset raises, a tool maps it to an exit code), so their types live
here, below every layer. ``apis.run_tool`` turns them into one line and the code below.
"""
from __future__ import annotations

#: Exit codes of the tools (README, "Exit codes").
EXIT_CHECKPOINT = 2
EXIT_INPUT = 3
EXIT_CONFIG = 4
EXIT_OUTPUT = 5
EXIT_INTERRUPTED = 130


class OneShotDataError(ValueError):
    """An input file cannot be used (unreadable, empty mask, wrong size, unknown labels,
    geometry that does not fit); the message names the file (exit 3)."""


class ConfigError(RuntimeError):
    """A setting of the config or the command line cannot be used (exit 4)."""


class CheckpointError(RuntimeError):
    """A weight file is missing, unreachable, unreadable or of another architecture (exit 2)."""


class OnnxImportError(CheckpointError):
    """An ONNX graph does not have the structure the weight import expects (exit 2: the
    weights cannot be made from it)."""


class WriteError(OSError):
    """An output file could not be written; the message names it and says why (exit 5)."""


class OneShotTargetsFailed(OneShotDataError):
    """Some targets could not be segmented; ``metrics`` covers the others."""

    metrics: dict = {}


class ReportNotWritten(WriteError):
    """The report could not be written; ``metrics`` holds what it would have said (printed
    already, and every target's entry is in the per-image sidecar)."""

    metrics: dict = {}


#: (error type, exit code), most specific first.
EXIT_CODES = ((ConfigError, EXIT_CONFIG), (CheckpointError, EXIT_CHECKPOINT),
              (OneShotDataError, EXIT_INPUT), (WriteError, EXIT_OUTPUT))


def exit_code(err: BaseException) -> int:
    """The documented exit code of one of the plugin's errors (1 for anything else)."""
    return next((code for cls, code in EXIT_CODES if isinstance(err, cls)), 1)


__all__ = ['EXIT_CHECKPOINT', 'EXIT_CODES', 'EXIT_CONFIG', 'EXIT_INPUT', 'EXIT_INTERRUPTED',
           'EXIT_OUTPUT', 'CheckpointError', 'ConfigError', 'OneShotDataError', 'OnnxImportError',
           'OneShotTargetsFailed', 'ReportNotWritten', 'WriteError', 'exit_code']
