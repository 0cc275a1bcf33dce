_base_ = ['./medpersam_litemedsam_mni152-wm.py']
# Ablation: no supervised augmentation loss L_aug (warping fitted by L_warp alone).
model = dict(head=dict(warping=dict(losses=dict(weights=dict(aug=0.0)))))
