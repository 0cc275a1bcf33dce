"""SAM's image-encoder attention through ``F.scaled_dot_product_attention`` (fused kernels).

segment_anything computes the encoder's attention by hand (matmul, add the decomposed
relative-position terms, softmax, matmul). The same result comes from PyTorch's fused attention
with the relative-position terms passed as an additive ``attn_mask``; on GPUs (with bf16) this
uses the fused kernels. ``use_sdpa_attention`` swaps the forward of every attention block of an
encoder; parameters and state-dict keys stay segment_anything's.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def _rel_pos_bias(attn: nn.Module, q: Tensor, h: int, w: int) -> Tensor:
    """(B, heads, h*w, h*w) decomposed relative-position terms of SAM's encoder attention."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, heads, n, c = q.shape
    r_q = q.reshape(b * heads, h, w, c)
    rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, get_rel_pos(h, h, attn.rel_pos_h))
    rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, get_rel_pos(w, w, attn.rel_pos_w))
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, heads, n, n)


def sdpa_attention_forward(attn: nn.Module, x: Tensor) -> Tensor:
    """segment_anything's encoder ``Attention.forward`` computed with fused attention."""
    b, h, w, _ = x.shape
    qkv = attn.qkv(x).reshape(b, h * w, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, N, C)
    bias = _rel_pos_bias(attn, q, h, w).to(q.dtype) if attn.use_rel_pos else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
    out = out.view(b, attn.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return attn.proj(out)


def use_sdpa_attention(image_encoder: nn.Module) -> int:
    """Route every attention block of a SAM image encoder through SDPA; returns how many."""
    from segment_anything.modeling.image_encoder import Attention

    count = 0
    for module in image_encoder.modules():
        if isinstance(module, Attention):
            module.forward = partial(sdpa_attention_forward, module)
            count += 1
    return count
