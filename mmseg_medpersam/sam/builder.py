"""Build Segment Anything models (ViT-B/L/H, MedSAM, tiny) from segment_anything's parts."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

SAM_URL_PREFIX = 'https://dl.fbaipublicfiles.com/segment_anything/'


@dataclass(frozen=True)
class SAMArch:
    """Hyper-parameters of one SAM image encoder, and where its official weights live."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: Tuple[int, ...]
    checkpoint_file: Optional[str] = None
    checkpoint_url: Optional[str] = None
    window_size: int = 14


SAM_ARCHS: Dict[str, SAMArch] = {
    'vit_b': SAMArch(768, 12, 12, (2, 5, 8, 11), 'sam_vit_b_01ec64.pth',
                     SAM_URL_PREFIX + 'sam_vit_b_01ec64.pth'),
    'vit_l': SAMArch(1024, 24, 16, (5, 11, 17, 23), 'sam_vit_l_0b3195.pth',
                     SAM_URL_PREFIX + 'sam_vit_l_0b3195.pth'),
    'vit_h': SAMArch(1280, 32, 16, (7, 15, 23, 31), 'sam_vit_h_4b8939.pth',
                     SAM_URL_PREFIX + 'sam_vit_h_4b8939.pth'),
    # MedSAM fine-tunes SAM ViT-B on medical images: same architecture and key names. Its
    # weights are distributed through a shared drive, not a stable URL, so a file must be given.
    'medsam_vit_b': SAMArch(768, 12, 12, (2, 5, 8, 11), 'medsam_vit_b.pth', None),
    # A few-layer encoder with SAM's real prompt encoder and mask decoder: same interfaces and
    # the same 64x64x256 embedding, for tests and CI (random weights, seeded).
    'tiny': SAMArch(32, 2, 2, (1, ), None, None),
}

IMAGE_SIZE = 1024
PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256
PIXEL_MEAN: Sequence[float] = (123.675, 116.28, 103.53)
PIXEL_STD: Sequence[float] = (58.395, 57.12, 57.375)


def get_arch(arch: str) -> SAMArch:
    """Look up ``arch`` with an error listing the known names."""
    if arch not in SAM_ARCHS:
        raise KeyError(f'Unknown SAM arch {arch!r}; choose one of {sorted(SAM_ARCHS)}.')
    return SAM_ARCHS[arch]


def build_sam_model(arch: str = 'vit_b', seed: Optional[int] = 0) -> nn.Module:
    """A ``segment_anything.modeling.Sam`` of ``arch`` with random weights (seeded), in eval mode.

    Weights are loaded separately (see ``checkpoint.load_sam_checkpoint``).
    """
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)

    spec = get_arch(arch)
    grid = IMAGE_SIZE // PATCH_SIZE
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=spec.depth,
                embed_dim=spec.embed_dim,
                img_size=IMAGE_SIZE,
                mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                num_heads=spec.num_heads,
                patch_size=PATCH_SIZE,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=spec.global_attn_indexes,
                window_size=spec.window_size,
                out_chans=PROMPT_EMBED_DIM,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=PROMPT_EMBED_DIM,
                image_embedding_size=(grid, grid),
                input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
                transformer_dim=PROMPT_EMBED_DIM,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
        if arch == 'tiny':
            # Random relative-position tables start at zero in segment_anything; give the tiny
            # model non-trivial ones so its attention is not degenerate in tests.
            for name, p in sam.image_encoder.named_parameters():
                if 'rel_pos' in name:
                    nn.init.normal_(p, std=0.02)
    return sam.eval()


def detect_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """Which SAM arch a state dict fits, from its encoder width and depth (None if unknown)."""
    pos = state_dict.get('image_encoder.pos_embed')
    if pos is None or pos.ndim != 4:
        return None
    width = int(pos.shape[-1])
    depth = len({k.split('.')[2] for k in state_dict if k.startswith('image_encoder.blocks.')})
    for name, spec in SAM_ARCHS.items():
        if name != 'medsam_vit_b' and spec.embed_dim == width and spec.depth == depth:
            return name
    return None
