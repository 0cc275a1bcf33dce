"""The one transductive procedure: fit on the unlabeled targets, predict, retrain, repeat.

``tools/test.py`` (through ``OneShotTestLoop``) and ``tools/infer.py`` both run a
transductive method (Med-PerSAM) through ``fit_transductive`` here; ground truth is never
looked at.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

Priors = Dict[str, Dict[int, Tensor]]  # per target key (``sample_key``), per class


@torch.no_grad()
def fit_transductive(model, images: List[Tensor], metas: List[dict]) -> Tuple[Priors, dict]:
    """fit -> predict -> retrain on the refined masks -> ... (``head.retrain_rounds`` times).

    A target becomes a pseudo-label only where SAM's refinement was used for it (a mask the
    head kept from the warp teaches the warp nothing new); a round without any is skipped.

    Args:
        model: an ``OneShotSAMSegmentor`` with a transductive head.
        images: (3, H, W) RGB 0..255 target images.
        metas: their metainfo (``img_path``, ``slice_index``, the reference's keys).

    Returns:
        every target's prior (for ``OneShotSAMSegmentor.segment``) and the fit log:
        ``seconds``, and per retraining round ``pseudo_labels_used`` / ``retrain_skipped``.
    """
    from ..segmentors.one_shot_sam import sample_key

    retrain = getattr(model.head, 'retrain_rounds', 0)
    if model.sam is not None and retrain and len(images) <= model.sam.cache.capacity:
        # Every target is needed by the rounds below and the final pass: encode them once,
        # in batches (kept in the backend's cache).
        model.sam.encode_many(images, [sample_key(m) for m in metas])
    priors, first = model.fit_transductive(images, metas)
    log = dict(fit=first, rounds=[])
    for round_ in range(retrain):
        pseudo: List[Optional[Tensor]] = []
        for img, meta in zip(images, metas):
            results = model.segment(img, meta, priors.get(sample_key(meta)))
            refined = any(r.info.get('sam_used') for r in results.values())
            pseudo.append(model.merge_classes(results, tuple(img.shape[-2:]))
                          if refined else None)
        used = sum(p is not None for p in pseudo)
        if used == 0:
            print_log(f'retraining round {round_ + 1}: SAM refined no target (all kept the '
                      'warp), so there is nothing new to learn: skipped', logger='current')
            log['rounds'].append(dict(retrain_skipped=True, pseudo_labels_used=0))
            continue
        print_log(f'retraining round {round_ + 1}: {used} of {len(pseudo)} targets refined '
                  'by SAM are pseudo-label candidates', logger='current')
        priors, refit = model.fit_transductive(images, metas, pseudo_labels=pseudo)
        for ref_log in refit.values():
            ref_log.setdefault('pseudo_labels_used', used)
        skipped = all(r.get('retrain_skipped') for r in refit.values())
        log['rounds'].append(dict(retrain_skipped=skipped,
                                  pseudo_labels_used=sum(r.get('pseudo_labels_used', 0)
                                                         for r in refit.values()),
                                  fit=refit))
    log['seconds'] = sum(r.get('seconds', 0.0) for r in first.values()) + sum(
        r.get('seconds', 0.0) for rnd in log['rounds'] for r in rnd.get('fit', {}).values())
    return priors, log


__all__ = ['fit_transductive', 'Priors']
