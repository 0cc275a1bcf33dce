"""Self-calibration of Med-PerSAM's SAM step: decided per task from the user's own labels.

Whether SAM's refinement of the warped prompts helps depends on the structure, the images and
the promptable model (a diffuse structure, a box-trained model, a boundary SAM draws elsewhere
than the labels do). The head measures its SAM-step options on cases whose truth it knows, and
uses the best one:

* **augmented copies** of each reference (image and mask under a random deformation and
  intensity change of the warping model's own family, ``augment.RandomDeformation``, drawn
  apart from the fit's): the fitted warp's prior on the copy, then SAM's steps on the copy;
* **leave one out** (k >= 2 references): each reference's prior warped from the others (fused
  as for a target), then SAM's steps on that reference.

An option (``SAMStep``) is a subset of the configured prompt generators, a number of SAM calls
K and a guard: a SAM mask is used, per target, only while its Dice with the warped mask stays
at or above ``guard`` (the per-target choice between SAM and the warp), or None: the warp
alone. Each option's Dice on every case is measured from one traced refinement per case and
prompt subset (guards and K evaluated on the trace, ``refinement_outcome``).

The two kinds of case answer different questions. SAM's gain depends on how good the prior it
refines is, and the augmented copies' priors come from the fitted warp as the targets' do, of
like quality (on the embedded ventricles: 81.7 on the copies, 81.7 on the targets with one
reference; 82.0 and 85.7 with two). A leave-one-out prior comes from one reference fewer, on an
image no fit has labelled: far worse (63.4 there), so there any option that redraws the
structure wins (+16 points) while it loses on the targets (-16). So the options are ranked on
the augmented copies (``selection``), and the leave-one-out cases can only rule an option out:
one below the warp even there (``loo_vetoed``).

The choice (``choose``): the warp alone unless the best option beats it by ``margin`` Dice
(copies of a reference are easier for SAM than other images: measured on the embedded tasks,
an option's gain over the warp on the copies was 0.5 to 4 points above its gain on the
targets); among options within ``tie`` of the best, the most conservative (highest guard, then
fewest SAM calls, then most prompts). Every option's score (in all and per kind of case), the
warp's and the choice are the state's log (the run's report).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor

from ...utils.masks import dice
from .warping.augment import RandomDeformation
from .warping.intensity import INTENSITY_MAX, to_gray


@dataclass(frozen=True)
class SAMStep:
    """How Med-PerSAM uses SAM on each target.

    Attributes:
        prompts: indices of the head's prompt generators used (all of them by default).
        num_iters: SAM calls K (refinement iterations).
        guard: a SAM mask is used only while its Dice with the warped mask is at least this
            (0: SAM always trusted); None: the warp alone, SAM is not called.
    """

    prompts: Tuple[int, ...] = ()
    num_iters: int = 3
    guard: Optional[float] = 0.95

    @property
    def uses_sam(self) -> bool:
        return self.guard is not None

    def describe(self, names: Sequence[str]) -> str:
        if not self.uses_sam:
            return 'warp only'
        return (f'{"+".join(names[i] for i in self.prompts)}, K={self.num_iters}, '
                f'guard {self.guard:g}')


@dataclass
class StepTrace:
    """One SAM call of a refinement: its mask's Dice with the warped mask (``agreement``)
    and with the previous mask's IoU (``change``), and whether it came out empty."""

    mask: Tensor
    agreement: float
    change: float
    empty: bool


def refinement_outcome(steps: Sequence[StepTrace], guard: float, num_iters: int,
                       stop_iou: float) -> Tuple[int, Optional[str]]:
    """The one rule of the refinement loop: (index of the last SAM step kept, -1 when the warp
    stays; why it stopped, None while it goes on).

    It stops at an empty mask or a mask whose agreement with the warp is below ``guard``
    (neither is kept), after a step that changed the mask by less than ``1 - stop_iou`` (kept),
    or after ``num_iters`` steps. The head's loop asks it after every step; the calibration
    asks it of a traced refinement for every guard and K."""
    kept = -1
    for i, step in enumerate(steps[:num_iters]):
        if step.empty:
            return kept, 'empty'
        if step.agreement < guard:
            return kept, 'disagrees with warp'
        kept = i
        if step.change >= stop_iou:
            return kept, 'converged'
    return kept, 'iterations' if len(steps) >= num_iters else None


@dataclass
class CalibrationCase:
    """A case whose truth is known: an image, the warp's prior on it, its true mask."""

    image: Tensor  # (3, H, W) float RGB 0..255
    prior: Tensor  # (H, W) bool
    truth: Tensor  # (H, W) bool
    source: str


#: The kind of case a case's source names first: 'augmented' or 'leave-one-out'.
LEAVE_ONE_OUT = 'leave-one-out'


def case_kind(source: str) -> str:
    return source.split(' ')[0]


@dataclass
class Calibration:
    """The evidence of one task's self-calibration, and the choice made from it.

    ``per_case``: each option's Dice on every case (``cases`` order, the cases' sources);
    ``warp_per_case``: the warp's. What the choice reads is derived from them: ``warp`` and
    ``scores`` (mean Dice on the cases the options are ranked on, ``selection``) and
    ``vetoed`` (options below the warp on the leave-one-out cases).
    """

    cases: List[str]
    warp_per_case: List[float]
    per_case: Dict[SAMStep, List[float]] = field(default_factory=dict)
    choice: SAMStep = SAMStep(guard=None)

    @property
    def warp(self) -> float:
        return _mean_at(self.warp_per_case, selection(self.cases))

    @property
    def scores(self) -> Dict[SAMStep, float]:
        ranked = selection(self.cases)
        return {o: _mean_at(v, ranked) for o, v in self.per_case.items()}

    @property
    def vetoed(self) -> Set[SAMStep]:
        return loo_vetoed(self.per_case, self.warp_per_case, self.cases)

    def decide(self, margin: float, tie: float) -> SAMStep:
        """Set and return the ``choose`` rule's choice on this evidence."""
        self.choice = choose(self.scores, self.warp, margin, tie, self.vetoed)
        return self.choice

    def by_kind(self, values: Sequence[float]) -> Dict[str, float]:
        """Mean Dice (%) per kind of case."""
        kinds: Dict[str, List[float]] = {}
        for source, v in zip(self.cases, values):
            kinds.setdefault(case_kind(source), []).append(v)
        return {k: round(100 * sum(v) / len(v), 2) for k, v in sorted(kinds.items())}

    def log(self, names: Sequence[str]) -> dict:
        """The report's entry: the choice, the warp's and every option's mean Dice (%), in all
        and per kind of case, and which options the leave-one-out cases ruled out."""
        table = sorted(self.scores.items(), key=lambda r: -r[1])
        vetoed = self.vetoed
        options = []
        for step, value in table:
            entry = dict(option=step.describe(names), mdice=round(100 * value, 2))
            if step in self.per_case:
                entry['by_kind'] = self.by_kind(self.per_case[step])
            if step in vetoed:
                entry['vetoed'] = 'below the warp on the leave-one-out cases'
            options.append(entry)
        out = dict(choice=self.choice.describe(names), warp=round(100 * self.warp, 2),
                   cases=len(self.cases), sources=sorted(set(map(case_kind, self.cases))),
                   options=options)
        if self.warp_per_case:
            out['warp_by_kind'] = self.by_kind(self.warp_per_case)
        return out


def option_grid(prompt_sets: Sequence[Tuple[int, ...]], iters: Sequence[int],
                guards: Sequence[float]) -> List[SAMStep]:
    """Every (prompt subset, K, guard) option."""
    return [SAMStep(p, k, g) for p, k, g in itertools.product(prompt_sets, iters, guards)]


def _leave_one_out(sources: Sequence[str]) -> List[int]:
    return [i for i, s in enumerate(sources) if case_kind(s) == LEAVE_ONE_OUT]


def selection(sources: Sequence[str]) -> List[int]:
    """The cases the options are ranked on: every one but the leave-one-out cases (all of
    them if there is nothing else)."""
    loo = set(_leave_one_out(sources))
    return [i for i in range(len(sources)) if i not in loo] or list(range(len(sources)))


def loo_vetoed(per_case: Dict[SAMStep, List[float]], warp_per_case: Sequence[float],
               sources: Sequence[str]) -> Set[SAMStep]:
    """Options whose mean Dice on the leave-one-out cases is below the warp's there (none
    without such cases)."""
    loo = _leave_one_out(sources)
    if not loo:
        return set()
    warp = _mean_at(warp_per_case, loo)
    return {o for o, v in per_case.items() if _mean_at(v, loo) < warp}


def choose(scores: Dict[SAMStep, float], warp: float, margin: float, tie: float,
           vetoed: Set[SAMStep] = frozenset()) -> SAMStep:
    """The module's choice rule: the warp alone unless an option not ``vetoed`` beats it by
    ``margin``; among those within ``tie`` of the best, the highest guard, then the fewest SAM
    calls, then the most prompts."""
    scores = {o: v for o, v in scores.items() if o not in vetoed}
    if not scores:
        return SAMStep(guard=None)
    best = max(scores.values())
    if best < warp + margin:
        return SAMStep(guard=None)
    near = [s for s, v in scores.items() if v >= best - tie]
    return max(near, key=lambda s: (s.guard, -s.num_iters, len(s.prompts)))


def augmented_cases(image: Tensor, masks: Tensor, count: int, seed: int,
                    augment: RandomDeformation, work_long_side: int
                    ) -> List[Tuple[Tensor, Tensor]]:
    """``count`` (image, masks) copies of one reference under random deformations and intensity
    changes of ``augment``'s family (the warping fit's, whose elastic displacement is in
    working pixels: scaled here to the image's full resolution), from their own ``seed``:
    (3, H, W) RGB 0..255 and (C, H, W) bool."""
    scale = max(image.shape[-2:]) / float(work_long_side)
    family = copy.copy(augment)
    family.elastic_magnitude = augment.elastic_magnitude * scale
    gen = torch.Generator().manual_seed(seed)
    gray = to_gray(image)[None, None]
    out = []
    for _ in range(count):
        aug_image, aug_masks, _ = family(gray, masks.float()[None].cpu(), 1, gen)
        rgb = (aug_image[0].repeat(3, 1, 1) * INTENSITY_MAX).round().to(image.device)
        out.append((rgb, (aug_masks[0] > 0.5).to(masks.device)))
    return out


def case_dice(pairs: Sequence[Tuple[Tensor, Tensor]]) -> List[float]:
    """Dice of each (mask, truth) pair (an empty pair counts as 1: nothing to find)."""
    values = [dice(m, t) for m, t in pairs]
    return [1.0 if v != v else float(v) for v in values]  # nan: both empty


def _mean_at(values: Sequence[float], indices: Sequence[int]) -> float:
    return sum(values[i] for i in indices) / max(len(indices), 1)


__all__ = ['Calibration', 'CalibrationCase', 'LEAVE_ONE_OUT', 'SAMStep', 'StepTrace',
           'augmented_cases', 'case_dice', 'case_kind', 'choose', 'loo_vetoed',
           'refinement_outcome', 'option_grid', 'selection']
