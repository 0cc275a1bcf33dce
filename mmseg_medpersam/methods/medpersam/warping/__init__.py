"""Warping model of Med-PerSAM: flow network, spatial transformer, losses, augmentation."""
from .augment import RandomDeformation
from .flow_net import FlowUNet
from .losses import (
    local_ncc_loss,
    mask_loss,
    mse_loss,
    similarity_loss,
    smoothness_loss,
)
from .spatial_transformer import (
    flow_to_grid,
    identity_grid,
    integrate_velocity,
    resize_flow,
    resize_image,
    warp,
)
from .warping_model import WarpingModel, to_gray, to_mask

__all__ = [
    'FlowUNet', 'WarpingModel', 'RandomDeformation', 'warp', 'resize_flow',
    'resize_image', 'flow_to_grid', 'identity_grid', 'integrate_velocity',
    'local_ncc_loss', 'mse_loss', 'similarity_loss',
    'smoothness_loss', 'mask_loss', 'to_gray', 'to_mask'
]
