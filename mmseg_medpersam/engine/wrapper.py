"""The model wrapper of multi-process one-shot runs: no gradient synchronisation.

mmengine wraps a model in ``DistributedDataParallel`` when a run has several processes; DDP
refuses modules without trainable parameters (a frozen SAM with PerSAM's head has none) and
would synchronise gradients nobody needs. Testing only needs each rank to run its own copy on
its shard of the targets; the test loop shares the transductive fit and the evaluator gathers
the metrics.
"""
from __future__ import annotations

import torch.nn as nn
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class OneShotInferenceWrapper(nn.Module):
    """Holds the model as ``module`` (mmengine's wrapper convention) and runs it as is."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def test_step(self, data):
        return self.module.test_step(data)

    def val_step(self, data):
        return self.module.val_step(data)

    def train_step(self, data, optim_wrapper):
        raise NotImplementedError('one-shot segmentors are never trained by the Runner')

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


__all__ = ['OneShotInferenceWrapper']
