"""DINOv2 patch-feature encoder for the Matcher baseline, built through timm.

Matcher feeds a square-resized, ImageNet-normalised image to DINOv2 and matches the patch
tokens taken *before* the final LayerNorm (``x_prenorm``), L2-normalised. The network comes
from timm (a well-kept library); weights come from a user-given local file, in timm or in the
official facebookresearch/dinov2 key layout. Unlike the official loader (``strict=False``), a
wrong file fails loudly here.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.registry import MODELS

from ...utils.checkpoint import CheckpointError, read_file, strict_load, unwrap_state_dict
from ...utils.imagenet import IMAGENET_MEAN, IMAGENET_STD
from .requirements import require_matcher_package

#: timm model names of the DINOv2 backbones (no register tokens, as in Matcher).
DINOV2_ARCHS: Dict[str, str] = {
    'vit_s14': 'vit_small_patch14_dinov2',
    'vit_b14': 'vit_base_patch14_dinov2',
    'vit_l14': 'vit_large_patch14_dinov2',
    'vit_g14': 'vit_giant_patch14_dinov2',
}

#: A very small random ViT/14 with the same interfaces, for tests and CI.
TINY_ARCH = dict(patch_size=14, embed_dim=32, depth=2, num_heads=2, init_values=1e-5)

_WRAPPER_KEYS = ('teacher', 'student', 'model', 'state_dict')
_PREFIXES = ('module.', 'backbone.', 'encoder.')


def build_dinov2_vit(arch: str, img_size: int = 518) -> nn.Module:
    """Build a timm VisionTransformer for ``arch`` (random init, no classifier head)."""
    timm = require_matcher_package('timm')
    from timm.models.vision_transformer import VisionTransformer

    if arch == 'tiny':
        return VisionTransformer(img_size=img_size, num_classes=0, **TINY_ARCH)
    if arch not in DINOV2_ARCHS:
        raise ValueError(
            f'Unknown DINOv2 arch {arch!r}; choose from {sorted(DINOV2_ARCHS) + ["tiny"]}.')
    return timm.create_model(
        DINOV2_ARCHS[arch], pretrained=False, img_size=img_size, num_classes=0)


def convert_dinov2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map official DINOv2 (or timm) keys to timm's VisionTransformer names.

    Official and timm names agree except: ``mask_token`` (training only, dropped), chunked
    blocks ``blocks.<chunk>.<i>.`` (flattened) and the giant's SwiGLU ``mlp.w12``/``mlp.w3``
    (timm's packed ``mlp.fc1``/``mlp.fc2``). ``module.``/``backbone.`` prefixes are stripped.
    """
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key == 'mask_token':
            continue
        key = re.sub(r'^blocks\.\d+\.(\d+)\.', r'blocks.\1.', key)
        key = re.sub(r'\.mlp\.w12\.', '.mlp.fc1.', key)
        key = re.sub(r'\.mlp\.w3\.', '.mlp.fc2.', key)
        out[key] = value
    return out


def _resize_pos_embed(pos_embed: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Bicubically resize a (1, 1 + g*g, C) position embedding to the model's patch grid."""
    from timm.layers import resample_abs_pos_embed

    target = model.pos_embed
    if pos_embed.shape == target.shape:
        return pos_embed
    num_prefix = 0 if getattr(model, 'no_embed_class', False) else model.num_prefix_tokens
    return resample_abs_pos_embed(
        pos_embed, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=num_prefix)


OFFICIAL_FILES = {'vit_s14': 'dinov2_vits14_pretrain.pth', 'vit_b14': 'dinov2_vitb14_pretrain.pth',
                  'vit_l14': 'dinov2_vitl14_pretrain.pth', 'vit_g14': 'dinov2_vitg14_pretrain.pth'}


def load_dinov2_checkpoint(model: nn.Module, path: str) -> None:
    """Load a local DINOv2 checkpoint (timm or official keys) strictly into ``model``."""
    obj = read_file(path, 'DINOv2 checkpoint')
    state_dict = convert_dinov2_state_dict(
        unwrap_state_dict(obj, path, 'DINOv2 checkpoint', wrappers=_WRAPPER_KEYS,
                          prefixes=()))
    if 'pos_embed' in state_dict and state_dict['pos_embed'].ndim == 3 \
            and state_dict['pos_embed'].shape[-1] == model.pos_embed.shape[-1]:
        state_dict['pos_embed'] = _resize_pos_embed(state_dict['pos_embed'], model)
    strict_load(model, state_dict, path,
                f'the DINOv2 model (embed_dim={model.embed_dim}, depth={len(model.blocks)})',
                'is it the right arch?')


@MODELS.register_module()
class DINOv2Encoder(nn.Module):
    """Frozen DINOv2 that returns Matcher's L2-normalised pre-norm patch features.

    Args:
        arch: ``'vit_s14' | 'vit_b14' | 'vit_l14' | 'vit_g14' | 'tiny'``.
        img_size: side of the square the input is resized to (aspect not kept, as Matcher).
        checkpoint: local weight file (timm or official DINOv2 keys, e.g. Meta's
            ``dinov2_vitl14_pretrain.pth``). Required, except for ``'tiny'`` or with
            ``allow_random``: DINOv2 weights are never downloaded.
        seed: seed of the random init, so that random encoders are reproducible.
        allow_random: run a real-size arch with random weights (speed benchmarks only: the
            matching, hence the masks, are meaningless).
        frozen: disable gradients and keep eval mode (Matcher never trains the encoder).
    """

    def __init__(self,
                 arch: str = 'vit_l14',
                 img_size: int = 518,
                 checkpoint: Optional[str] = None,
                 seed: int = 0,
                 frozen: bool = True,
                 allow_random: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.img_size = int(img_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.vit = build_dinov2_vit(arch, self.img_size)
        self.patch_size = int(self.vit.patch_embed.patch_size[0])
        if self.img_size % self.patch_size:
            raise ValueError(
                f'img_size={img_size} must be a multiple of the patch size {self.patch_size}.')
        self.embed_dim = int(self.vit.embed_dim)
        self.register_buffer(
            'mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            'std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        if checkpoint is not None:
            load_dinov2_checkpoint(self.vit, checkpoint)
        elif arch != 'tiny' and not allow_random:
            name = OFFICIAL_FILES.get(arch, 'the DINOv2 weights')
            raise CheckpointError(
                f'DINOv2 {arch} needs its weights file ({name}, from the facebookresearch/dinov2 '
                'release): pass it with --cfg-options '
                'model.head.prompt_sampler.encoder.checkpoint=/path/to/' + name + '.')
        elif arch != 'tiny':
            print_log(
                f'DINOv2Encoder({arch!r}) has no checkpoint: its weights are RANDOM and the '
                'Matcher results will be meaningless (allow_random=True).',
                logger='current', level=logging.WARNING)
        self.frozen = frozen
        if frozen:
            self.vit.requires_grad_(False)
            self.vit.eval()

    @property
    def grid_size(self) -> Tuple[int, int]:
        """Patch grid (h, w) of the square input."""
        side = self.img_size // self.patch_size
        return side, side

    feature_source = 'DINOv2'

    def patch_features(self, image: torch.Tensor, embedding=None) -> torch.Tensor:
        """(h*w, C) features of one (3, H, W) image (``embedding``, SAM's, is not used)."""
        device = next(self.parameters()).device
        return self(image[None].to(device))[0][0]

    def train(self, mode: bool = True) -> 'DINOv2Encoder':
        """Keep a frozen encoder in eval mode."""
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (B,3,H,W) RGB 0..255 to the square input and ImageNet-normalise it."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'Expected (B, 3, H, W) RGB images, got {tuple(images.shape)}.')
        x = images.float()
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bilinear',
                              align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Return L2-normalised pre-norm patch features (B, h*w, C) and the grid (h, w)."""
        x = self.preprocess(images)
        # Output of the last block, prefix tokens dropped, final ``norm`` skipped (x_prenorm).
        feats = self.vit.forward_intermediates(
            x, indices=1, norm=False, output_fmt='NLC', intermediates_only=True)[-1]
        return F.normalize(feats, p=2, dim=-1), self.grid_size
