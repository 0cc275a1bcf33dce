_base_ = ['./medpersam_litemedsam_mni152-brain-var.py']
# Ablation: the warped reference mask is the prediction; no SAM is built or run.
model = dict(sam=None, head=dict(use_sam=False, retrain_rounds=0))
