"""Figures of what a method did: per-target panels, method-by-target grids, Dice plots.

Drawn with matplotlib's object API (``Figure``, rendered by Agg; pyplot and the user's backend
are never touched): contours with ``contour``, prompts as markers, so a
point stays visible on a small image and every figure has a legend. Colours are fixed so
figures of different methods read alike:

* predicted mask: the class colour (class 1 orange, 2 magenta, ...), solid contour;
* ground truth: cyan, dashed; Med-PerSAM's warped prior: yellow, dotted;
* positive points: green '+', negative points: red 'x'; the box prompt: a blue rectangle.
"""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ..structures.prompt_record import PromptRecord
from ..utils.atomic import atomic_write_bytes

CLASS_COLOURS = ('#ff8c00', '#ff00ff', '#7fff00', '#ffd700', '#1e90ff', '#ff6f91')
GT_COLOUR = '#00ffff'
PRIOR_COLOUR = '#ffff00'
POSITIVE_COLOUR = '#00ff00'
NEGATIVE_COLOUR = '#ff0000'
BOX_COLOUR = '#4da6ff'
#: Every panel image is drawn at least this many pixels on its longest side.
MIN_DRAWN_SIDE = 384
#: Cells are drawn at most this many pixels on their longer side: a panel of a huge image
#: stays small in memory and on disk (the picture is a view, the mask file has every pixel).
MAX_DRAWN_SIDE = 1024


def class_colour(c: int) -> str:
    return CLASS_COLOURS[(int(c) - 1) % len(CLASS_COLOURS)]


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    return image if image.ndim == 2 else image[..., :3]


def draw_contour(ax, mask: np.ndarray, colour: str, style: str = 'solid',
                 width: float = 1.5) -> None:
    """The boundary of a bool mask (nothing for an empty or full mask)."""
    mask = np.asarray(mask, bool)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=width,
                   linestyles=style)


def draw_label_contours(ax, labels: np.ndarray, style: str = 'solid',
                        colour: Optional[str] = None) -> List[int]:
    """Contours of every class of a label map; returns the classes drawn."""
    classes = [int(c) for c in np.unique(labels) if 0 < c < 255]
    for c in classes:
        draw_contour(ax, labels == c, colour or class_colour(c), style)
    return classes


def draw_prompts(ax, record: PromptRecord) -> Tuple[bool, bool, bool]:
    """Points and box of a prompt record; returns which kinds were drawn."""
    pos = neg = box = False
    coords, labels = record.point_coords, record.point_labels
    if coords is not None and labels is not None:
        coords = np.asarray(coords, float).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        for value, marker, colour in ((1, '+', POSITIVE_COLOUR), (0, 'x', NEGATIVE_COLOUR)):
            sel = labels == value
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], marker=marker, s=90, c=colour,
                           linewidths=2, zorder=5)
        pos, neg = bool((labels == 1).any()), bool((labels == 0).any())
    boxes = record.boxes
    if boxes is not None and np.asarray(boxes).size >= 4:
        x0, y0, x1, y1 = np.asarray(boxes, float).reshape(-1, 4)[0]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=BOX_COLOUR,
                               linewidth=1.5, zorder=4))
        box = True
    return pos, neg, box


def draw_orientation(ax, letters: Optional[Sequence[str]]) -> None:
    """The patient directions (left, right, top, bottom) at the middle of each edge of an
    image's axes, as viewers mark them."""
    if not letters:
        return
    style = dict(transform=ax.transAxes, color='yellow', fontsize=9, fontweight='bold')
    for (x, y, ha, va), letter in zip(((0.01, 0.5, 'left', 'center'),
                                       (0.99, 0.5, 'right', 'center'),
                                       (0.5, 0.99, 'center', 'top'),
                                       (0.5, 0.01, 'center', 'bottom')), letters):
        ax.text(x, y, letter, ha=ha, va=va, **style)


def save_figure(fig: Figure, path: str) -> None:
    """Render ``fig`` as a PNG and write it atomically (a failed write leaves no 0-byte file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    atomic_write_bytes(path, buffer.getvalue())


def _figure(cols: int, rows: int, shape: Sequence[int], extra_height: float = 0.9):
    h, w = shape[:2]
    scale = min(max(1.0, MIN_DRAWN_SIDE / max(h, w)), MAX_DRAWN_SIDE / max(h, w))
    dpi = 100
    # constrained layout packs the cells (titles and the legend below them) without margins
    fig = Figure(layout='constrained', dpi=dpi,
                 figsize=(cols * w * scale / dpi, rows * h * scale / dpi + extra_height))
    FigureCanvasAgg(fig)  # rendered by Agg, whatever backend pyplot uses
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _legend(fig, handles: List[Line2D]) -> None:
    if handles:
        fig.legend(handles=handles, loc='outside lower center', ncol=min(len(handles), 4),
                   fontsize=8, frameon=False)


def target_panel(path: str, image: np.ndarray, pred: np.ndarray,
                 gt: Optional[np.ndarray] = None,
                 prompts: Optional[Dict[int, PromptRecord]] = None,
                 reference: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 title: str = '', letters: Optional[Sequence[str]] = None,
                 reference_letters: Optional[Sequence[str]] = None) -> str:
    """Draw ``render_panel``'s figure to ``path`` (PNG); returns ``path``."""
    fig, _ = render_panel(image, pred, gt, prompts, reference, title, letters,
                          reference_letters)
    save_figure(fig, path)
    return path


def render_panel(image: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None,
                 prompts: Optional[Dict[int, PromptRecord]] = None,
                 reference: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 title: str = '', letters: Optional[Sequence[str]] = None,
                 reference_letters: Optional[Sequence[str]] = None):
    """One target: reference | target with prompts and contours | SAM's masks step by step.

    Returns the figure and the target's axes (data coordinates are the image's pixels).

    Args:
        image: (H, W) or (H, W, 3) uint8 target; pred: (H, W) label map.
        gt: (H, W) label map of the ground truth, if known.
        prompts: per class, the prompt record stored with the prediction (points, boxes,
            the mask they came from, SAM's mask after each refinement step).
        reference: (image, label map) of the labelled reference.
        title: method, target and Dice, shown on top.
        letters, reference_letters: the patient directions at the (left, right, top,
            bottom) edges of a volume slice (``datasets.volume``), written on them.
    """
    prompts = prompts or {}
    steps = max((len(r.step_masks) for r in prompts.values()), default=0)
    cols = 1 + (reference is not None) + steps
    fig, axes = _figure(cols, 1, np.asarray(image).shape, extra_height=1.1)
    axes = list(axes[0])
    handles: List[Line2D] = []
    if reference is not None:
        ax = axes.pop(0)
        ax.imshow(_gray(reference[0]), cmap='gray', interpolation='nearest')
        draw_label_contours(ax, np.asarray(reference[1]))
        ax.set_title('reference (its label)', fontsize=9)
        draw_orientation(ax, reference_letters)
    ax = target_ax = axes.pop(0)
    draw_orientation(ax, letters)
    ax.imshow(_gray(image), cmap='gray', interpolation='nearest')
    drawn = draw_label_contours(ax, np.asarray(pred))
    handles += [Line2D([], [], color=class_colour(c), label=f'prediction (class {c})')
                for c in drawn] or [Line2D([], [], color=class_colour(1), label='prediction')]
    if gt is not None:
        draw_label_contours(ax, np.asarray(gt), style='dashed', colour=GT_COLOUR)
        handles.append(Line2D([], [], color=GT_COLOUR, linestyle='--', label='ground truth'))
    kinds = [False, False, False]
    prior_drawn = False
    for c, record in prompts.items():
        if record.mask is not None:
            draw_contour(ax, record.mask, PRIOR_COLOUR, 'dotted')
            prior_drawn = True
        kinds = [a or b for a, b in zip(kinds, draw_prompts(ax, record))]
    if prior_drawn:
        handles.append(Line2D([], [], color=PRIOR_COLOUR, linestyle=':', label='warped prior'))
    for on, label, kw in zip(kinds, ('positive point', 'negative point', 'box prompt'),
                             (dict(marker='+', color=POSITIVE_COLOUR, linestyle=''),
                              dict(marker='x', color=NEGATIVE_COLOUR, linestyle=''),
                              dict(color=BOX_COLOUR))):
        if on:
            handles.append(Line2D([], [], label=label, **kw))
    ax.set_title('target', fontsize=9)
    for i, ax in enumerate(axes):  # SAM's mask after each refinement step
        ax.imshow(_gray(image), cmap='gray', interpolation='nearest')
        for c, record in prompts.items():
            if i < len(record.step_masks):
                draw_contour(ax, np.asarray(record.step_masks[i]), class_colour(c))
            if record.mask is not None:
                draw_contour(ax, record.mask, PRIOR_COLOUR, 'dotted')
        ax.set_title(f'SAM step {i + 1}', fontsize=9)
        draw_orientation(ax, letters)
    fig.suptitle(title, fontsize=10)
    _legend(fig, handles)
    return fig, target_ax


def method_grid(path: str, targets: Sequence[str], methods: Sequence[str],
                images: Dict[str, np.ndarray], preds: Dict[Tuple[str, str], np.ndarray],
                dice: Dict[Tuple[str, str], Optional[float]],
                gts: Optional[Dict[str, np.ndarray]] = None) -> str:
    """Rows: targets; columns: methods; each cell the prediction's and the truth's contours
    over the image, with the cell's Dice. A missing prediction leaves its cell empty."""
    shape = next(iter(images.values())).shape
    fig, axes = _figure(len(methods), len(targets), shape, extra_height=0.8)
    for r, target in enumerate(targets):
        for c, method in enumerate(methods):
            ax = axes[r][c]
            ax.imshow(_gray(images[target]), cmap='gray', interpolation='nearest')
            pred = preds.get((target, method))
            if pred is not None:
                draw_label_contours(ax, pred)
            if gts and target in gts:
                draw_label_contours(ax, gts[target], style='dashed', colour=GT_COLOUR)
            d = dice.get((target, method))
            score = 'no prediction' if pred is None else (
                'Dice -' if d is None else f'Dice {d:.3f}')
            ax.set_title(f'{method}\n{target}: {score}' if r == 0 else f'{target}: {score}',
                         fontsize=8)
    _legend(fig, [Line2D([], [], color=class_colour(1), label='prediction'),
                  Line2D([], [], color=GT_COLOUR, linestyle='--', label='ground truth')])
    save_figure(fig, path)
    return path


def dice_plot(path: str, methods: Sequence[str], per_image: Dict[str, Sequence[float]],
              references: Sequence[str] = ()) -> str:
    """One column per method: a box of its per-image Dice with every image as a point.
    Columns named in ``references`` (warp only, the oracle) are drawn hatched and labelled."""
    fig = Figure(figsize=(max(4.0, 1.3 * len(methods) + 1.5), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    data = [np.asarray([d for d in per_image.get(m, []) if d is not None], float)
            for m in methods]
    box = ax.boxplot([d if d.size else [np.nan] for d in data], patch_artist=True,
                     widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (m, d) in enumerate(zip(methods, data), start=1):
        is_ref = m in references
        patch = box['boxes'][i - 1]
        patch.set_facecolor('#dddddd' if is_ref else '#cfe3ff')
        if is_ref:
            patch.set_hatch('//')
        ax.scatter(i + rng.uniform(-0.12, 0.12, d.size), d, s=14, zorder=3,
                   c='#555555' if is_ref else '#1f5fbf')
    ax.set_xticks(range(1, len(methods) + 1))
    ax.set_xticklabels([f'{m}\n(reference)' if m in references and 'reference' not in m
                        else m for m in methods], fontsize=8)
    ax.set_ylabel('per-image Dice')
    ax.set_ylim(0, 1.02)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def distance_plot(path: str, curves: Dict[str, Dict[int, float]], title: str = '',
                  marks: Sequence[int] = ()) -> str:
    """Per-slice Dice against the signed distance from the labelled slice, one line per
    setting (e.g. independent warping vs propagation); ``marks`` draws dotted verticals at
    those distances (both sides)."""
    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, points in curves.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker='o', markersize=3, linewidth=1.2,
                label=name)
    for d in marks:
        for x in (-d, d):
            ax.axvline(x, color='#999999', linestyle=':', linewidth=0.8)
    ax.set_xlabel('slices from the labelled slice (signed)')
    ax.set_ylabel('Dice')
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower center')
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


__all__ = ['target_panel', 'render_panel', 'method_grid', 'dice_plot', 'distance_plot',
           'draw_contour', 'draw_prompts', 'class_colour', 'CLASS_COLOURS', 'GT_COLOUR',
           'PRIOR_COLOUR', 'POSITIVE_COLOUR', 'NEGATIVE_COLOUR', 'BOX_COLOUR']
