"""``SAMBackend``: a frozen SAM that encodes each image once and decodes batches of prompts."""
from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from ..prompts.structures import Prompts
from .builder import IMAGE_SIZE, build_sam_model, get_arch
from .checkpoint import load_sam_checkpoint, read_checkpoint, resolve_checkpoint
from .decoder_hooks import guided_decoder
from .fast_attention import use_sdpa_attention
from .image import boxes_to_frame, frame_to_image, points_to_frame, resize_longest_side

Size = Tuple[int, int]


@dataclass
class ImageEmbedding:
    """SAM's embedding of one image and the geometry needed to map prompts and masks.

    Attributes:
        features: (1, 256, 64, 64) image embedding.
        original_size: (H, W) of the image.
        input_size: (h', w') of the image inside SAM's 1024 frame.
    """

    features: Tensor
    original_size: Size
    input_size: Size


@dataclass
class DecoderOutput:
    """SAM's answer to B prompt sets: C masks per set (C = 3 multimask, else 1).

    Attributes:
        low_res_logits: (B, C, 256, 256) logits in SAM's padded frame (usable as mask_input).
        iou_predictions: (B, C) predicted IoU of each mask.
        original_size: (H, W) of the image, to bring logits back to it.
    """

    low_res_logits: Tensor
    iou_predictions: Tensor
    original_size: Size

    def logits(self) -> Tensor:
        """(B, C, H, W) logits on the original image (SAM's ``postprocess_masks``)."""
        return frame_to_image(self.low_res_logits, self.original_size)

    def best(self) -> Tuple[Tensor, Tensor]:
        """Per set, the output with the highest predicted IoU: ((B,1,256,256), (B,))."""
        idx = self.iou_predictions.argmax(dim=1)
        rows = torch.arange(idx.numel(), device=idx.device)
        return self.low_res_logits[rows, idx].unsqueeze(1), self.iou_predictions[rows, idx]


@MODELS.register_module()
class SAMBackend(nn.Module):
    """The promptable backend shared by every method: SAM, frozen.

    Args:
        arch: 'vit_b', 'vit_l', 'vit_h', 'medsam_vit_b' or 'tiny' (random weights, for tests).
        checkpoint: local path or http(s) URL of a segment_anything state dict. None takes the
            arch's official URL (downloaded once into torch hub's cache); 'tiny' stays random.
        seed: seed of the random initialisation (what 'tiny' runs with).
        cache_size: how many image embeddings to keep (4 MB each), so each image is encoded
            once even when a method decodes it many times or predicts twice (transductive
            retraining); raise it for test sets of more images.
        encoder_dtype: 'float32', or 'bfloat16' to run the image encoder under autocast on CUDA.
        encoder_attention: 'eager' (segment_anything's own attention) or 'sdpa' (the same
            attention through ``F.scaled_dot_product_attention``: fused kernels on GPUs).
    """

    def __init__(self, arch: str = 'vit_b', checkpoint: Optional[str] = None,
                 seed: Optional[int] = 0, cache_size: int = 128,
                 encoder_dtype: str = 'float32', encoder_attention: str = 'eager') -> None:
        super().__init__()
        get_arch(arch)
        self.arch = arch
        self.checkpoint = resolve_checkpoint(arch, checkpoint)
        # Read (or download) the weights before building: a missing file fails at once.
        state = read_checkpoint(self.checkpoint) if self.checkpoint is not None else None
        self.sam = build_sam_model(arch, seed=seed)
        if state is not None:
            load_sam_checkpoint(self.sam, arch, self.checkpoint, state)
        for p in self.sam.parameters():
            p.requires_grad_(False)
        if encoder_dtype not in ('float32', 'bfloat16'):
            raise ValueError(f"encoder_dtype must be 'float32' or 'bfloat16', got {encoder_dtype!r}")
        self.encoder_dtype = encoder_dtype
        if encoder_attention not in ('eager', 'sdpa'):
            raise ValueError(
                f"encoder_attention must be 'eager' or 'sdpa', got {encoder_attention!r}")
        if encoder_attention == 'sdpa':
            use_sdpa_attention(self.sam.image_encoder)
        self.encoder_attention = encoder_attention
        self.cache_size = cache_size
        self._cache: 'OrderedDict[str, ImageEmbedding]' = OrderedDict()
        self.num_encoded = 0

    def train(self, mode: bool = True) -> 'SAMBackend':
        """SAM stays in eval mode: it is never trained here."""
        super().train(mode)
        self.sam.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.sam.pixel_mean.device

    def _autocast(self):
        if self.encoder_dtype == 'bfloat16' and self.device.type == 'cuda':
            return torch.autocast('cuda', dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def encode(self, image: Tensor, key: Optional[str] = None) -> ImageEmbedding:
        """Embed a (3, H, W) RGB image with values 0..255; cached under ``key`` when given."""
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f'SAM needs a (3,H,W) RGB image, got {tuple(image.shape)}')
        original_size = (int(image.shape[-2]), int(image.shape[-1]))
        x = resize_longest_side(image[None].to(self.device, torch.float32))
        in_size = (int(x.shape[-2]), int(x.shape[-1]))
        x = (x - self.sam.pixel_mean) / self.sam.pixel_std
        x = F.pad(x, (0, IMAGE_SIZE - in_size[1], 0, IMAGE_SIZE - in_size[0]))
        with self._autocast():
            features = self.sam.image_encoder(x).float()
        self.num_encoded += 1
        emb = ImageEmbedding(features, original_size, in_size)
        if key is not None and self.cache_size > 0:
            self._cache[key] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return emb

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    @torch.no_grad()
    def decode(self, emb: ImageEmbedding, prompts: Prompts,
               multimask: bool = True) -> DecoderOutput:
        """Run the prompt encoder and mask decoder once for all B prompt sets of ``prompts``."""
        # Single-set fields broadcast to B sets (SAM's prompt encoder needs one batch size).
        prompts = prompts.expand(prompts.num_sets).to(self.device)
        points = None
        if prompts.point_coords is not None:
            points = (points_to_frame(prompts.point_coords.float(), emb.original_size),
                      prompts.point_labels.long())
        boxes = None
        if prompts.boxes is not None:
            boxes = boxes_to_frame(prompts.boxes.float(), emb.original_size)
        sparse, dense = self.sam.prompt_encoder(points=points, boxes=boxes,
                                                masks=prompts.mask_logits)
        num_sets = prompts.num_sets
        if sparse.shape[0] != num_sets:  # e.g. a mask-only prompt: B from the mask, none sparse
            sparse = sparse.expand(num_sets, *sparse.shape[1:])
        if dense.shape[0] != num_sets:
            dense = dense.expand(num_sets, *dense.shape[1:])
        with guided_decoder(self.sam.mask_decoder, prompts.attn_sim, prompts.target_embedding):
            low_res, iou = self.sam.mask_decoder(
                image_embeddings=emb.features,
                image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return DecoderOutput(low_res, iou, emb.original_size)
