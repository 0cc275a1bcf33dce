# PerSAM (Zhang et al., 2023): location prior (1 positive + 1 negative point), target-guided
# attention, target-semantic prompt, 2 cascaded refinements.
_base_ = ['./one_shot_sam.py']
model = dict(
    head=dict(
        type='PerSAMHead',
        # official_geometry: PerSAM's own reference-cell rule and attention-bias geometry
        # (False: the frame-aligned variant, see mmseg_medpersam/methods/persam/location_prior.py).
        location_prior=dict(type='PerSAMLocationPrior', official_geometry=True),
        num_refinements=2))
