_base_ = ['./medpersam_litemedsam_mni152-wm.py']
# Ablation: no retraining of the warping model on refined predictions.
model = dict(head=dict(retrain_rounds=0))
