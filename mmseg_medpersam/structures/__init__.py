"""Types that cross the plugin's layers: every error type (``errors``). Nothing here imports
another layer of the package."""
from .errors import (
    CheckpointError,
    ConfigError,
    OneShotDataError,
    OneShotTargetsFailed,
    ReportNotWritten,
    WriteError,
)

__all__ = ['CheckpointError', 'ConfigError', 'OneShotDataError', 'OneShotTargetsFailed',
           'ReportNotWritten', 'WriteError']
