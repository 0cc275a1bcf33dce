"""Prompt generators: PerSAM location prior, mask/box/band points, non-square image frames."""
import numpy as np
import pytest
import torch

from mmseg_medpersam.methods.persam import PerSAMLocationPrior
from mmseg_medpersam.prompts import (
    BandPointPrompt,
    BoxPrompt,
    MaskPrompt,
    PromptContext,
    Prompts,
    ReferenceContext,
)
from mmseg_medpersam.prompts.band_points import inner_and_band, sub_regions
from mmseg_medpersam.sam import FrameGeometry, ImageEmbedding


def make_ctx(mask: torch.Tensor, features: torch.Tensor = None, seed: int = 0) -> PromptContext:
    """A context over an (H, W) image with random (or given) 64x64 SAM features."""
    h, w = mask.shape
    g = torch.Generator().manual_seed(seed)
    feats = features if features is not None else torch.randn(1, 256, 64, 64, generator=g)
    emb = ImageEmbedding(feats, FrameGeometry((h, w), 1024))
    image = torch.zeros(3, h, w)
    ref = ReferenceContext(image=image, mask=mask, embedding=emb, key='ref')
    return PromptContext(reference=ref, target=emb, image=image, mask=mask)


def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return torch.from_numpy(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)


def test_location_prior_points_are_similarity_extrema():
    mask = ellipse(90, 120, 45, 60, 20, 30)
    ctx = make_ctx(mask)
    prompts = PerSAMLocationPrior()(ctx)
    proto = ctx.reference.mean_feature('persam')  # PerSAM's own reference-cell rule
    sim = ctx.similarity_map(proto)
    (px, py), (nx, ny) = prompts.point_coords[0].long().tolist()
    assert sim[py, px] == sim.max() and sim[ny, nx] == sim.min()
    assert prompts.point_labels.tolist() == [[1, 0]]
    hook = prompts.decoder_hook
    assert hook.attn_sim.shape == (1, 1, 1, 4096)
    assert torch.all((hook.attn_sim > 0) & (hook.attn_sim < 1))
    assert torch.allclose(hook.target_embedding.flatten(), proto)
    # PerSAM-F: positive point only, no hooks.
    f = PerSAMLocationPrior(negative=False, target_guided_attention=False,
                            target_semantic_prompt=False, prototype='mean_max')(ctx)
    assert f.point_labels.tolist() == [[1]] and f.decoder_hook is None


def test_location_prior_finds_the_planted_feature():
    """A target cell carrying the reference prototype is where the positive point lands."""
    mask = ellipse(64, 64, 32, 32, 10, 10)
    feats = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
    ctx = make_ctx(mask, feats)
    target = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2))
    target[0, :, 10, 50] = ctx.reference.prototype * 5
    ctx.target = ImageEmbedding(target, FrameGeometry((64, 64), 1024))
    x, y = PerSAMLocationPrior()(ctx).point_coords[0, 0].tolist()
    assert abs(x - 50.5) <= 1.5 and abs(y - 10.5) <= 1.5


def test_mask_prompt_round_trips_in_sam_frame_for_non_square_images():
    h, w = 233, 197
    mask = ellipse(h, w, 150, 60, 40, 30)
    prompts = MaskPrompt(logit_scale=8.0)(make_ctx(mask))
    assert prompts.mask_logits.shape == (1, 1, 256, 256)
    # the padding (right of the image in SAM's frame) is background
    geo = FrameGeometry((h, w), 1024)
    _, in_w = geo.input_size
    assert torch.all(prompts.mask_logits[..., in_w // 4 + 1:] < 0)
    back = geo.frame_to_image(prompts.mask_logits[0, 0]) > 0
    dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert dice > 0.95


def test_box_and_points_land_on_the_mask_in_sam_frame():
    h, w = 233, 197
    mask = ellipse(h, w, 150, 60, 40, 30)
    ctx = make_ctx(mask)
    box = BoxPrompt()(ctx).boxes[0]
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    geo = FrameGeometry((h, w), 1024)
    framed = geo.image_to_frame(mask.float(), 1024) > 0.5
    fy, fx = torch.nonzero(framed, as_tuple=True)
    fbox = geo.boxes_to_frame(box[None])[0]
    scale = 1024 / h
    assert abs(fbox[0] - fx.min()) <= 2 * scale and abs(fbox[2] - fx.max()) <= 2 * scale
    assert abs(fbox[1] - fy.min()) <= 2 * scale and abs(fbox[3] - fy.max()) <= 2 * scale
    pts = BandPointPrompt(num_regions=6)(ctx)
    pos = pts.point_coords[0][pts.point_labels[0] == 1]
    fp = geo.points_to_frame(pos + 0.5).long()
    assert torch.all(framed[fp[:, 1].clamp(max=1023), fp[:, 0].clamp(max=1023)])


def test_box_margin_is_clipped_to_the_image():
    mask = torch.zeros(50, 60, dtype=torch.bool)
    mask[0:10, 50:60] = True
    box = BoxPrompt(margin=5)(make_ctx(mask)).boxes[0].tolist()
    assert box == [45, 0, 59, 14]


@pytest.mark.parametrize('partition', ['sector', 'grid'])
def test_band_points_lie_in_inner_region_and_band_and_spread(partition):
    h, w = 160, 200
    mask = ellipse(h, w, 80, 100, 50, 70)
    ctx = make_ctx(mask)
    gen = BandPointPrompt(num_regions=8, erosion=0.2, dilation=0.2, partition=partition)
    prompts = gen(ctx)
    inner, band = inner_and_band(mask.numpy(), 0.2, 0.2)
    coords = prompts.point_coords[0].long().numpy()
    labels = prompts.point_labels[0].numpy()
    pos, neg = coords[labels == 1], coords[labels == 0]
    assert len(pos) == 8 and len(neg) == 8
    assert inner[pos[:, 1], pos[:, 0]].all() and band[neg[:, 1], neg[:, 0]].all()
    assert not mask.numpy()[neg[:, 1], neg[:, 0]].any()
    ids = sub_regions(mask.numpy(), 8, partition)
    assert len(set(ids[pos[:, 1], pos[:, 0]].tolist())) == 8  # one point per sub-region
    # spread: points cover the structure, far more than the single-peak PerSAM prior
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min(axis=1).mean() > 0.2 * np.sqrt(mask.sum().item())


@pytest.mark.parametrize('per_component', [False, True])
@pytest.mark.parametrize('kind', ['pixel', 'border', 'components', 'specks', 'full', 'empty'])
def test_generators_on_degenerate_masks(kind, per_component):
    h, w = 40, 50
    mask = torch.zeros(h, w, dtype=torch.bool)
    if kind == 'pixel':
        mask[20, 25] = True
    elif kind == 'specks':  # 25 equal pieces: none reaches min_component_fraction (5 %)
        for y in range(5):
            for x in range(5):
                mask[3 + 8 * y:5 + 8 * y, 3 + 9 * x:5 + 9 * x] = True
    elif kind == 'border':
        mask[:, :8] = True
    elif kind == 'components':
        mask[5:10, 5:10] = True
        mask[25:35, 30:45] = True
    elif kind == 'full':
        mask[:] = True
    ctx = make_ctx(mask)
    outs = [g(ctx) for g in (MaskPrompt(), BoxPrompt(per_component=per_component),
                             BandPointPrompt())]
    if kind == 'empty':
        assert all(o is None for o in outs)
        return
    boxes = outs[1].boxes
    if per_component and kind == 'components':
        assert boxes.shape == (2, 4)
    else:  # one box, around the whole mask (specks: no piece gets a box of its own)
        assert boxes.tolist() == [mask_box(mask)]
    outs[1] = Prompts(boxes=boxes[:1])
    merged = Prompts.merge(outs)
    assert merged.mask_logits.shape == (1, 1, 256, 256)
    assert merged.boxes.shape == (1, 4)
    labels = merged.point_labels[0]
    assert (labels == 1).sum() >= 1
    xy = merged.point_coords[0][labels == 1].long()
    assert mask[xy[:, 1], xy[:, 0]].all()
    if kind == 'full':
        assert (labels == 0).sum() == 0  # no band outside a full-image mask


def mask_box(mask: torch.Tensor) -> list:
    ys, xs = np.nonzero(mask.numpy())
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def test_official_persam_geometry_differs_from_the_frame_aligned_one_on_non_square_images():
    """PerSAM's code stretches the image-sized map over the whole token grid (padding too)."""
    h, w = 233, 197
    mask = ellipse(h, w, 150, 60, 30, 25)
    feats = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(3))
    ctx = make_ctx(mask, feats)
    official = PerSAMLocationPrior(official_geometry=True)(ctx).decoder_hook.attn_sim
    framed = PerSAMLocationPrior(official_geometry=False)(ctx).decoder_hook.attn_sim
    assert official.shape == framed.shape == (1, 1, 1, 4096)
    peak = [divmod(int(a.argmax()), 64) for a in (official, framed)]
    assert peak[0] != peak[1]
    # The frame-aligned bias peaks where the image's own map peaks (same token); the official
    # one peaks further right: the 197 px width is stretched over all 64 columns.
    sim = ctx.similarity_map(ctx.reference.mean_feature('persam'))
    y, x = divmod(int(sim.argmax()), w)
    assert abs(peak[0][1] - x * 64 / w) <= 1.5 and abs(peak[0][0] - y * 64 / h) <= 1.5
    # Reference cells: PerSAM's bilinear point-sample at 123.675/255 vs half coverage.
    persam_cells = ctx.reference.foreground_cells('persam')
    coverage_cells = ctx.reference.foreground_cells('coverage')
    assert persam_cells.any() and coverage_cells.any()
    assert 0 < int((persam_cells ^ coverage_cells).sum()) < int(coverage_cells.sum())
    with pytest.raises(ValueError, match='cell rule'):
        ctx.reference.foreground_cells('median')


def two_blobs(h=80, w=120):
    """Two separate ellipses (a 'left' one larger than the 'right' one) and a 2-pixel speck."""
    mask = ellipse(h, w, 40, 30, 15, 20) | ellipse(h, w, 40, 90, 10, 12)
    mask[5:6, 60:62] = True
    return mask


def test_component_boxes_largest_first_without_specks():
    from mmseg_medpersam.utils.masks import component_boxes
    boxes = component_boxes(two_blobs())
    assert boxes.tolist() == [[10.0, 25.0, 50.0, 55.0], [78.0, 30.0, 102.0, 50.0]]
    assert component_boxes(two_blobs(), min_fraction=0).shape == (3, 4)
    assert component_boxes(two_blobs(), max_components=1).shape == (1, 4)
    assert component_boxes(torch.zeros(8, 8, dtype=torch.bool)) is None


def test_box_prompt_one_box_or_one_per_component():
    ctx = make_ctx(two_blobs())
    assert BoxPrompt()(ctx).boxes.tolist() == [[10.0, 5.0, 102.0, 55.0]]
    per = BoxPrompt(per_component=True, margin=2)(ctx)
    assert per.boxes.tolist() == [[8.0, 23.0, 52.0, 57.0], [76.0, 28.0, 104.0, 52.0]]
    with pytest.raises(ValueError, match='max_components'):
        BoxPrompt(per_component=True, max_components=0)


def test_restrict_to_boxes_keeps_each_set_inside_its_box():
    geo = FrameGeometry((80, 120), 1024)
    boxes = torch.tensor([[10.0, 25.0, 50.0, 55.0], [78.0, 30.0, 102.0, 50.0]])
    points = torch.tensor([[[30.0, 40.0], [90.0, 40.0], [5.0, 5.0]]])
    labels = torch.tensor([[1, 1, 0]])
    logits = torch.randn(1, 1, 256, 256)
    out = Prompts(point_coords=points, point_labels=labels, boxes=boxes,
                  mask_logits=logits).restrict_to_boxes(geo)
    assert out.point_labels.tolist() == [[1, -1, -1], [-1, 1, -1]]
    assert out.mask_logits.shape == (2, 1, 256, 256)
    # box 0 spans x 10..50 of 120 px -> frame columns 21..108 of 256 (scale 256/120 * ... )
    scale = 256 / 1024 * geo.input_size[1] / 120
    inside = out.mask_logits[0, 0, int(40 * scale), int(30 * scale)]
    assert inside == logits[0, 0, int(40 * scale), int(30 * scale)]
    assert out.mask_logits[0, 0, int(40 * scale), int(90 * scale)] == logits.min()
    single = Prompts(point_coords=points, point_labels=labels, boxes=boxes[:1])
    assert single.restrict_to_boxes(geo) is single


def test_decode_union_of_one_set_is_the_best_output(tiny_sam):
    from mmseg_medpersam.prompts.structures import decode_prompts, decode_union
    emb = tiny_sam.encode(torch.rand(3, 80, 120) * 255)
    one = Prompts(boxes=torch.tensor([[10.0, 25.0, 50.0, 55.0]]))
    logits, iou = decode_union(tiny_sam, emb, one)
    best, best_iou = decode_prompts(tiny_sam, emb, one).best()
    torch.testing.assert_close(logits, best)
    two = Prompts(boxes=torch.tensor([[10.0, 25.0, 50.0, 55.0], [78.0, 30.0, 102.0, 50.0]]))
    union, ious = decode_union(tiny_sam, emb, two)
    parts, _ = decode_prompts(tiny_sam, emb, two).best()
    assert union.shape == (1, 1, 256, 256) and ious.shape == (2, )
    torch.testing.assert_close(union[0], parts.amax(dim=0))
