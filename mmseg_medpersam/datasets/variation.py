"""Embedded tasks with simulated inter-subject variation (no download, seeded).

Neighbouring slices of one template are easy to register. To pose the harder, realistic
one-shot problem (another patient: the anatomy moves and changes shape, the scanner changes
the intensities), every target of these tasks is a template slice of an embedded MNI152 task
(``mni152.py``) deformed by its own random draw of:

* an affine map about the image centre: rotation up to ``rotation_deg`` (10 degrees: head
  tilt left after a rigid alignment), isotropic scale within +-``scale`` (8 %: the spread of
  adult brain size after it), shift up to ``shift_mm`` (6 mm);
* a smooth elastic displacement: Gaussian-smoothed noise (smoothing ``elastic_smooth_mm``,
  12 mm) rescaled to an RMS displacement of ``elastic_mm`` (3 mm), the order of the residual
  misregistration of cortical and ventricular boundaries between subjects after an affine
  registration;
* a multiplicative bias field (a smooth field, up to +-``bias``, 20 %), a gamma change
  (exponent in exp(+-``gamma``), 0.25) and a contrast change (+-``contrast``, 15 %): the
  intensity differences between scanners and protocols;
* Gaussian noise with std ``noise`` (3 %) of the intensity range.

``severity`` scales every magnitude (0: the slices as they are; 2: twice the variation). The
mask of a target is its own slice's mask under the same geometric map (resampled with the
image, thresholded at 0.5), so image and mask stay aligned; the reference stays undeformed.
The voxel size is 1 mm, so millimetres are pixels.
"""
from __future__ import annotations

import math
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from ..structures.errors import OneShotDataError
from ..utils.atomic import atomic_write_png, atomic_write_text
from .mni152 import MNI152_COPYRIGHT, axial_slice, get_task, load_template, slice_name

VARIATION_FILE = 'VARIATION.txt'


@dataclass(frozen=True)
class Variation:
    """Magnitudes of the simulated variation at severity 1 (see the module docstring)."""

    rotation_deg: float = 10.0
    scale: float = 0.08
    shift_mm: float = 6.0
    elastic_mm: float = 3.0
    elastic_smooth_mm: float = 12.0
    bias: float = 0.2
    gamma: float = 0.25
    contrast: float = 0.15
    noise: float = 0.03

    def scaled(self, severity: float) -> 'Variation':
        """The magnitudes times ``severity`` (the smoothing length stays)."""
        values = {k: v * severity for k, v in asdict(self).items()}
        values['elastic_smooth_mm'] = self.elastic_smooth_mm
        return Variation(**values)


@dataclass
class Draw:
    """One target's random draw: the pixel displacement and the intensity change."""

    displacement: np.ndarray  # (2, H, W) (dy, dx): output pixel p samples the slice at p + d
    elastic: np.ndarray  # (2, H, W) its elastic part
    angle_deg: float
    scale: float
    shift: Tuple[float, float]
    bias_field: np.ndarray  # (H, W) multiplicative
    gamma: float
    contrast: float


def smooth_noise(shape: Tuple[int, int], rng: np.random.Generator, smooth: float) -> np.ndarray:
    """Gaussian-smoothed white noise, normalised to unit RMS."""
    from scipy.ndimage import gaussian_filter
    field = gaussian_filter(rng.standard_normal(shape), smooth, mode='reflect')
    return field / max(float(np.sqrt((field ** 2).mean())), 1e-12)


def draw_variation(shape: Tuple[int, int], rng: np.random.Generator,
                   v: Variation) -> Draw:
    """Sample one target's geometric and intensity change (magnitudes already scaled)."""
    h, w = shape
    angle = rng.uniform(-v.rotation_deg, v.rotation_deg)
    scale = math.exp(rng.uniform(math.log(1 - v.scale), math.log(1 + v.scale))) \
        if v.scale > 0 else 1.0
    direction = rng.uniform(0, 2 * math.pi)
    radius = v.shift_mm * math.sqrt(rng.uniform(0, 1))
    shift = (radius * math.sin(direction), radius * math.cos(direction))
    elastic = np.stack([smooth_noise(shape, rng, v.elastic_smooth_mm) for _ in range(2)])
    elastic *= v.elastic_mm / max(float(np.sqrt((elastic ** 2).sum(0).mean())), 1e-12)
    # Output pixel p = A (q - c) + c + t: the slice is sampled at q = A^-1 (p - c - t) + c.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    a = math.radians(angle)
    py, px = yy - cy - shift[0], xx - cx - shift[1]
    qy = (math.cos(a) * py - math.sin(a) * px) / scale + cy
    qx = (math.sin(a) * py + math.cos(a) * px) / scale + cx
    displacement = np.stack([qy - yy, qx - xx]) + elastic
    bias = np.exp(v.bias * np.clip(smooth_noise(shape, rng, max(h, w) / 4), -2.5, 2.5) / 2.5)
    gamma = math.exp(rng.uniform(-v.gamma, v.gamma))
    contrast = 1 + rng.uniform(-v.contrast, v.contrast)
    return Draw(displacement, elastic, angle, scale, shift, bias, gamma, contrast)


def apply_variation(image: np.ndarray, mask: np.ndarray, draw: Draw, noise: float,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The deformed uint8 image and 0/1 mask of one slice (same geometric map for both)."""
    from scipy.ndimage import map_coordinates
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([yy + draw.displacement[0], xx + draw.displacement[1]])
    moved = map_coordinates(image.astype(np.float64) / 255, coords, order=1, mode='constant')
    new_mask = map_coordinates(mask.astype(np.float64), coords, order=1, mode='constant') > 0.5
    out = np.clip(moved * draw.bias_field, 0, 1) ** draw.gamma
    mean = out[out > 0].mean() if (out > 0).any() else 0.0
    out = np.where(out > 0, mean + draw.contrast * (out - mean), 0.0)
    out = out + noise * rng.standard_normal(out.shape) * (out > 0)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), new_mask.astype(np.uint8)


def variation_task_name(structure: str, severity: float) -> str:
    return f'{structure}-var' if severity == 1.0 else f'{structure}-var{severity:g}'


def _marker(structure: str, severity: float, seed: int, variation: Variation) -> str:
    """What a written folder records of the draws it holds."""
    if severity < 0:
        raise OneShotDataError(f'severity must be >= 0, got {severity}')
    return (f'{get_task(structure).name} severity={severity:g} seed={seed} '
            f'{sorted(asdict(variation).items())}')


def is_variation_prepared(out_dir: str, structure: str = 'ventricles', severity: float = 1.0,
                          seed: int = 0, variation: Variation = Variation()) -> bool:
    """Whether ``out_dir`` holds this task (same structure, severity, seed and magnitudes)."""
    marker_path = osp.join(out_dir, VARIATION_FILE)
    if not osp.isfile(marker_path):
        return False
    with open(marker_path) as f:
        return f.read().strip() == _marker(structure, severity, seed, variation)


def prepare_variation(out_dir: str, structure: str = 'ventricles', severity: float = 1.0,
                      seed: int = 0, variation: Variation = Variation()) -> str:
    """Write the task: the undeformed reference slice and every other slice deformed."""
    spec = get_task(structure)
    if is_variation_prepared(out_dir, structure, severity, seed, variation):
        return out_dir
    marker = _marker(structure, severity, seed, variation)
    marker_path = osp.join(out_dir, VARIATION_FILE)
    if osp.isdir(out_dir) and os.listdir(out_dir):
        raise OneShotDataError(
            f'{out_dir}: not writing the simulated {spec.name} task here: the folder holds '
            'other data (or another severity/seed). Give it its own data_root.')
    for sub in ('images', 'masks'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    for z, img, mask, _ in variation_slices(structure, severity, seed, variation):
        atomic_write_png(osp.join(out_dir, 'images', slice_name(z) + '.png'), img)
        atomic_write_png(osp.join(out_dir, 'masks', slice_name(z) + '.png'), mask)
    atomic_write_text(osp.join(out_dir, 'COPYRIGHT.txt'), MNI152_COPYRIGHT)
    atomic_write_text(marker_path, marker + '\n')
    return out_dir


def variation_slices(structure: str, severity: float = 1.0, seed: int = 0,
                     variation: Variation = Variation()
                     ) -> Iterator[Tuple[int, np.ndarray, np.ndarray, Optional[Draw]]]:
    """Each slice of the simulated task, in order: ``(z, image, mask, draw)`` (no draw for the
    undeformed reference). The one sequence of random draws the task is made of."""
    spec = get_task(structure)
    volumes = load_template()
    labels = spec.label(volumes)
    scaled = variation.scaled(severity)
    rng = np.random.default_rng(seed)
    for z in spec.slices:
        img = np.clip(np.rint(axial_slice(volumes['t1'], z)), 0, 255).astype(np.uint8)
        mask = axial_slice(labels, z).astype(np.uint8)
        draw = None
        if z != spec.reference:
            draw = draw_variation(img.shape, rng, scaled)
            img, mask = apply_variation(img, mask, draw, scaled.noise, rng)
        yield z, img, mask, draw


def draws_for(structure: str, severity: float = 1.0, seed: int = 0,
              variation: Variation = Variation()) -> Dict[int, Draw]:
    """The draw of each deformed slice of the task ``prepare_variation`` writes."""
    return {z: draw for z, _, _, draw in variation_slices(structure, severity, seed, variation)
            if draw is not None}


__all__ = ['Variation', 'Draw', 'draw_variation', 'apply_variation', 'prepare_variation',
           'draws_for', 'variation_slices', 'variation_task_name']
