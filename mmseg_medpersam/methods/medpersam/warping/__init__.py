"""Warping model of Med-PerSAM: the network (``warping_model``), its fitting (``fitter``), typed
settings, one intensity rule, spatial transformer, losses, augmentation."""
from .augment import RandomDeformation
from .fitter import WarpFitter
from .flow_net import FlowUNet
from .intensity import to_gray, to_mask
from .losses import (
    local_ncc_loss,
    mask_loss,
    mse_loss,
    similarity_loss,
    smoothness_loss,
)
from .settings import LossSettings, NetworkSettings, ScheduleSettings
from .spatial_transformer import (
    flow_to_grid,
    identity_grid,
    integrate_velocity,
    resize_flow,
    resize_image,
    warp,
)
from .warping_model import WarpingModel

__all__ = [
    'FlowUNet', 'WarpingModel', 'WarpFitter', 'NetworkSettings', 'LossSettings',
    'ScheduleSettings', 'RandomDeformation', 'warp', 'resize_flow',
    'resize_image', 'flow_to_grid', 'identity_grid', 'integrate_velocity',
    'local_ncc_loss', 'mse_loss', 'similarity_loss',
    'smoothness_loss', 'mask_loss', 'to_gray', 'to_mask'
]
