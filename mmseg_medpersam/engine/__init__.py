"""Test-time engine: the one-shot (and transductive) test loop."""
from .test_loop import OneShotTargetsFailed, OneShotTestLoop

__all__ = ['OneShotTestLoop', 'OneShotTargetsFailed']
