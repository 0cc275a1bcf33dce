"""Test-time engine: the one-shot test loop and the one transductive procedure."""
from .test_loop import OneShotTargetsFailed, OneShotTestLoop
from .transductive import fit_transductive

__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed', 'fit_transductive']
