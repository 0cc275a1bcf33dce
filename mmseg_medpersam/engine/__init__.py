"""Test-time engine: the one-shot test loop, the one transductive procedure, test hooks."""
from .hooks import PanelVisualizationHook, SaveMasksHook
from .test_loop import OneShotTargetsFailed, OneShotTestLoop
from .transductive import fit_transductive
from .wrapper import OneShotInferenceWrapper

__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed', 'fit_transductive', 'SaveMasksHook',
           'PanelVisualizationHook', 'OneShotInferenceWrapper']
