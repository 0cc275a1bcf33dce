"""Test-time engine: the one-shot test loop (fit once, then predict), test hooks, wrapper, and
mmseg's ``MMSegInferencer`` taught the one-shot pipeline (``mmseg_inferencer``)."""
from .hooks import OneShotVisualizationHook, PanelVisualizationHook, SaveMasksHook
from .mmseg_inferencer import enable_mmseg_inferencer
from .test_loop import OneShotTargetsFailed, OneShotTestLoop, ReportNotWritten
from .wrapper import OneShotInferenceWrapper

enable_mmseg_inferencer()

__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed', 'ReportNotWritten', 'SaveMasksHook',
           'PanelVisualizationHook', 'OneShotVisualizationHook', 'OneShotInferenceWrapper']
