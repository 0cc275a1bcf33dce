# PerSAM-F: PerSAM + 2 scalars fusing SAM's 3 masks, fitted on the reference (1000 AdamW
# steps on cached logits).
_base_ = ['./one_shot_sam.py']
model = dict(
    head=dict(
        type='PerSAMFHead',
        # PerSAM-F's location prior: one positive point, no decoder hooks, (mean + max) / 2.
        location_prior=dict(type='PerSAMLocationPrior', negative=False,
                            target_guided_attention=False, target_semantic_prompt=False,
                            prototype='mean_max', official_geometry=True),
        iters=1000, lr=1e-3, num_refinements=2))
