_base_ = [
    '../_base_/sam/sam_vit-b.py', '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py'
]
# Med-PerSAM: a warping model fitted on the reference + the unlabeled targets turns the
# reference label into mask, box and spread-out point prompts; SAM refines them K times; the
# warping model is retrained R times on the refined predictions.
warping = dict(type='WarpingModel')  # defaults: see mmseg_medpersam/warping/warping_model.py
model = dict(
    head=dict(
        type='MedPerSAMHead',
        warping=warping,
        prompt_generators=[
            dict(type='MaskPrompt', logit_scale=8.0, use_sam_logits=True),
            dict(type='BoxPrompt', margin=0.0),
            dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15,
                 partition='sector'),
        ],
        num_iters=3,
        stop_iou=0.98,
        multimask_output=True,
        retrain_rounds=1,
        pseudo_min_dice=0.7))
