"""Figures: panels show contours on the border, points where they are; grids and plots."""
import os.path as osp

import matplotlib.colors as mcolors
import numpy as np
import pytest

from mmseg_medpersam.structures import PromptRecord
from mmseg_medpersam.visualization import dice_plot, method_grid, target_panel
from mmseg_medpersam.visualization.panels import (
    MIN_DRAWN_SIDE,
    NEGATIVE_COLOUR,
    POSITIVE_COLOUR,
    class_colour,
    render_panel,
)


def _square(h=40, w=50):
    image = np.full((h, w, 3), 90, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 15:35] = 1
    image[mask > 0] = 160
    return image, mask


def _pixels(fig, ax, xy):
    """RGB of the rendered figure at image coordinates ``xy`` (x, y)."""
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    out = []
    for x, y in xy:
        px, py = ax.transData.transform((x, y))
        out.append(buf[int(round(buf.shape[0] - py)), int(round(px))])
    return np.array(out)


def _close(rgb, colour, tol=60):
    target = np.array(mcolors.to_rgb(colour)) * 255
    return np.abs(np.asarray(rgb, float) - target).max(axis=-1) < tol


def test_contour_is_on_the_mask_border_not_inside():
    image, mask = _square()
    fig, ax = render_panel(image, mask, title='t')
    border = [(14.5, 20.0), (34.5, 20.0), (25.0, 9.5), (25.0, 29.5)]
    inside = [(25.0, 20.0), (20.0, 15.0)]
    assert _close(_pixels(fig, ax, border), class_colour(1)).all()
    assert not _close(_pixels(fig, ax, inside), class_colour(1)).any()


def test_points_are_drawn_at_their_coordinates():
    image, mask = _square()
    record = PromptRecord(point_coords=np.array([[[22.0, 18.0], [5.0, 36.0]]]),
                  point_labels=np.array([[1, 0]]))
    fig, ax = render_panel(image, mask, prompts={1: record})
    rgb = _pixels(fig, ax, [(22.0, 18.0), (5.0, 36.0)])
    assert _close(rgb[0], POSITIVE_COLOUR) and _close(rgb[1], NEGATIVE_COLOUR)


def test_panel_file_is_upscaled_for_small_images(tmp_path):
    import cv2
    image, mask = _square()
    steps = [mask, np.roll(mask, 2, axis=1)]
    record = PromptRecord(mask=mask.astype(bool), step_masks=steps,
                          boxes=np.array([[15, 10, 34, 29]]))
    path = target_panel(str(tmp_path / 'p.png'), image, mask, gt=mask, prompts={1: record},
                        reference=(image, mask), title='Med-PerSAM | t1 | Dice 1.000')
    out = cv2.imread(path)
    scale = MIN_DRAWN_SIDE / 50
    # reference | target | 2 SAM steps, each at least MIN_DRAWN_SIDE wide.
    assert out.shape[1] == pytest.approx(4 * 50 * scale, abs=2)
    assert out.shape[0] > 40 * scale


@pytest.mark.parametrize('case', ['no prompts', 'empty mask', 'no ground truth', 'multiclass'])
def test_bad_inputs_still_give_a_figure(tmp_path, case):
    image, mask = _square()
    kwargs = dict(gt=mask)
    if case == 'empty mask':
        mask = np.zeros_like(mask)
        kwargs['prompts'] = {1: PromptRecord(point_coords=None, boxes=None, step_masks=[])}
    elif case == 'no ground truth':
        kwargs = {}
    elif case == 'multiclass':
        mask = mask.copy()
        mask[10:30, 25:35] = 2
        kwargs['gt'] = mask
    path = target_panel(str(tmp_path / 'p.png'), image[..., 0], mask, **kwargs)
    assert osp.getsize(path) > 0


def test_grid_and_plot_are_written(tmp_path):
    import cv2
    image, mask = _square()
    images = {'t1': image, 't2': image}
    preds = {('t1', 'A'): mask, ('t2', 'A'): mask, ('t1', 'B'): np.roll(mask, 3, axis=0)}
    dice = {('t1', 'A'): 1.0, ('t2', 'A'): 1.0, ('t1', 'B'): 0.8}
    grid = method_grid(str(tmp_path / 'grid.png'), ['t1', 't2'], ['A', 'B'], images, preds,
                       dice, {'t1': mask, 't2': mask})
    out = cv2.imread(grid)
    assert out.shape[1] == pytest.approx(2 * MIN_DRAWN_SIDE, abs=2)
    assert out.shape[0] > 2 * 40 * MIN_DRAWN_SIDE / 50
    plot = dice_plot(str(tmp_path / 'dice.png'), ['A', 'Warp only'],
                     {'A': [0.5, 0.7, None], 'Warp only': [0.9, 0.95]},
                     references=['Warp only'])
    assert cv2.imread(plot) is not None
