"""PerSAM's two decoder hooks, added to SAM's mask decoder without forking it.

* target-guided attention: in the token-to-image cross-attention of each two-way block, the
  attention map is biased by the target's location prior: ``softmax(softmax(QK^T/sqrt(d)) + s)``
  where ``s`` (one value per image token) is the sigmoid of the standardised similarity map;
* target-semantic prompting: the target embedding (mean reference feature under the mask) is
  added to the decoder's query tokens before each block and to the query of the final
  token-to-image attention.

``PerSAMDecoderHook`` is a ``sam.DecoderHook``: the backend enters it around one decoder call,
and it swaps in a forward for the decoder's ``TwoWayTransformer`` for the length of that call.
The modules and weights are segment_anything's own, so state-dict keys and the unhooked path
stay exactly upstream; the backend itself knows nothing of PerSAM. As in PerSAM's code,
adding the target embedding to the first block's queries also adds it to the query positional
encoding (their tensors alias there); we reproduce that on purpose so results follow the
published method.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor


def _attention(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor,
               bias: Optional[Tensor] = None) -> Tensor:
    """segment_anything's ``Attention`` forward, with PerSAM's optional post-softmax bias."""
    q, k, v = attn.q_proj(q), attn.k_proj(k), attn.v_proj(v)
    b, n_q, c = q.shape
    heads = attn.num_heads
    q = q.reshape(b, n_q, heads, c // heads).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, c // heads).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, c // heads).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(c // heads), dim=-1)
    if bias is not None:
        weights = torch.softmax(weights + bias, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n_q, c)
    return attn.out_proj(out)


def _block(block: nn.Module, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
           attn_sim: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """One ``TwoWayAttentionBlock`` with the attention bias in token-to-image attention."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)
    q, k = queries + query_pe, keys + key_pe
    queries = block.norm2(queries + _attention(block.cross_attn_token_to_image, q, k, keys,
                                               attn_sim))
    queries = block.norm3(queries + block.mlp(queries))
    q, k = queries + query_pe, keys + key_pe
    keys = block.norm4(keys + block.cross_attn_image_to_token(q=k, k=q, v=queries))
    return queries, keys


def guided_two_way_forward(transformer: nn.Module, image_embedding: Tensor, image_pe: Tensor,
                           point_embedding: Tensor, attn_sim: Optional[Tensor],
                           target_embedding: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """``TwoWayTransformer.forward`` with PerSAM's hooks (None disables a hook)."""
    keys = image_embedding.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1)
    query_pe = point_embedding
    queries = point_embedding
    for i, layer in enumerate(transformer.layers):
        if target_embedding is not None:
            queries = queries + target_embedding
            if i == 0:
                query_pe = queries  # PerSAM's in-place add also shifts the positional encoding
        queries, keys = _block(layer, queries, keys, query_pe, key_pe, attn_sim)
    q, k = queries + query_pe, keys + key_pe
    if target_embedding is not None:  # the final attention's query only, not its residual
        q = q + target_embedding
    queries = transformer.norm_final_attn(
        queries + transformer.final_attn_token_to_image(q=q, k=k, v=keys))
    return queries, keys


@contextmanager
def guided_decoder(mask_decoder: nn.Module, attn_sim: Optional[Tensor] = None,
                   target_embedding: Optional[Tensor] = None) -> Iterator[None]:
    """Within the block, ``mask_decoder`` runs with PerSAM's hooks; restored on exit."""
    if attn_sim is None and target_embedding is None:
        yield
        return
    transformer = mask_decoder.transformer

    def forward(image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor):
        return guided_two_way_forward(transformer, image_embedding, image_pe, point_embedding,
                                      attn_sim, target_embedding)

    transformer.forward = forward
    try:
        yield
    finally:
        del transformer.forward


@dataclass
class PerSAMDecoderHook:
    """PerSAM's decoder hooks as a ``sam.DecoderHook`` (carried by ``Prompts.decoder_hook``).

    Attributes:
        attn_sim: (1, 1, 1, g*g) target-guided attention bias over the image tokens, or None.
        target_embedding: (1, 1, 256) target-semantic prompt, or None.
    """

    attn_sim: Optional[Tensor] = None
    target_embedding: Optional[Tensor] = None

    def __call__(self, mask_decoder: nn.Module):
        device = next(mask_decoder.parameters()).device
        attn_sim, target = (None if t is None else t.to(device)
                            for t in (self.attn_sim, self.target_embedding))
        return guided_decoder(mask_decoder, attn_sim, target)


__all__ = ['PerSAMDecoderHook', 'guided_decoder', 'guided_two_way_forward']
