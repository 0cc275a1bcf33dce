"""Tests of the warping model: spatial transformer, losses, augmentation, fit / warp API."""
import math

import numpy as np
import pytest
import torch

from mmseg_medpersam.methods.medpersam.warping import (
    FlowUNet,
    RandomDeformation,
    WarpFitter,
    WarpingModel,
    integrate_velocity,
    local_ncc_loss,
    mask_loss,
    resize_flow,
    smoothness_loss,
    to_gray,
    warp,
)
from mmseg_medpersam.methods.medpersam.warping.fitter import plateau_converged

TINY_NET = dict(channels=(8, 16, 16), stem_channels=8)


def tiny_model(augmentation=None, **kwargs) -> WarpingModel:
    """A small fast model; ``kwargs`` by their flat names, put in their groups here."""
    from mmseg_medpersam.methods.medpersam.warping.settings import group_flat_keys
    cfg = dict(flow_net=TINY_NET, work_size=(32, 32), iters=40, retrain_iters=10,
               batch_size=2, aug_batch_size=2, optimizer=dict(lr=3e-3), seed=0, amp='none')
    cfg.update(kwargs)
    groups = group_flat_keys(dict(network=None, losses=None, schedule=None), cfg)
    return WarpingModel(augmentation=augmentation, **groups)


def ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def shape_image(mask: np.ndarray) -> np.ndarray:
    """A uint8 image: bright shape with an inner darker ring on a dark background."""
    img = np.full(mask.shape, 30, np.uint8)
    img[mask] = 200
    return img


# ---------------------------------------------------------------- spatial transformer
def test_integer_flow_moves_mask_exactly():
    mask = torch.zeros(1, 1, 20, 24)
    mask[0, 0, 5:12, 6:15] = 1
    mask[0, 0, 8, 3] = 1
    flow = torch.zeros(1, 2, 20, 24)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # out[y, x] = src[y - 2, x + 3]
    expected = torch.zeros_like(mask)
    expected[0, 0, 2:, :21] = mask[0, 0, :-2, 3:]
    assert expected[0, 0, 10, 0] == 1 and expected.sum() == mask.sum()
    assert torch.equal(warp(mask, flow, mode='nearest'), expected)
    # Bilinear: exact up to float rounding of the normalised coordinates.
    assert torch.allclose(warp(mask, flow), expected, atol=1e-5)
    assert torch.equal(warp(mask, flow) > 0.5, expected > 0.5)


def test_zero_flow_is_identity():
    src = torch.rand(2, 3, 17, 13)
    zero = torch.zeros(2, 2, 17, 13)
    assert torch.allclose(warp(src, zero), src, atol=1e-6)
    assert torch.equal(warp(src, zero, mode='nearest'), src)
    assert torch.equal(resize_flow(zero, (40, 9)), torch.zeros(2, 2, 40, 9))


def test_resized_flow_keeps_displacement_meaning():
    torch.manual_seed(0)
    src = torch.rand(1, 1, 50, 40)
    flow_lo = torch.randn(1, 2, 16, 12) * 2  # pixels of the 16x12 grid
    flow_hi = resize_flow(flow_lo, (61, 45))  # (61-1) = 4*(16-1), (45-1) = 4*(12-1)
    out_lo = warp(src, flow_lo)  # source of another size: normalised coordinates
    out_hi = warp(src, flow_hi)
    assert torch.allclose(out_hi[..., ::4, ::4], out_lo, atol=1e-5)
    # Displacements scale with the grid: a uniform 1.5 px shift on 16 rows is 6 px on 61.
    shift = torch.zeros(1, 2, 16, 12)
    shift[:, 1] = 1.5
    assert torch.allclose(resize_flow(shift, (61, 45))[:, 1], torch.full((1, 61, 45), 6.0))


def test_constant_velocity_integrates_to_itself():
    vel = torch.zeros(1, 2, 12, 10)
    vel[:, 0] = 2.0
    assert torch.allclose(integrate_velocity(vel, 5), vel, atol=1e-5)
    assert torch.equal(integrate_velocity(vel, 0), vel)


# ---------------------------------------------------------------- losses and augmentation
def test_losses():
    torch.manual_seed(0)
    img = torch.rand(2, 1, 24, 24)
    assert local_ncc_loss(img, img, 5) < 0.01
    assert local_ncc_loss(img, 0.5 * img + 0.2, 5) < 0.01  # intensity-affine invariant
    assert local_ncc_loss(img, torch.rand(2, 1, 24, 24), 5) > 0.5
    const = torch.ones(1, 2, 8, 8) * 3
    assert smoothness_loss(const) == 0 and smoothness_loss(torch.randn(1, 2, 8, 8)) > 0
    m = (torch.rand(2, 1, 16, 16) > 0.5).float()
    assert mask_loss(m, m) < 0.01 and mask_loss(1 - m, m) > 1.0
    empty = torch.zeros(1, 1, 8, 8)
    assert torch.isfinite(mask_loss(empty, empty)) and mask_loss(empty, empty) < 0.01


def test_augmentation_is_a_known_seeded_deformation():
    aug = RandomDeformation(noise=0.0, gamma=(1.0, 1.0), contrast=(1.0, 1.0), brightness=0.0)
    img = torch.rand(1, 1, 30, 26)
    mask = torch.from_numpy(ellipse(30, 26, 15, 13, 8, 6)).float()[None, None]
    a_img, a_mask, flow = aug(img, mask, 3, torch.Generator().manual_seed(1))
    assert a_img.shape == (3, 1, 30, 26) and flow.shape == (3, 2, 30, 26)
    assert torch.allclose(a_mask, warp(mask, flow), atol=1e-6)
    assert torch.allclose(a_img, warp(img, flow).clamp(0, 1), atol=1e-6)
    assert flow.abs().max() > 0.5  # it really deforms
    b_img, _, b_flow = aug(img, mask, 3, torch.Generator().manual_seed(1))
    assert torch.equal(flow, b_flow) and torch.equal(a_img, b_img)


@pytest.mark.parametrize('out_level,steps', [(0, 0), (1, 0), (2, 4)])
def test_flow_net_starts_near_identity(out_level, steps):
    net = FlowUNet(**TINY_NET, out_level=out_level, integration_steps=steps)
    x = torch.rand(2, 1, 33, 27)
    flow = net(x, torch.rand(2, 1, 33, 27))
    assert flow.shape == (2, 2, 33, 27) and flow.abs().max() < 0.01


def test_registered_in_mmseg_models():
    from mmseg.registry import MODELS
    assert MODELS.module_dict['WarpingModel'] is WarpingModel
    assert MODELS.module_dict['FlowUNet'] is FlowUNet


# ---------------------------------------------------------------- WarpingModel
def test_to_gray_accepts_rgb_layouts():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 9, 7), dtype=np.uint8)
    a = to_gray(rgb)
    b = to_gray(rgb.transpose(1, 2, 0))
    c = to_gray(torch.from_numpy(rgb).float())  # 0-255 float, as mmseg feeds images
    assert a.shape == (9, 7) and torch.allclose(a, b) and torch.allclose(a, c, atol=1e-6)
    assert 0 <= float(a.min()) and float(a.max()) <= 1


def test_one_intensity_rule_divides_never_guesses():
    """0..255 in any dtype or layout -> /255: a dark image stays dark (no min-max stretch)."""
    dark = np.full((4, 5), 51, np.uint8)
    assert torch.allclose(to_gray(dark), torch.full((4, 5), 0.2))
    assert torch.allclose(to_gray(dark.astype(np.float32)), torch.full((4, 5), 0.2))
    unit = np.full((4, 5), 1.0, np.float32)  # not taken for a [0, 1] image
    assert torch.allclose(to_gray(unit), torch.full((4, 5), 1 / 255))
    assert float(to_gray(np.array([[-10.0, 300.0]])).min()) == 0  # clipped, as a window
    assert float(to_gray(np.array([[-10.0, 300.0]])).max()) == 1


def test_flat_settings_of_earlier_releases_go_to_their_groups():
    flat = WarpingModel(iters=7, retrain_iters=3, loss_weights=dict(aug=0.0),
                        work_long_side=64, convergence=dict(window=5))
    grouped = WarpingModel(schedule=dict(iters=7, retrain_iters=3, convergence=dict(window=5)),
                           losses=dict(weights=dict(aug=0.0)), network=dict(work_long_side=64))
    assert isinstance(flat.fitter, WarpFitter)
    assert flat.network == grouped.network
    assert flat.fitter.schedule == grouped.fitter.schedule
    assert flat.fitter.losses == grouped.fitter.losses
    # A flat key laid over a grouped config (an old script's --cfg-options) is the override.
    over = WarpingModel(iters=30, schedule=dict(iters=400, retrain_iters=100))
    assert (over.fitter.schedule.iters, over.fitter.schedule.retrain_iters) == (30, 100)


def test_warm_start_continues_a_fitted_network_only():
    ref_mask = ellipse(32, 32, 16, 16, 8, 6)
    tgts = [shape_image(ellipse(32, 32, 17, 14, 9, 7))]
    model = tiny_model(iters=6, warm_start_iters=4)
    with pytest.raises(ValueError, match='WarpingModel.warm_start continues a fitted network'):
        model.warm_start(shape_image(ref_mask), ref_mask, tgts)
    model.fit(shape_image(ref_mask), ref_mask, tgts)
    before = [p.detach().clone() for p in model.parameters()]
    info = model.warm_start(shape_image(ref_mask), ref_mask, tgts)
    assert info['iters'] == 4 and info['retrain'] == 0
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert any(changed)


def test_aug_loss_recovers_known_affine():
    """Trained by L_aug alone (no target seen), the flow recovers an affine of the shape."""
    h = w = 32
    ref_mask = ellipse(h, w, 15.5, 15.5, 9, 6)
    ref_img = shape_image(ref_mask)
    # Target: the ellipse shifted by (+3, -2) px and scaled by 1.12.
    tgt_mask = ellipse(h, w, 15.5 + 3, 15.5 - 2, 9 * 1.12, 6 * 1.12)
    model = tiny_model(
        loss_weights=dict(aug=1.0), iters=150, aug_batch_size=4,
        augmentation=dict(rotation=10, scale=(0.85, 1.2), translation=0.15,
                          elastic_magnitude=0.5))
    info = model.fit(ref_img, ref_mask, targets=[])
    assert info['iters'] == 150 and 'loss_aug' in info
    warped = model.warp_masks(ref_img, ref_mask, [shape_image(tgt_mask)])[0].numpy() > 0.5
    unwarped = dice(ref_mask, tgt_mask)
    learned = dice(warped, tgt_mask)
    assert learned > 0.9 and learned > unwarped + 0.1, (learned, unwarped)


def test_fit_on_targets_registers_them():
    """L_warp on unlabeled targets of another size moves the mask onto them."""
    ref_mask = ellipse(40, 36, 20, 18, 10, 7)
    tgt_masks = [ellipse(48, 40, 26, 18, 12, 9), ellipse(48, 40, 20, 22, 10, 10)]
    model = tiny_model(iters=80, similarity=dict(type='mse', scales=(1, 2)),
                       loss_weights=dict(smooth=1e-3))
    model.fit(shape_image(ref_mask), ref_mask, [shape_image(m) for m in tgt_masks])
    warped = model.warp_masks(shape_image(ref_mask), ref_mask,
                              [shape_image(m) for m in tgt_masks])
    for wm, tm in zip(warped, tgt_masks):
        assert wm.shape == tm.shape
        assert float(wm.min()) >= 0 and float(wm.max()) <= 1
        base = dice(np.pad(ref_mask, ((0, 8), (0, 4))), tm)
        assert dice(wm.numpy() > 0.5, tm) > max(0.85, base + 0.05)


def test_fit_is_deterministic_under_seed():
    ref_mask = ellipse(24, 24, 12, 12, 6, 4)
    tgts = [shape_image(ellipse(24, 24, 13, 11, 7, 5)), shape_image(ellipse(24, 24, 11, 12, 5, 5))]
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # the global state must not matter
        model = tiny_model(iters=8, loss_weights=dict(aug=0.5))
        info = model.fit(shape_image(ref_mask), ref_mask, tgts)
        flows = model.predict_flow(shape_image(ref_mask), tgts)
        runs.append((info, flows))
    assert runs[0][0]['loss_total'] == runs[1][0]['loss_total']
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    other = tiny_model(iters=8, loss_weights=dict(aug=0.5), seed=5)
    other.fit(shape_image(ref_mask), ref_mask, tgts)
    assert not torch.equal(other.predict_flow(shape_image(ref_mask), tgts)[0], runs[0][1][0])


@pytest.mark.parametrize('kind', ['pixel', 'border', 'components', 'full', 'empty'])
def test_degenerate_masks(kind):
    h, w = 20, 18
    mask = np.zeros((h, w), bool)
    if kind == 'pixel':
        mask[7, 9] = True
    elif kind == 'border':
        mask[:5, :] = True
        mask[:, -3:] = True
    elif kind == 'components':
        mask |= ellipse(h, w, 5, 5, 3, 3) | ellipse(h, w, 14, 12, 3, 4)
        mask[18, 1] = True
    elif kind == 'full':
        mask[:] = True
    img = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    tgts = [np.roll(img, 1, axis=0), np.random.default_rng(1).integers(0, 256, (15, 22),
                                                                        dtype=np.uint8)]
    model = tiny_model(iters=3, loss_weights=dict(aug=1.0), work_size=(16, 16))
    info = model.fit(img, mask, tgts)
    assert all(math.isfinite(v) for v in info.values())
    out = model.warp_masks(img, mask, tgts)
    assert [tuple(o.shape) for o in out] == [(h, w), (15, 22)]
    for o in out:
        assert torch.isfinite(o).all() and float(o.min()) >= 0 and float(o.max()) <= 1
        if kind == 'empty':
            assert float(o.max()) == 0
        if kind == 'full':
            assert torch.allclose(o, torch.ones_like(o))
    # A (C, H, W) stack (multi-class) is warped by the same flows, map by map.
    stack = np.stack([mask, ~mask]).astype(np.float32)
    both = model.warp_masks(img, stack, tgts)
    assert [tuple(o.shape) for o in both] == [(2, h, w), (2, 15, 22)]
    assert all(torch.allclose(b[0], o, atol=1e-6) for b, o in zip(both, out))


def test_pseudo_label_retraining_continues_training():
    ref_mask = ellipse(32, 32, 16, 16, 8, 6)
    tgt_masks = [ellipse(32, 32, 17, 14, 9, 7), ellipse(32, 32, 15, 17, 7, 7)]
    tgts = [shape_image(m) for m in tgt_masks]
    model = tiny_model(iters=20, retrain_iters=7, loss_weights=dict(pseudo=1.0))
    first = model.fit(shape_image(ref_mask), ref_mask, tgts)
    assert model.fitted and first['retrain'] == 0 and 'loss_pseudo' not in first
    before = [p.detach().clone() for p in model.parameters()]
    info = model.refit(shape_image(ref_mask), ref_mask, tgts, [tgt_masks[0], None])
    assert info['retrain'] == 1 and info['iters'] == 7 and math.isfinite(info['loss_pseudo'])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match='1 pseudo-labels for 2 targets'):
        model.refit(shape_image(ref_mask), ref_mask, tgts, [tgt_masks[0]])
    with pytest.raises(ValueError, match='fit it first'):
        tiny_model().refit(shape_image(ref_mask), ref_mask, tgts, [tgt_masks[0], None])


def test_fit_trains_inside_no_grad():
    """mmengine's test loop and the inference tool run under no_grad: fit must still train."""
    model = WarpingModel(schedule=dict(iters=3), network=dict(work_size=(32, 32)))
    before = {k: v.clone() for k, v in model.flow_net.state_dict().items()}
    img = torch.rand(32, 32)
    with torch.no_grad():
        model.fit(img, img > 0.5, [torch.rand(32, 32)])
    changed = [k for k, v in model.flow_net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and bool(model.fitted)


def test_working_size_follows_the_image_not_a_fixed_task():
    from mmseg_medpersam.methods.medpersam.warping.warping_model import working_size
    assert working_size((233, 197), 192) == (192, 160)
    assert working_size((197, 233), 192) == (160, 192)  # another orientation
    assert working_size((512, 512), 192) == (192, 192)
    assert working_size((40, 600), 192) == (16, 192)
    model = WarpingModel(schedule=dict(iters=1))
    assert model.work_size(torch.zeros(300, 100)) == (192, 64)


@pytest.mark.parametrize('kwargs, message', [
    (dict(schedule=dict(iters=-1)), 'iters must be an integer >= 0'),
    (dict(losses=dict(weights=dict(augment=1.0))), "unknown loss_weights \\['augment'\\]"),
    (dict(losses=dict(similarity=dict(type='mi'))), "similarity type must be 'ncc' or 'mse'"),
    (dict(schedule=dict(optimizer=dict(type='Adamm'))),
     "optimizer type 'Adamm' is not a registered optimizer"),
    (dict(schedule=dict(optimizer=dict(lr=-1.0))), 'optimizer .* Invalid learning rate'),
    (dict(network=dict(amp='fp8')), "amp must be 'auto', 'bf16' or 'none'"),
    (dict(network=dict(work_size=(8, 32))), 'network.work_size height must be an integer >= 16'),
    (dict(schedule=dict(convergence=dict(patience=3))),
     "unknown convergence keys \\['patience'\\]"),
    (dict(schedule=dict(convergence=dict(min_iters=500, max_iters=100))),
     'convergence.min_iters 500 > max_iters 100'),
    (dict(schedule=dict(epochs=3)), "unknown schedule settings \\['epochs'\\]"),
    (dict(iterations=3), "unknown setting 'iterations'"),
])
def test_invalid_settings_fail_when_built(kwargs, message):
    with pytest.raises(ValueError, match='WarpingModel: ' + message):
        WarpingModel(**kwargs)


def test_bf16_fit_stays_close_to_float32():
    """The bf16 network path trains to (nearly) the same warp as float32."""
    ref_mask = ellipse(32, 32, 16, 16, 8, 6)
    tgt_masks = [ellipse(32, 32, 18, 14, 9, 7)]
    outs = []
    for amp in ('none', 'bf16'):
        model = tiny_model(iters=60, amp=amp)
        model.fit(shape_image(ref_mask), ref_mask, [shape_image(m) for m in tgt_masks])
        outs.append(model.warp_masks(shape_image(ref_mask), ref_mask,
                                     [shape_image(m) for m in tgt_masks])[0].numpy() > 0.5)
    assert dice(outs[0], outs[1]) > 0.95
    assert dice(outs[1], tgt_masks[0]) > dice(ref_mask, tgt_masks[0])


def _run_rule(losses, **convergence):
    """Feed a loss curve to the convergence rule; (step it stopped at or None, rates)."""
    cfg = dict(dict(window=10, tol=0.01, factor=0.5, min_iters=10, max_iters=10**6),
               **convergence)
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plateau, history, rates = {}, [], []
    for step, loss in enumerate(losses, 1):
        history.append(dict(total=loss))
        if plateau_converged(optim, plateau, history, cfg, min_lr=0.1):
            return step, rates
        rates.append(optim.param_groups[0]['lr'])
    return None, rates


def test_convergence_rule_goes_on_while_the_loss_falls_and_stops_on_a_plateau():
    falling = [float(np.exp(-0.002 * i)) for i in range(3000)]  # 2 % per window
    assert _run_rule(falling)[0] is None
    # Flat: the rate halves at each window without progress, down to 0.1 of it; a further
    # window without progress at that rate is convergence.
    stop, rates = _run_rule([1.0] * 1000)
    assert stop == 60 and sorted(set(rates), reverse=True) == [1.0, 0.5, 0.25, 0.125, 0.1]
    # Progress below tol is no progress; a negative loss (NCC) is handled by its size.
    assert _run_rule([1.0 - 1e-4 * i for i in range(1000)])[0] == 60
    assert _run_rule([-1.0 - 1e-4 * i for i in range(1000)])[0] == 60
    assert _run_rule([-1.0 - 0.01 * i for i in range(200)])[0] is None
    assert _run_rule([1.0] * 1000, min_iters=200)[0] == 200  # never before min_iters


def test_fit_until_converged_stops_before_its_cap_and_says_how_long_it_ran():
    ref_mask = ellipse(40, 36, 20, 18, 10, 7)
    tgt = [ellipse(40, 36, 22, 18, 10, 8)]
    model = tiny_model(convergence=dict(window=5, tol=0.5, min_iters=5, max_iters=500))
    result = model.fit(shape_image(ref_mask), ref_mask, [shape_image(m) for m in tgt])
    assert 5 <= result['iters'] < 500 and result['iters'] % 5 == 0
    # Retraining keeps its fixed number of steps.
    again = model.refit(shape_image(ref_mask), ref_mask, [shape_image(m) for m in tgt], [tgt[0]])
    assert again['iters'] == model.fitter.schedule.retrain_iters



@pytest.mark.parametrize('window', [1, 3, 9, 41])
def test_box_mean_is_the_true_count_mean_of_its_window(window):
    """Running-sum box means are each pixel's mean over the window cut at the borders (a
    window wider than the image included)."""
    from mmseg_medpersam.methods.medpersam.warping.losses import box_mean
    x = torch.rand(2, 3, 17, 30, dtype=torch.float64)
    r = window // 2
    expected = torch.empty_like(x)
    for i in range(17):
        for j in range(30):
            expected[..., i, j] = x[..., max(0, i - r):i + r + 1,
                                    max(0, j - r):j + r + 1].mean(dim=(-2, -1))
    got = box_mean(x.float(), window)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, atol=1e-5)
    assert torch.allclose(box_mean(x, window), expected, atol=1e-12)  # float64 stays so
    assert box_mean(x.bfloat16(), window).dtype == torch.float32  # never summed in bf16
