"""Types that cross the plugin's layers: every error type (``errors``), a sample's labelled
references (``references``), label values with a meaning (``labels``). Nothing here imports
another layer of the package."""
from .errors import (
    CheckpointError,
    ConfigError,
    OneShotDataError,
    OneShotTargetsFailed,
    ReportNotWritten,
    WriteError,
)
from .references import REFERENCES_KEY, OneShotReferences, ReferenceFile

__all__ = ['CheckpointError', 'ConfigError', 'OneShotDataError', 'OneShotTargetsFailed',
           'ReportNotWritten', 'WriteError', 'REFERENCES_KEY', 'OneShotReferences',
           'ReferenceFile']
