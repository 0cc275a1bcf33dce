# Warp only (an ablation of Med-PerSAM, and a reference row): the warping model's warped
# reference mask is the prediction; no SAM is built or run.
_base_ = ['./one_shot_sam.py']
model = dict(
    sam=None,
    head=dict(
        type='MedPerSAMHead',
        # Warping model: defaults in mmseg_medpersam/warping/warping_model.py
        warping=dict(type='WarpingModel'),
        use_sam=False,
        retrain_rounds=0))
