"""The SAM backend (tiny arch): build, encode cache, batched decode, prompt geometry, hooks."""
import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from mmseg_medpersam.prompts import Prompts, points_prompt
from mmseg_medpersam.sam import SAMBackend, build_sam_model, detect_arch, guided_decoder
from mmseg_medpersam.sam.backend import ImageEmbedding
from mmseg_medpersam.sam.builder import IMAGE_SIZE, get_arch
from mmseg_medpersam.sam.decoder_hooks import guided_two_way_forward
from mmseg_medpersam.sam.image import (frame_to_image, image_to_frame, input_size,
                                       resize_longest_side, to_uint8_rgb, window_to_uint8)


def _embedding(original_size, seed=0) -> ImageEmbedding:
    """A random image embedding (no encoder run) for an image of ``original_size``."""
    g = torch.Generator().manual_seed(seed)
    return ImageEmbedding(torch.randn(1, 256, 64, 64, generator=g), tuple(original_size),
                          input_size(original_size))


def _manual_decode(sam, emb, coords_1024=None, labels=None, boxes_1024=None, masks=None,
                   multimask=True):
    """segment_anything's own prompt encoder + mask decoder, prompts already in SAM's frame."""
    points = None if coords_1024 is None else (coords_1024, labels)
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes_1024, masks=masks)
    return sam.mask_decoder(image_embeddings=emb.features,
                            image_pe=sam.prompt_encoder.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask)


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
    assert not tiny_sam.sam.training
    tiny_sam.eval()


def test_unknown_arch_and_encoder_dtype():
    with pytest.raises(KeyError, match='vit_b'):
        get_arch('vit_x')
    with pytest.raises(ValueError, match='encoder_dtype'):
        SAMBackend(arch='tiny', encoder_dtype='float16')


# --------------------------------------------------------------------------- encode
def test_encode_caches_by_key():
    sam = SAMBackend(arch='tiny', cache_size=1)
    img = torch.rand(3, 40, 56) * 255
    emb = sam.encode(img, key='a')
    assert sam.num_encoded == 1
    assert emb.features.shape == (1, 256, 64, 64)
    assert emb.original_size == (40, 56)
    assert emb.input_size == ResizeLongestSide(IMAGE_SIZE).get_preprocess_shape(40, 56, 1024)
    assert sam.encode(img * 0, key='a') is emb  # served from the cache, image not looked at
    assert sam.num_encoded == 1
    # Image padded at the bottom/right after normalisation, like Sam.preprocess.
    x = resize_longest_side(img[None])
    expected = sam.sam.image_encoder(sam.sam.preprocess(x))
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


# --------------------------------------------------------------------------- decode
def test_decode_batches_prompt_sets(tiny_sam):
    emb = _embedding((64, 80))
    coords = torch.tensor([[[10., 20.], [60., 30.]], [[40., 40.], [0., 0.]],
                           [[5., 60.], [79., 63.]]])
    labels = torch.tensor([[1, 0], [1, -1], [1, 1]])
    out = tiny_sam.decode(emb, Prompts(point_coords=coords, point_labels=labels))
    assert out.low_res_logits.shape == (3, 3, 256, 256)
    assert out.iou_predictions.shape == (3, 3)
    single = tiny_sam.decode(emb, Prompts(point_coords=coords, point_labels=labels),
                             multimask=False)
    assert single.low_res_logits.shape == (3, 1, 256, 256)
    assert single.iou_predictions.shape == (3, 1)
    assert single.logits().shape == (3, 1, 64, 80)
    best, iou = out.best()
    assert best.shape == (3, 1, 256, 256) and iou.shape == (3, )
    assert torch.equal(iou, out.iou_predictions.max(dim=1).values)
    # Each set decoded alone gives the same answer as in the batch.
    alone = tiny_sam.decode(emb, Prompts(point_coords=coords[1:2], point_labels=labels[1:2]))
    torch.testing.assert_close(alone.low_res_logits[0], out.low_res_logits[1],
                               atol=1e-4, rtol=1e-4)


def test_decode_mask_only_prompt_broadcasts_sparse(tiny_sam):
    emb = _embedding((64, 80))
    masks = torch.randn(2, 1, 256, 256)
    out = tiny_sam.decode(emb, Prompts(mask_logits=masks))
    assert out.low_res_logits.shape == (2, 3, 256, 256)
    expected, _ = _manual_decode(tiny_sam.sam, emb, masks=masks)
    torch.testing.assert_close(out.low_res_logits, expected)


def test_decode_broadcasts_single_point_set_over_boxes(tiny_sam):
    emb = _embedding((64, 80))
    coords, labels = torch.tensor([[[20., 30.]]]), torch.tensor([[1]])
    boxes = torch.tensor([[0., 0., 40., 40.], [10., 5., 70., 60.]])
    out = tiny_sam.decode(emb, Prompts(point_coords=coords, point_labels=labels, boxes=boxes))
    assert out.low_res_logits.shape == (2, 3, 256, 256)
    explicit = tiny_sam.decode(emb, Prompts(point_coords=coords.expand(2, 1, 2),
                                            point_labels=labels.expand(2, 1), boxes=boxes))
    torch.testing.assert_close(out.low_res_logits, explicit.low_res_logits)


@pytest.mark.parametrize('size', [(60, 100), (100, 60)])
def test_points_and_boxes_map_to_sam_frame_for_non_square_images(tiny_sam, size):
    emb = _embedding(size, seed=1)
    transform = ResizeLongestSide(IMAGE_SIZE)
    coords = np.array([[[12.0, 7.0], [55.5, 40.0], [3.0, 50.0]]])
    labels = np.array([[1, 0, 1]])
    boxes = np.array([[4.0, 6.0, 50.0, 41.0]])
    prompts = Prompts(point_coords=torch.from_numpy(coords).float(),
                      point_labels=torch.from_numpy(labels), boxes=torch.from_numpy(boxes).float())
    out = tiny_sam.decode(emb, prompts)
    ref_coords = torch.from_numpy(transform.apply_coords(coords, size)).float()
    ref_boxes = torch.from_numpy(transform.apply_boxes(boxes, size)).float()
    expected_logits, expected_iou = _manual_decode(
        tiny_sam.sam, emb, ref_coords, torch.from_numpy(labels), ref_boxes)
    torch.testing.assert_close(out.low_res_logits, expected_logits)
    torch.testing.assert_close(out.iou_predictions, expected_iou)
    # Mapping with the transposed size (the classic x/y mix-up) would change the answer.
    wrong = torch.from_numpy(transform.apply_coords(coords, size[::-1])).float()
    wrong_logits, _ = _manual_decode(tiny_sam.sam, emb, wrong, torch.from_numpy(labels),
                                     ref_boxes)
    assert not torch.allclose(out.low_res_logits, wrong_logits)


def test_frame_mappings_round_trip():
    size = (60, 100)
    h, w = input_size(size)
    assert (h, w) == ResizeLongestSide(IMAGE_SIZE).get_preprocess_shape(*size, IMAGE_SIZE)
    mask = torch.zeros(size)
    mask[10:40, 20:70] = 1
    framed = image_to_frame(mask, size, 256)
    assert framed.shape == (256, 256)
    assert framed[h // 4 + 2:, :].abs().max() == 0  # padding rows stay empty
    back = frame_to_image(framed * 20 - 10, size) > 0
    assert (back == mask.bool()).float().mean() > 0.97


# --------------------------------------------------------------------------- decoder hooks
@pytest.fixture(scope='module')
def decoder_inputs(tiny_sam):
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(1, 256, 64, 64, generator=g)
    coords = torch.tensor([[[300., 200.], [700., 500.]]])
    sparse, _ = tiny_sam.sam.prompt_encoder(points=(coords, torch.tensor([[1, 0]])),
                                            boxes=None, masks=None)
    mask_decoder = tiny_sam.sam.mask_decoder
    tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], 0)
    tokens = torch.cat([tokens[None].expand(1, -1, -1), sparse], dim=1)
    pe = tiny_sam.sam.prompt_encoder.get_dense_pe()
    attn_sim = torch.sigmoid(torch.randn(1, 1, 1, 4096, generator=g) * 3)
    target = torch.randn(1, 1, 256, generator=g)
    return emb, pe, tokens, attn_sim, target


def test_unhooked_forward_reproduces_two_way_transformer(tiny_sam, decoder_inputs):
    emb, pe, tokens, _, _ = decoder_inputs
    transformer = tiny_sam.sam.mask_decoder.transformer
    q_ref, k_ref = transformer(emb, pe, tokens)
    q, k = guided_two_way_forward(transformer, emb, pe, tokens, None, None)
    assert torch.equal(q, q_ref)
    assert torch.equal(k, k_ref)


def test_hooks_change_the_output(tiny_sam, decoder_inputs):
    emb, pe, tokens, attn_sim, target = decoder_inputs
    transformer = tiny_sam.sam.mask_decoder.transformer
    q_ref, _ = transformer(emb, pe, tokens)
    q_attn, _ = guided_two_way_forward(transformer, emb, pe, tokens, attn_sim, None)
    q_tgt, _ = guided_two_way_forward(transformer, emb, pe, tokens, None, target)
    q_both, _ = guided_two_way_forward(transformer, emb, pe, tokens, attn_sim, target)
    for q in (q_attn, q_tgt, q_both):
        assert not torch.allclose(q, q_ref, atol=1e-4)
    assert not torch.allclose(q_attn, q_tgt, atol=1e-4)


def test_guided_decoder_swaps_and_restores_forward(tiny_sam, decoder_inputs):
    emb_t, _, _, attn_sim, target = decoder_inputs
    transformer = tiny_sam.sam.mask_decoder.transformer
    emb = ImageEmbedding(emb_t, (64, 80), input_size((64, 80)))
    points = points_prompt(torch.tensor([[30., 20.]]), torch.tensor([1]))
    plain = tiny_sam.decode(emb, points).low_res_logits
    hooked = tiny_sam.decode(emb, Prompts(point_coords=points.point_coords,
                                          point_labels=points.point_labels,
                                          attn_sim=attn_sim, target_embedding=target))
    assert not torch.allclose(hooked.low_res_logits, plain, atol=1e-4)
    assert 'forward' not in vars(transformer)
    with guided_decoder(tiny_sam.sam.mask_decoder, attn_sim, target):
        assert 'forward' in vars(transformer)
        inside = tiny_sam.decode(emb, Prompts(point_coords=points.point_coords,
                                              point_labels=points.point_labels))
    torch.testing.assert_close(inside.low_res_logits, hooked.low_res_logits)
    assert 'forward' not in vars(transformer)
    with pytest.raises(ZeroDivisionError):
        with guided_decoder(tiny_sam.sam.mask_decoder, attn_sim, None):
            1 / 0
    assert 'forward' not in vars(transformer)
    torch.testing.assert_close(tiny_sam.decode(emb, points).low_res_logits, plain)
    with guided_decoder(tiny_sam.sam.mask_decoder, None, None):  # no hooks: nothing swapped
        assert 'forward' not in vars(transformer)


# --------------------------------------------------------------------------- Prompts
def test_prompts_merge_and_broadcast():
    pts = points_prompt(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([1, 0]))
    neg = points_prompt(torch.tensor([[5., 6.]]), torch.tensor([0]))
    masks = Prompts(mask_logits=torch.zeros(3, 1, 256, 256))
    box = Prompts(boxes=torch.tensor([[0., 0., 9., 9.]]), target_embedding=torch.ones(1, 1, 256))
    merged = Prompts.merge([pts, None, neg, masks, box])
    assert merged.num_sets == 3
    assert merged.point_coords.shape == (3, 3, 2)
    assert merged.point_labels.tolist() == [[1, 0, 0]] * 3
    assert merged.point_coords[2, 2].tolist() == [5., 6.]
    assert merged.boxes.shape == (3, 4)
    assert merged.mask_logits.shape == (3, 1, 256, 256)
    assert merged.target_embedding.shape == (1, 1, 256)
    assert Prompts.merge([]).is_empty and Prompts.merge([]).num_sets == 1
    assert not merged.is_empty
    assert Prompts(attn_sim=torch.zeros(1, 1, 1, 4096)).is_empty
    sel = merged.select(torch.tensor([0, 2]))
    assert sel.num_sets == 2 and sel.target_embedding is merged.target_embedding
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
        Prompts(mask_logits=torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match='broadcast'):
        Prompts(point_coords=c, point_labels=lab).expand(3)
    with pytest.raises(ValueError, match='boxes'):
        Prompts.merge([Prompts(boxes=torch.zeros(1, 4)), Prompts(boxes=torch.ones(1, 4))])
    with pytest.raises(ValueError, match='attn_sim'):
        Prompts.merge([Prompts(attn_sim=torch.zeros(1, 1, 1, 4096)),
                       Prompts(attn_sim=torch.zeros(1, 1, 1, 4096))])


# --------------------------------------------------------------------------- image windowing
def test_uint8_is_unchanged_and_grayscale_becomes_rgb():
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, (5, 7, 3)).astype(np.uint8)
    assert np.array_equal(to_uint8_rgb(rgb), rgb)
    gray = rng.randint(0, 256, (5, 7)).astype(np.uint8)
    out = to_uint8_rgb(gray)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))
    assert np.array_equal(to_uint8_rgb(gray[..., None]), out)
    rgba = np.dstack([rgb, np.full((5, 7), 9, np.uint8)])
    assert np.array_equal(to_uint8_rgb(rgba), rgb)  # alpha dropped
    with pytest.raises(ValueError, match='shape'):
        to_uint8_rgb(np.zeros((5, 7, 2), np.uint8))


def test_uint16_windowed_by_percentiles():
    img = np.full((10, 10), 1000, np.uint16)
    img[5:] = 3000
    out = to_uint8_rgb(img)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    assert (out[:5] == 0).all() and (out[5:] == 255).all()
    ramp = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    low, high = np.percentile(ramp.astype(float), (0.5, 99.5))
    expected = np.rint(np.clip((ramp - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(to_uint8_rgb(ramp)[..., 0], expected)
    assert window_to_uint8(np.full((3, 3), 7, np.uint16)).max() == 0  # flat image: black


def test_float_with_nan_and_explicit_window():
    img = np.linspace(0.0, 1.0, 100).reshape(10, 10)
    img[0, 0] = np.nan
    out = to_uint8_rgb(img)
    assert out.dtype == np.uint8
    assert out[0, 0, 0] == 0  # NaN -> the window's low end
    assert out[9, 9, 0] == 255 and out[..., 0].max() == 255
    assert np.all(np.diff(out[1:, :, 0].ravel().astype(int)) >= 0)  # monotone ramp
    assert to_uint8_rgb(np.full((4, 4), np.nan)).max() == 0
    ct = np.array([[-1000.0, 0.0, 20.0, 80.0, 1000.0]])
    assert to_uint8_rgb(ct, window=(0, 80))[0, :, 0].tolist() == [0, 0, 64, 255, 255]
    # An explicit window also overrides the percentiles for integer images.
    assert to_uint8_rgb(np.array([[0, 50, 100]], np.uint16),
                        window=(0, 200))[0, :, 0].tolist() == [0, 64, 128]


def test_sdpa_encoder_attention_matches_segment_anything():
    from mmseg_medpersam.sam import SAMBackend
    image = torch.rand(3, 70, 90) * 255
    eager = SAMBackend(arch='tiny', seed=3)
    fast = SAMBackend(arch='tiny', seed=3, encoder_attention='sdpa')
    assert fast.sam.state_dict().keys() == eager.sam.state_dict().keys()
    a, b = eager.encode(image).features, fast.encode(image).features
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    with pytest.raises(ValueError, match='encoder_attention'):
        SAMBackend(arch='tiny', encoder_attention='flash')
