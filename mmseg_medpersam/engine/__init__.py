"""Test-time engine: the one-shot test loop (fit once, then predict), test hooks, wrapper."""
from .hooks import OneShotVisualizationHook, PanelVisualizationHook, SaveMasksHook
from .test_loop import OneShotTargetsFailed, OneShotTestLoop, ReportNotWritten
from .wrapper import OneShotInferenceWrapper

__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed', 'ReportNotWritten', 'SaveMasksHook',
           'PanelVisualizationHook', 'OneShotVisualizationHook', 'OneShotInferenceWrapper']
