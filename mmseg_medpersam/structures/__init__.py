"""Types that cross the plugin's layers: every error type (``errors``), a sample's labelled
references (``references``), the prompts stored with a prediction (``prompt_record``), label
values with a meaning (``labels``). Nothing here imports another layer of the package."""
from .errors import (
    CheckpointError,
    ConfigError,
    OneShotDataError,
    OneShotTargetsFailed,
    OnnxImportError,
    ReportNotWritten,
    WriteError,
)
from .prompt_record import PROMPTS_KEY, PromptRecord
from .references import REFERENCES_KEY, OneShotReferences, ReferenceFile

__all__ = ['CheckpointError', 'ConfigError', 'OneShotDataError', 'OneShotTargetsFailed',
           'OnnxImportError', 'ReportNotWritten', 'WriteError', 'REFERENCES_KEY',
           'OneShotReferences', 'ReferenceFile', 'PROMPTS_KEY', 'PromptRecord']
