# Warp only (an ablation of Med-PerSAM, and a reference row): the warping model's warped
# reference mask is the prediction; no SAM is built or run.
_base_ = ['./one_shot_sam.py']
model = dict(
    sam=None,
    head=dict(
        type='MedPerSAMHead',
        # Warping model: settings (network, losses, schedule, augmentation) and their
        # defaults in mmseg_medpersam/methods/medpersam/warping/settings.py
        warping=dict(type='WarpingModel'),
        use_sam=False,
        retrain_rounds=0))
