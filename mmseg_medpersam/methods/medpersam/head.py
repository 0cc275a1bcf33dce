"""Med-PerSAM: a warping model turns the reference label into prompts that SAM refines."""
from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from ...prompts.box_prompt import BoxPrompt
from ...prompts.context import PromptContext
from ...prompts.structures import Prompts, decode_union
from ...sam.backend import SAMBackend
from ...utils.masks import dice, iou
from ...utils.progress import track
from ...utils.validate import check_number
from ..base import (
    BaseOneShotHead,
    FitState,
    HeadResult,
    ReferenceClasses,
    RefinementRecord,
    TargetImage,
    class_references,
)
from ..refinement import logits_to_mask, to_image_logits
from .calibration import (
    LEAVE_ONE_OUT,
    Calibration,
    CalibrationCase,
    SAMStep,
    StepTrace,
    augmented_cases,
    case_dice,
    option_grid,
    refinement_outcome,
)
from .label_fusion import LocallyWeightedVoting  # noqa: F401  (registers it)
from .warping.intensity import to_gray


def _sam_used(result: HeadResult) -> bool:
    return result.refinement is not None and result.refinement.sam_used


@dataclass
class MedPerSAMState(FitState):
    """Med-PerSAM's fit for one reference.

    Attributes:
        warper: the fitted (and retrained) warping model.
        priors: per target key, per class: the warped reference mask (H, W) in [0, 1].
        log: the fit's log: ``fit``, per retraining round ``rounds``, ``seconds``.
        results: per target key, per class: predictions the fit already made with the final
            priors (a round whose retraining was skipped); ``predict`` returns them.
        sam_step: how SAM is used on each target (prompts, K, guard; or the warp alone):
            the self-calibration's choice, or the configured one (None: the head's configured
            step, ``MedPerSAMHead.configured_step``).
    """

    warper: torch.nn.Module
    priors: Dict[str, Dict[int, Tensor]]
    log: Dict[str, Any]
    results: Dict[str, Dict[int, HeadResult]] = field(default_factory=dict)
    sam_step: Optional[SAMStep] = None

    def covers(self, key: str) -> bool:
        return key in self.priors

    def forget_predictions(self) -> None:
        self.results = {}


#: Self-calibration (``calibration``): 6 augmented copies per reference; guards and K tried;
#: an option must beat the warp by 1 Dice point on the cases (they overstate SAM's gain on
#: other images by 0.5 to 4 points on the embedded tasks); options within 0.25 points tie.
DEFAULT_CALIBRATION = dict(cases=6, seed=1234, guards=(0.0, 0.7, 0.8, 0.85, 0.9, 0.95),
                           iters=(1, 3), margin=0.01, tie=0.0025)

DEFAULT_PROMPTS = (
    dict(type='MaskPrompt', logit_scale=8.0),
    dict(type='BoxPrompt', margin=0.0, per_component=True),
    dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15),
)


@MODELS.register_module()
class MedPerSAMHead(BaseOneShotHead):
    """Warp the reference mask onto the target, prompt SAM with it, refine iteratively.

    1. A ``WarpingModel`` (one per reference set) is fitted on the reference and the unlabeled
       targets (``L_warp`` + ``L_aug``); the reference mask of each class is warped onto every
       target (the prior). With k references the model is fitted with all of them (every
       reference warped to every target), and their warped masks are fused per pixel by
       ``label_fusion`` (local image similarity: multi-atlas label fusion).
    2. The prompt generators (mask logits, ``g_box``, ``g_point``: composable in config) turn
       the current mask into prompts; SAM's best output (by predicted IoU) becomes the current
       mask; repeat up to ``num_iters`` times, or until the mask changes by less than
       ``1 - stop_iou`` (IoU between successive masks). A SAM mask whose Dice with the warped
       mask falls below ``min_sam_agreement`` ends the refinement and is not used: SAM has left
       the structure the warp located (see the guard below).
    3. The warping model is retrained on the refined predictions it can trust
       (``retrain_rounds``; the rule: ``_pseudo_labels``) and step 2 runs again.

    ``fit`` runs steps 1 and 3 and returns a ``MedPerSAMState``; ``predict`` runs step 2 for
    one target with it. A target the fit has not seen is fitted on its own by the segmentor.

    Args:
        warping: ``WarpingModel`` config.
        label_fusion: how k warped references become one prior (default
            ``LocallyWeightedVoting``; unused with one reference).
        prompt_generators: prompt generator configs, merged into one prompt per SAM call.
        use_sam: False gives the warp-only ablation: the warped mask is the prediction.
        num_iters: refinement iterations K (SAM calls per target and class).
        stop_iou: stop when the new mask's IoU with the previous one reaches this.
        multimask_output: ask SAM for 3 masks and keep the one of highest predicted IoU.
        retrain_rounds: R rounds of retraining the warping model on refined predictions.
        prior_threshold: probability above which the warped mask is foreground.
        pseudo_min_dice: a refined mask is a pseudo-label only if its Dice with the current
            warped mask reaches this (0 keeps all); if none does, the round is skipped.
        min_sam_agreement: the guard: SAM's mask replaces the current one only if its Dice
            with the warped mask reaches this (0: SAM is always trusted). None (default): the
            SAM step is self-calibrated per task (``calibration``): prompts, K and the guard
            (or the warp alone) chosen on cases whose truth the references give.
        calibration: the self-calibration's settings: ``cases`` augmented copies per
            reference (the options are ranked on them; k >= 2 adds each reference segmented
            from the others, which rule out an option below the warp there), ``seed``,
            ``guards`` and ``iters`` tried, ``margin`` (Dice, 0..1) an option must gain over
            the warp on the cases, ``tie`` (Dice) within which the most conservative option
            wins (``calibration.choose``).
    """

    transductive = True

    @property
    def method_name(self) -> str:
        return 'Med-PerSAM' if self.use_sam else 'Warp only'

    @property
    def reference_row(self) -> bool:
        """The warp alone is Med-PerSAM's ablation, a reference for the methods."""
        return not self.use_sam

    def __init__(self, warping: Optional[dict] = None, label_fusion: Optional[dict] = None,
                 prompt_generators: Sequence[dict] = DEFAULT_PROMPTS, use_sam: bool = True,
                 num_iters: int = 3, stop_iou: float = 0.98, multimask_output: bool = True,
                 retrain_rounds: int = 1, prior_threshold: float = 0.5,
                 pseudo_min_dice: float = 0.7, min_sam_agreement: Optional[float] = None,
                 calibration: Optional[dict] = None) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'num_iters', num_iters, minimum=1, integer=True)
        check_number(name, 'retrain_rounds', retrain_rounds, minimum=0, integer=True)
        check_number(name, 'stop_iou', stop_iou, minimum=0, maximum=1)
        check_number(name, 'prior_threshold', prior_threshold, minimum=0, maximum=1,
                     open_interval=True)
        check_number(name, 'pseudo_min_dice', pseudo_min_dice, minimum=0, maximum=1)
        if min_sam_agreement is not None:
            check_number(name, 'min_sam_agreement', min_sam_agreement, minimum=0, maximum=1)
        self.calibration = dict(DEFAULT_CALIBRATION, **(calibration or {}))
        unknown = set(self.calibration) - set(DEFAULT_CALIBRATION)
        if unknown:
            raise ValueError(f'{name}: unknown calibration settings {sorted(unknown)}; known: '
                             f'{sorted(DEFAULT_CALIBRATION)}')
        check_number(name, 'calibration.cases', self.calibration['cases'], minimum=1,
                     integer=True)
        for key in ('margin', 'tie'):
            check_number(name, f'calibration.{key}', self.calibration[key], minimum=0,
                         maximum=1)
        # Built once (a bad setting fails now, before any work); every fit copies it. Not a
        # submodule: its unfitted weights are no part of the model's state dict.
        object.__setattr__(self, 'warping',
                           MODELS.build(dict(warping or dict(type='WarpingModel'))))
        self.label_fusion = MODELS.build(dict(label_fusion or dict(type='LocallyWeightedVoting')))
        self.prompt_generators = torch.nn.ModuleList(
            [MODELS.build(dict(cfg)) for cfg in prompt_generators])
        self.use_sam = use_sam
        self.num_iters = num_iters
        self.stop_iou = stop_iou
        self.multimask_output = multimask_output
        self.retrain_rounds = retrain_rounds if use_sam else 0
        self.prior_threshold = prior_threshold
        self.pseudo_min_dice = pseudo_min_dice
        self.min_sam_agreement = min_sam_agreement

    # ------------------------------------------------------------------ fit
    def _new_warper(self, device: torch.device) -> torch.nn.Module:
        return copy.deepcopy(self.warping).to(device)

    @staticmethod
    def _foreground(reference: ReferenceClasses) -> Tensor:
        """The union of a reference image's labelled classes."""
        ref = next(iter(reference.values()))
        labels = ref.label_map if ref.label_map is not None else ref.mask
        return labels > 0

    @torch.no_grad()
    def fit(self, sam: Optional[SAMBackend], references: Sequence[ReferenceClasses],
            targets: Sequence[TargetImage] = (), init: Optional[FitState] = None
            ) -> MedPerSAMState:
        """The whole transductive procedure: fit -> refine every target -> retrain -> ...

        1. The warping model is fitted on the references and the unlabeled targets, and the
           references' class masks are warped onto every target (one flow per reference,
           every class; k references fused by ``label_fusion``).
        2. Each of ``retrain_rounds`` rounds refines the targets with SAM (``predict``'s
           procedure) and retrains the warping model on the trusted refinements
           (``_pseudo_labels``), then warps again. A target whose refinement became a
           pseudo-label keeps it as its prediction (retraining on SAM's masks and refining
           the retrained warp again would compound SAM's errors: measured on the embedded
           ventricles, -1.05 Dice); retraining carries what SAM taught to the targets whose
           SAM mask was not trusted. A round without any trusted refinement ends the rounds:
           the state keeps that round's predictions, which the priors would only reproduce.

        With ``init`` (a volume propagation step: the neighbouring slice's fit) the warping
        model starts from ``init``'s network for ``warping.schedule.warm_start_iters`` steps
        (``WarpingModel.warm_start``) and there is no retraining: the step's refined result
        becomes the next step's reference anyway.
        """
        views = list(references)
        ref_images = [next(iter(v.values())).image for v in views]
        fgs = [self._foreground(v) for v in views]
        images = [t.image for t in targets]
        warm = isinstance(init, MedPerSAMState)
        start = time.perf_counter()
        if warm and init.warper.fitted:
            warper = copy.deepcopy(init.warper)
            fit_log = warper.warm_start(ref_images, fgs, images)
        else:
            warper = self._new_warper(ref_images[0].device)
            fit_log = warper.fit(ref_images, fgs, images)
        log: Dict[str, Any] = dict(fit=dict(fit_log), rounds=[], references=len(views),
                                   warm_start=warm)
        state = MedPerSAMState(warper, self._warp(warper, views, images, targets), log)
        if warm:  # a propagation step keeps its neighbour's choice
            state.sam_step = init.sam_step
        elif sam is None or not self.use_sam:
            state.sam_step = SAMStep(guard=None)
        elif self.min_sam_agreement is not None:
            state.sam_step = self.configured_step
        else:
            calibration = self._calibrate(sam, warper, views)
            state.sam_step = calibration.choice
            log['calibration'] = calibration.log(self._prompt_names)
            ruled_out = (f', {len(calibration.vetoed)} options below the warp on the '
                         'leave-one-out cases ruled out' if calibration.vetoed else '')
            print_log(f'self-calibration on {len(calibration.cases)} cases: the warp '
                      f'{100 * calibration.warp:.2f}, best option '
                      f'{100 * max(calibration.scores.values()):.2f}{ruled_out}; SAM step: '
                      f'{state.sam_step.describe(self._prompt_names)}', logger='current')
        rounds = self.retrain_rounds if self._step(state).uses_sam and not warm else 0
        if rounds:  # every target is refined in each round and at the end: encode them once
            step = sam.encode_batch
            for i in track(range(0, len(targets), step), 'encoding the targets',
                           total=len(range(0, len(targets), step))):
                chunk = targets[i:i + step]
                sam.encode_many([t.image for t in chunk], [t.key for t in chunk])
        fixed: Dict[str, Dict[int, HeadResult]] = {}  # targets whose refinement is a label
        for round_ in range(rounds):
            todo = [t for t in targets if t.key not in fixed]
            results = {t.key: self._predict_classes(sam, views, t, state)
                       for t in track(todo, f'retraining round {round_ + 1}: refining the '
                                      'targets')}
            pseudo = self._pseudo_labels(state, todo, results)
            candidates = sum(any(_sam_used(r) for r in res.values())
                             for res in results.values())
            used = sum(p is not None for p in pseudo)
            print_log(f'retraining round {round_ + 1}: SAM refined {candidates} of '
                      f'{len(todo)} targets, {used} agree with their warp (Dice >= '
                      f'{self.pseudo_min_dice}) and are pseudo-labels', logger='current')
            if used == 0:
                print_log('nothing new to learn: retraining skipped', logger='current')
                log['rounds'].append(dict(retrain_skipped=True, pseudo_label_candidates=candidates,
                                          pseudo_labels_used=0))
                state.results = dict(fixed, **results)
                break
            fixed.update({t.key: results[t.key] for t, p in zip(todo, pseudo) if p is not None})
            labels = [torch.stack([r.mask for r in fixed[t.key].values()]).any(dim=0)
                      if t.key in fixed else None for t in targets]
            refit = dict(warper.refit(ref_images, fgs, images, labels))
            log['rounds'].append(dict(retrain_skipped=False, pseudo_label_candidates=candidates,
                                      pseudo_labels_used=used, fit=refit))
            state.priors = self._warp(warper, views, images, targets)
            state.results = dict(fixed)
        log['seconds'] = time.perf_counter() - start
        print_log(f'Med-PerSAM fit on {len(targets)} targets: {log["seconds"]:.1f} s',
                  logger='current')
        return state

    def _warp(self, warper: torch.nn.Module, references: Sequence[ReferenceClasses],
              images: List[Tensor], targets: Sequence[TargetImage]
              ) -> Dict[str, Dict[int, Tensor]]:
        """Every class mask of the references warped onto every target (one flow per
        reference, C maps); k references fused per pixel by ``label_fusion``."""
        classes = sorted(class_references(references))
        fuse = len(references) > 1
        per_ref = []  # per reference: per target (C [+ 1 warped image], H, W)
        for view in references:
            ref = next(iter(view.values()))
            maps = [view[c].mask.float() if c in view else torch.zeros_like(ref.mask.float())
                    for c in classes]
            if fuse:  # the reference image travels with its masks: fusion compares it
                maps.append(to_gray(ref.image).to(ref.image.device))
            per_ref.append(warper.warp_masks(ref.image, torch.stack(maps), images))
        priors = {}
        for j, (t, image) in enumerate(zip(targets, images)):
            warped = torch.stack([w[j].reshape(-1, *w[j].shape[-2:]) for w in per_ref])
            if fuse:
                fused = self.label_fusion(warped[:, :-1], warped[:, -1],
                                          to_gray(image).to(warped.device))
            else:
                fused = warped[0]
            priors[t.key] = dict(zip(classes, fused))
        return priors

    def _predict_classes(self, sam: SAMBackend, references: Sequence[ReferenceClasses],
                         target: TargetImage, state: MedPerSAMState) -> Dict[int, HeadResult]:
        emb = sam.encode(target.image, key=target.key)
        return {c: self._refine(sam, PromptContext(reference=refs[0],
                                                   more_references=tuple(refs[1:]), target=emb,
                                                   image=target.image, target_key=target.key),
                                state.priors[target.key][c], self._step(state))
                for c, refs in class_references(references).items()}

    @property
    def configured_step(self) -> SAMStep:
        """The SAM step the settings name: every prompt generator, ``num_iters`` and the
        guard ``min_sam_agreement`` (0.95 where it is left to the calibration but a state was
        made without a fit)."""
        guard = 0.95 if self.min_sam_agreement is None else self.min_sam_agreement
        return SAMStep(tuple(range(len(self.prompt_generators))), self.num_iters, guard)

    def _step(self, state: MedPerSAMState) -> SAMStep:
        return state.sam_step if state.sam_step is not None else self.configured_step

    # ------------------------------------------------------------------ self-calibration
    @property
    def _prompt_names(self) -> List[str]:
        return [type(g).__name__.replace('Prompt', '').lower() for g in self.prompt_generators]

    def _prompt_sets(self) -> List[Tuple[int, ...]]:
        """The prompt subsets the calibration tries: every subset of the configured generators
        that holds a box (the anchor every SAM-family model takes), else every non-empty one."""
        n = len(self.prompt_generators)
        subsets = [tuple(c) for r in range(n, 0, -1) for c in itertools.combinations(range(n), r)]
        boxes = {i for i, g in enumerate(self.prompt_generators) if isinstance(g, BoxPrompt)}
        return [c for c in subsets if boxes & set(c)] or subsets

    def _calibration_cases(self, sam: SAMBackend, warper: torch.nn.Module,
                           views: Sequence[ReferenceClasses]) -> List[Tuple[CalibrationCase,
                                                                            Any, int]]:
        """(case, its embedding, class) for every class: augmented copies of each reference
        with the warp's prior on them; with k >= 2, each reference from the others."""
        cfg = self.calibration
        out = []
        for i, view in enumerate(views):
            ref = next(iter(view.values()))
            classes = sorted(view)
            masks = torch.stack([view[c].mask for c in classes])
            copies = augmented_cases(ref.image, masks, cfg['cases'], cfg['seed'] + i,
                                     warper.fitter.augment, warper.network.work_long_side)
            for j, (image, truth) in enumerate(copies):
                key = f'calibration:{ref.key}:{j}'
                prior = self._warp(warper, views, [image],
                                   [TargetImage(image, key)])[key]
                emb = sam.encode(image)
                for k, c in enumerate(classes):
                    out.append((CalibrationCase(image, prior[c] > self.prior_threshold,
                                                truth[k], f'augmented {ref.key} #{j}'), emb, c))
        if len(views) > 1:
            for i, view in enumerate(views):
                ref = next(iter(view.values()))
                others = [v for j, v in enumerate(views) if j != i]
                key = f'calibration:{ref.key}'
                prior = self._warp(warper, others, [ref.image],
                                   [TargetImage(ref.image, key)])[key]
                for c in sorted(set(view) & set(prior)):
                    out.append((CalibrationCase(ref.image, prior[c] > self.prior_threshold,
                                                view[c].mask, f'{LEAVE_ONE_OUT} {ref.key}'),
                                ref.embedding, c))
        return out

    def _calibrate(self, sam: SAMBackend, warper: torch.nn.Module,
                   views: Sequence[ReferenceClasses]) -> Calibration:
        """Measure every SAM-step option on the calibration cases and choose (module
        ``calibration``): one traced refinement per case and prompt subset, every guard and K
        read off the trace."""
        cfg = self.calibration
        cases = self._calibration_cases(sam, warper, views)
        options = option_grid(self._prompt_sets(), sorted(cfg['iters']), sorted(cfg['guards']))
        finals: Dict[SAMStep, List[Tuple[Tensor, Tensor]]] = {o: [] for o in options}
        deepest = max(cfg['iters'])
        refs = class_references(views)
        for case, emb, c in track(cases, 'self-calibration'):
            ctx = PromptContext(reference=refs[c][0], more_references=tuple(refs[c][1:]),
                                target=emb, image=case.image)
            for prompts in self._prompt_sets():
                traces, _, _, _ = self._sam_steps(sam, ctx, case.prior, prompts, deepest, 0.0)
                for o in options:
                    if o.prompts != prompts:
                        continue
                    kept, _ = refinement_outcome(traces, o.guard, o.num_iters, self.stop_iou)
                    mask = traces[kept].mask.to(case.truth.device) if kept >= 0 else case.prior
                    finals[o].append((mask, case.truth))
        calibration = Calibration([case.source for case, _, _ in cases],
                                  case_dice([(case.prior, case.truth) for case, _, _ in cases]),
                                  {o: case_dice(pairs) for o, pairs in finals.items()})
        calibration.decide(cfg['margin'], cfg['tie'])
        return calibration

    def _pseudo_labels(self, state: MedPerSAMState, targets: Sequence[TargetImage],
                       results: Dict[str, Dict[int, HeadResult]]) -> List[Optional[Tensor]]:
        """The pseudo-label rule, whole: per target, the union of its refined class masks, or
        None (left out of the retraining).

        A target counts only where SAM's refinement was used for some class (a mask kept from
        the warp teaches the warp nothing new), and only if its refined foreground's Dice with
        the current warped foreground reaches ``pseudo_min_dice``: a refinement that
        disagrees with the warp wholesale (SAM latched onto another structure) would teach
        the warping model the wrong thing.
        """
        out: List[Optional[Tensor]] = []
        for t in targets:
            res = results[t.key]
            if not any(_sam_used(r) for r in res.values()):
                out.append(None)
                continue
            refined = torch.stack([r.mask for r in res.values()]).any(dim=0)
            warped = sum(state.priors[t.key].values()) > self.prior_threshold
            trusted = (self.pseudo_min_dice <= 0
                       or dice(refined, warped.to(refined.device)) >= self.pseudo_min_dice)
            out.append(refined if trusted else None)
        return out

    # ------------------------------------------------------------------ prediction
    def predict(self, sam: Optional[SAMBackend], ctx: PromptContext,
                state: Optional[MedPerSAMState] = None) -> HeadResult:
        """The target's warped prior, refined by SAM (the fit's own prediction if it made one
        with the final priors)."""
        if state is None or not state.covers(ctx.target_key):
            raise ValueError('Med-PerSAM predicts only targets its fit has seen (the '
                             'segmentor fits it on a target it has not).')
        done = state.results.get(ctx.target_key)
        if done is not None:
            return done[ctx.reference.label]
        return self._refine(sam, ctx, state.priors[ctx.target_key][ctx.reference.label],
                            self._step(state))

    def needs_target_embedding(self, state: Optional[MedPerSAMState]) -> bool:
        """A target is encoded only when its SAM step will call SAM."""
        return state is None or self._step(state).uses_sam

    def _sam_steps(self, sam: SAMBackend, ctx: PromptContext, warped: Tensor,
                   prompts: Sequence[int], num_iters: int, guard: float
                   ) -> Tuple[List[StepTrace], List[Tensor], Optional[Prompts], str]:
        """SAM called on prompts from the current mask, up to ``num_iters`` times, stopping by
        ``refinement_outcome``'s rule: every step's trace and low-res logits, the first
        prompts, and why it stopped."""
        generators = [self.prompt_generators[i] for i in prompts]
        state = replace(ctx, mask=warped, logits=None)
        traces: List[StepTrace] = []
        logits: List[Tensor] = []
        first: Optional[Prompts] = None
        for _ in range(num_iters):
            merged = Prompts.merge([g(state) for g in generators])
            if merged.is_empty:
                return traces, logits, first, 'no prompt'
            first = first if first is not None else merged
            # One set per box (several with BoxPrompt(per_component=True)): the union.
            low_res, _ = decode_union(sam, state.target, merged,
                                      multimask=self.multimask_output)
            mask = logits_to_mask(low_res, state.target)
            empty = not bool(mask.any())
            traces.append(StepTrace(mask.cpu(), 0.0 if empty else dice(mask, warped),
                                    iou(mask, state.mask), empty))
            logits.append(low_res)
            _, stop = refinement_outcome(traces, guard, num_iters, self.stop_iou)
            if stop is not None:
                return traces, logits, first, stop
            state = replace(state, mask=mask, logits=low_res)
        return traces, logits, first, 'iterations'

    def _refine(self, sam: Optional[SAMBackend], ctx: PromptContext, prior: Tensor,
                step: SAMStep) -> HeadResult:
        """Prompts from the current mask -> SAM -> the new mask, by the SAM step ``step``
        (the warp alone when it calls no SAM)."""
        prior = prior.to(ctx.image.device).float()
        warped = prior > self.prior_threshold
        prior_logits = torch.logit(prior.clamp(1e-4, 1 - 1e-4), eps=None) - torch.logit(
            torch.tensor(self.prior_threshold))
        if sam is None or not step.uses_sam or not bool(warped.any()):
            return HeadResult(prior_logits, prompt_mask=warped, refinement=RefinementRecord())
        traces, logits, first, stop = self._sam_steps(sam, ctx, warped, step.prompts,
                                                      step.num_iters, step.guard)
        kept, _ = refinement_outcome(traces, step.guard, step.num_iters, self.stop_iou)
        out = to_image_logits(logits[kept], ctx.target) if kept >= 0 else prior_logits
        record = RefinementRecord(len(traces), stop, kept >= 0, [t.mask for t in traces])
        return HeadResult(out, prompts=first, prompt_mask=warped, refinement=record)
