# Med-PerSAM: a warping model fitted on the reference + the unlabeled targets turns the
# reference label into mask, box and spread-out point prompts; SAM refines them K times; the
# warping model is retrained R times on the refined predictions.
_base_ = ['./one_shot_sam.py']
model = dict(
    head=dict(
        type='MedPerSAMHead',
        # Warping model: settings (network, losses, schedule, augmentation) and their
        # defaults in mmseg_medpersam/methods/medpersam/warping/settings.py
        warping=dict(type='WarpingModel'),
        prompt_generators=[
            dict(type='MaskPrompt', logit_scale=8.0, use_sam_logits=True),
            # one box per connected component: a structure in several parts (the two
            # ventricles) is not asked for everything between them (docs/results.md)
            dict(type='BoxPrompt', margin=0.0, per_component=True),
            dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15,
                 partition='sector'),
        ],
        num_iters=3,
        stop_iou=0.98,
        multimask_output=True,
        retrain_rounds=1,
        pseudo_min_dice=0.7,
        # The SAM step (prompt subset, K, and the guard: a SAM mask whose Dice with the warped
        # mask is below it is not used; or the warp alone) is self-calibrated per task on
        # augmented copies of the reference(s) (methods/medpersam/calibration.py). A number
        # here fixes the guard instead (0: SAM always trusted; 0.95: the former default).
        min_sam_agreement=None,
        calibration=dict(cases=6, guards=(0.0, 0.7, 0.8, 0.85, 0.9, 0.95), iters=(1, 3),
                         margin=0.01, tie=0.0025)))
