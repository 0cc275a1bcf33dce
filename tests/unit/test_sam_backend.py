"""The SAM backend (tiny arch): build, encode cache, batched decode, prompt geometry, hooks."""

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from mmseg_medpersam.methods.persam.decoder_hook import (
    PerSAMDecoderHook,
    guided_decoder,
    guided_two_way_forward,
)
from mmseg_medpersam.prompts import Prompts, decode_prompts, points_prompt
from mmseg_medpersam.sam import (
    FrameGeometry,
    ImageEmbedding,
    SAMBackend,
    build_sam_model,
    detect_arch,
    get_arch,
)
from mmseg_medpersam.sam.builder import PIXEL_MEAN, PIXEL_STD
from mmseg_medpersam.sam.geometry import resize_longest_side


def _embedding(original_size, seed=0, frame=1024) -> ImageEmbedding:
    """A random image embedding (no encoder run) for an image of ``original_size``."""
    g = torch.Generator().manual_seed(seed)
    return ImageEmbedding(torch.randn(1, 256, 64, 64, generator=g),
                          FrameGeometry(tuple(original_size), frame))


def _manual_decode(model, emb, coords_frame=None, labels=None, boxes_frame=None, masks=None,
                   multimask=True):
    """segment_anything's own prompt encoder + mask decoder, prompts already in the frame."""
    points = None if coords_frame is None else (coords_frame, labels)
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes_frame, masks=masks)
    return model.mask_decoder(image_embeddings=emb.features,
                              image_pe=model.prompt_encoder.get_dense_pe(),
                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                              multimask_output=multimask)


def _upstream_sam(backend: SAMBackend) -> Sam:
    """segment_anything's ``Sam`` around the backend's own modules (for ``Sam.preprocess``)."""
    return Sam(backend.model.image_encoder, backend.model.prompt_encoder,
               backend.model.mask_decoder, list(PIXEL_MEAN), list(PIXEL_STD)).eval()


# --------------------------------------------------------------------------- build
def test_build_is_deterministic_under_seed():
    state_a = build_sam_model('tiny', seed=0).state_dict()
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    state_b = build_sam_model('tiny', seed=0).state_dict()
    after = torch.rand(3)
    assert torch.equal(before, after), 'building SAM must not consume the global RNG'
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    state_c = build_sam_model('tiny', seed=1).state_dict()
    assert not torch.equal(state_a['mask_decoder.iou_token.weight'],
                           state_c['mask_decoder.iou_token.weight'])
    assert detect_arch(state_a) == 'tiny'


def test_backend_is_frozen_and_stays_in_eval(tiny_sam):
    assert not any(p.requires_grad for p in tiny_sam.parameters())
    tiny_sam.train()
    assert not tiny_sam.model.training
    tiny_sam.eval()


def test_unknown_arch_and_bad_options():
    with pytest.raises(KeyError, match='litemedsam.*model.sam.arch'):
        get_arch('vit_x')
    with pytest.raises(ValueError, match='encoder_dtype'):
        SAMBackend(arch='tiny', encoder_dtype='float16')
    with pytest.raises(ValueError, match='encoder_attention'):
        SAMBackend(arch='tiny', encoder_attention='flash')


# --------------------------------------------------------------------------- encode
def test_encode_caches_by_key_and_matches_upstream_preprocess():
    sam = SAMBackend(arch='tiny', cache_size=1, disk_cache=False)  # the memory cache alone
    img = torch.rand(3, 40, 56) * 255
    emb = sam.encode(img, key='a')
    assert sam.num_encoded == 1
    assert emb.features.shape == (1, 256, 64, 64)
    assert emb.original_size == (40, 56)
    assert emb.input_size == ResizeLongestSide(1024).get_preprocess_shape(40, 56, 1024)
    assert sam.encode(img * 0, key='a') is emb  # served from the cache, image not looked at
    assert sam.num_encoded == 1
    # Normalised, then padded at the bottom/right: segment_anything's Sam.preprocess.
    x = resize_longest_side(img[None], 1024)
    expected = sam.model.image_encoder(_upstream_sam(sam).preprocess(x))
    torch.testing.assert_close(emb.features, expected)
    sam.encode(img, key='b')  # cache_size=1 evicts 'a'
    assert sam.num_encoded == 2
    sam.encode(img, key='a')
    assert sam.num_encoded == 3
    sam.clear_cache()
    sam.encode(img, key='a')
    assert sam.num_encoded == 4
    with pytest.raises(ValueError, match=r'\(3,H,W\)'):
        sam.encode(torch.zeros(1, 8, 8))


def test_encode_many_batches_and_equals_one_by_one(tiny_sam):
    images = [torch.rand(3, 40 + 7 * i, 56) * 255 for i in range(3)]
    sam = SAMBackend(arch='tiny', cache_size=8)
    batched = sam.encode_many(images, keys=['x', 'y', 'z'], batch_size=2)
    assert sam.num_encoded == 3
    for img, emb in zip(images, batched):
        alone = tiny_sam.encode(img)
        assert emb.geometry == alone.geometry
        torch.testing.assert_close(emb.features, alone.features, atol=1e-4, rtol=1e-4)
    again = sam.encode_many(images, keys=['x', 'y', 'z'])
    assert sam.num_encoded == 3 and all(a is b for a, b in zip(again, batched))


def test_encode_many_default_batch_is_one_on_cpu_and_configurable():
    images = [torch.rand(3, 32, 40) * 255 for _ in range(3)]
    for batch, calls in ((None, 3), (2, 2), (3, 1)):
        sam = SAMBackend(arch='tiny', encode_batch_size=batch, disk_cache=False)
        sizes = []
        handle = sam.model.image_encoder.register_forward_hook(
            lambda m, inp, out: sizes.append(inp[0].shape[0]))
        sam.encode_many(images)
        handle.remove()
        assert len(sizes) == calls and sum(sizes) == 3
    with pytest.raises(ValueError, match='encode_batch_size'):
        SAMBackend(arch='tiny', encode_batch_size=0)


def test_compiled_encoder_equals_eager(tiny_sam):
    """encoder_compile wraps the encoder in torch.compile (the 'eager' dynamo backend here:
    the wiring is checked on CPU without a C++ toolchain; inductor is for GPUs)."""
    image = torch.rand(3, 48, 40) * 255
    sam = SAMBackend(arch='tiny', encoder_compile=dict(backend='eager'))
    assert type(sam.model.image_encoder).__name__ == 'OptimizedModule'
    torch.testing.assert_close(sam.encode(image).features, tiny_sam.encode(image).features)


# --------------------------------------------------------------------------- decode
def test_decode_batches_prompt_sets(tiny_sam):
    emb = _embedding((64, 80))
    coords = torch.tensor([[[10., 20.], [60., 30.]], [[40., 40.], [0., 0.]],
                           [[5., 60.], [79., 63.]]])
    labels = torch.tensor([[1, 0], [1, -1], [1, 1]])
    out = tiny_sam.decode(emb, coords, labels)
    assert out.low_res_logits.shape == (3, 3, 256, 256)
    assert out.iou_predictions.shape == (3, 3)
    single = tiny_sam.decode(emb, coords, labels, multimask=False)
    assert single.low_res_logits.shape == (3, 1, 256, 256)
    assert single.iou_predictions.shape == (3, 1)
    assert single.logits().shape == (3, 1, 64, 80)
    best, iou = out.best()
    assert best.shape == (3, 1, 256, 256) and iou.shape == (3, )
    assert torch.equal(iou, out.iou_predictions.max(dim=1).values)
    # Each set decoded alone gives the same answer as in the batch.
    alone = tiny_sam.decode(emb, coords[1:2], labels[1:2])
    torch.testing.assert_close(alone.low_res_logits[0], out.low_res_logits[1],
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match='together'):
        tiny_sam.decode(emb, coords)


def test_decode_mask_only_prompt_broadcasts_sparse(tiny_sam):
    emb = _embedding((64, 80))
    masks = torch.randn(2, 1, 256, 256)
    out = tiny_sam.decode(emb, mask_logits=masks)
    assert out.low_res_logits.shape == (2, 3, 256, 256)
    expected, _ = _manual_decode(tiny_sam.model, emb, masks=masks)
    torch.testing.assert_close(out.low_res_logits, expected)


def test_decode_broadcasts_single_point_set_over_boxes(tiny_sam):
    emb = _embedding((64, 80))
    coords, labels = torch.tensor([[[20., 30.]]]), torch.tensor([[1]])
    boxes = torch.tensor([[0., 0., 40., 40.], [10., 5., 70., 60.]])
    out = tiny_sam.decode(emb, coords, labels, boxes)
    assert out.low_res_logits.shape == (2, 3, 256, 256)
    explicit = tiny_sam.decode(emb, coords.expand(2, 1, 2), labels.expand(2, 1), boxes)
    torch.testing.assert_close(out.low_res_logits, explicit.low_res_logits)
    with pytest.raises(ValueError, match='broadcast'):
        tiny_sam.decode(emb, coords.expand(3, 1, 2), labels.expand(3, 1), boxes)


@pytest.mark.parametrize('size', [(60, 100), (100, 60)])
def test_points_and_boxes_map_to_sam_frame_for_non_square_images(tiny_sam, size):
    emb = _embedding(size, seed=1)
    transform = ResizeLongestSide(1024)
    coords = np.array([[[12.0, 7.0], [55.5, 40.0], [3.0, 50.0]]])
    labels = np.array([[1, 0, 1]])
    boxes = np.array([[4.0, 6.0, 50.0, 41.0]])
    prompts = Prompts(point_coords=torch.from_numpy(coords).float(),
                      point_labels=torch.from_numpy(labels), boxes=torch.from_numpy(boxes).float())
    out = decode_prompts(tiny_sam, emb, prompts)
    ref_coords = torch.from_numpy(transform.apply_coords(coords, size)).float()
    ref_boxes = torch.from_numpy(transform.apply_boxes(boxes, size)).float()
    expected_logits, expected_iou = _manual_decode(
        tiny_sam.model, emb, ref_coords, torch.from_numpy(labels), ref_boxes)
    torch.testing.assert_close(out.low_res_logits, expected_logits)
    torch.testing.assert_close(out.iou_predictions, expected_iou)
    # Mapping with the transposed size (the classic x/y mix-up) would change the answer.
    wrong = torch.from_numpy(transform.apply_coords(coords, size[::-1])).float()
    wrong_logits, _ = _manual_decode(tiny_sam.model, emb, wrong, torch.from_numpy(labels),
                                     ref_boxes)
    assert not torch.allclose(out.low_res_logits, wrong_logits)


@pytest.mark.parametrize('frame', [1024, 256])
def test_frame_mappings_round_trip(frame):
    size = (60, 100)
    geo = FrameGeometry(size, frame)
    h, w = geo.input_size
    assert (h, w) == ResizeLongestSide(frame).get_preprocess_shape(*size, frame)
    mask = torch.zeros(size)
    mask[10:40, 20:70] = 1
    framed = geo.image_to_frame(mask, 256)
    assert framed.shape == (256, 256)
    cell = frame // 256
    assert framed[-(-h // cell) + 1:, :].abs().max() == 0  # padding rows stay empty
    back = geo.frame_to_image(framed * 20 - 10) > 0
    assert (back == mask.bool()).float().mean() > 0.97
    assert geo.valid_cells(64) == (-(-h * 64 // frame), -(-w * 64 // frame))


# --------------------------------------------------------------------------- decoder hooks
@pytest.fixture(scope='module')
def decoder_inputs(tiny_sam):
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(1, 256, 64, 64, generator=g)
    coords = torch.tensor([[[300., 200.], [700., 500.]]])
    sparse, _ = tiny_sam.model.prompt_encoder(points=(coords, torch.tensor([[1, 0]])),
                                              boxes=None, masks=None)
    mask_decoder = tiny_sam.model.mask_decoder
    tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], 0)
    tokens = torch.cat([tokens[None].expand(1, -1, -1), sparse], dim=1)
    pe = tiny_sam.model.prompt_encoder.get_dense_pe()
    attn_sim = torch.sigmoid(torch.randn(1, 1, 1, 4096, generator=g) * 3)
    target = torch.randn(1, 1, 256, generator=g)
    return emb, pe, tokens, attn_sim, target


def test_unhooked_forward_reproduces_two_way_transformer(tiny_sam, decoder_inputs):
    emb, pe, tokens, _, _ = decoder_inputs
    transformer = tiny_sam.model.mask_decoder.transformer
    q_ref, k_ref = transformer(emb, pe, tokens)
    q, k = guided_two_way_forward(transformer, emb, pe, tokens, None, None)
    assert torch.equal(q, q_ref)
    assert torch.equal(k, k_ref)


def test_hooks_change_the_output(tiny_sam, decoder_inputs):
    emb, pe, tokens, attn_sim, target = decoder_inputs
    transformer = tiny_sam.model.mask_decoder.transformer
    q_ref, _ = transformer(emb, pe, tokens)
    q_attn, _ = guided_two_way_forward(transformer, emb, pe, tokens, attn_sim, None)
    q_tgt, _ = guided_two_way_forward(transformer, emb, pe, tokens, None, target)
    q_both, _ = guided_two_way_forward(transformer, emb, pe, tokens, attn_sim, target)
    for q in (q_attn, q_tgt, q_both):
        assert not torch.allclose(q, q_ref, atol=1e-4)
    assert not torch.allclose(q_attn, q_tgt, atol=1e-4)


def test_decoder_hook_swaps_and_restores_forward(tiny_sam, decoder_inputs):
    emb_t, _, _, attn_sim, target = decoder_inputs
    transformer = tiny_sam.model.mask_decoder.transformer
    emb = ImageEmbedding(emb_t, FrameGeometry((64, 80), 1024))
    points = points_prompt(torch.tensor([[30., 20.]]), torch.tensor([1]))
    plain = decode_prompts(tiny_sam, emb, points).low_res_logits
    hook = PerSAMDecoderHook(attn_sim, target)
    hooked = decode_prompts(tiny_sam, emb, Prompts(point_coords=points.point_coords,
                                                   point_labels=points.point_labels,
                                                   decoder_hook=hook))
    assert not torch.allclose(hooked.low_res_logits, plain, atol=1e-4)
    assert 'forward' not in vars(transformer)
    with guided_decoder(tiny_sam.model.mask_decoder, attn_sim, target):
        assert 'forward' in vars(transformer)
        inside = decode_prompts(tiny_sam, emb, points)
    torch.testing.assert_close(inside.low_res_logits, hooked.low_res_logits)
    assert 'forward' not in vars(transformer)
    with pytest.raises(ZeroDivisionError):
        with guided_decoder(tiny_sam.model.mask_decoder, attn_sim, None):
            1 / 0
    assert 'forward' not in vars(transformer)
    torch.testing.assert_close(decode_prompts(tiny_sam, emb, points).low_res_logits, plain)
    with guided_decoder(tiny_sam.model.mask_decoder, None, None):  # no hooks: nothing swapped
        assert 'forward' not in vars(transformer)


# --------------------------------------------------------------------------- Prompts
def test_prompts_merge_and_broadcast():
    pts = points_prompt(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([1, 0]))
    neg = points_prompt(torch.tensor([[5., 6.]]), torch.tensor([0]))
    masks = Prompts(mask_logits=torch.zeros(3, 1, 256, 256))
    hook = PerSAMDecoderHook(target_embedding=torch.ones(1, 1, 256))
    box = Prompts(boxes=torch.tensor([[0., 0., 9., 9.]]), decoder_hook=hook)
    merged = Prompts.merge([pts, None, neg, masks, box])
    assert merged.num_sets == 3
    assert merged.point_coords.shape == (3, 3, 2)
    assert merged.point_labels.tolist() == [[1, 0, 0]] * 3
    assert merged.point_coords[2, 2].tolist() == [5., 6.]
    assert merged.boxes.shape == (3, 4)
    assert merged.mask_logits.shape == (3, 1, 256, 256)
    assert merged.decoder_hook is hook
    assert Prompts.merge([]).is_empty and Prompts.merge([]).num_sets == 1
    assert not merged.is_empty
    assert Prompts(decoder_hook=hook).is_empty
    sel = merged.select(torch.tensor([0, 2]))
    assert sel.num_sets == 2 and sel.decoder_hook is hook
    arrays = pts.to_numpy()
    assert set(arrays) == {'point_coords', 'point_labels'}
    assert isinstance(arrays['point_coords'], np.ndarray)


def test_prompts_validation_errors():
    c = torch.zeros(2, 1, 2)
    lab = torch.ones(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match='together'):
        Prompts(point_coords=c)
    with pytest.raises(ValueError, match='together'):
        Prompts(point_labels=lab)
    with pytest.raises(ValueError, match='disagree'):
        Prompts(point_coords=c, point_labels=lab, boxes=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r'\(B,N,2\)'):
        Prompts(point_coords=torch.zeros(2, 2), point_labels=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r'\(B,N\)'):
        Prompts(point_coords=c, point_labels=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r'\(B,4\)'):
        Prompts(boxes=torch.zeros(4))
    with pytest.raises(ValueError, match='256,256'):
        Prompts(mask_logits=torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match='broadcast'):
        Prompts(point_coords=c, point_labels=lab).expand(3)
    with pytest.raises(ValueError, match='boxes'):
        Prompts.merge([Prompts(boxes=torch.zeros(1, 4)), Prompts(boxes=torch.ones(1, 4))])
    with pytest.raises(ValueError, match='decoder_hook'):
        Prompts.merge([Prompts(decoder_hook=PerSAMDecoderHook()),
                       Prompts(decoder_hook=PerSAMDecoderHook())])


# --------------------------------------------------------------------------- fast attention
def test_sdpa_encoder_attention_matches_segment_anything():
    image = torch.rand(3, 70, 90) * 255
    eager = SAMBackend(arch='tiny', seed=3)
    fast = SAMBackend(arch='tiny', seed=3, encoder_attention='sdpa')
    assert fast.model.state_dict().keys() == eager.model.state_dict().keys()
    a, b = eager.encode(image).features, fast.encode(image).features
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
