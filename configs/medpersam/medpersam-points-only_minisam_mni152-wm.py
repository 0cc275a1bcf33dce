_base_ = ['./medpersam_minisam_mni152-wm.py']
# Ablation: the band point prompts alone.
model = dict(head=dict(prompt_generators=[
    dict(type='BandPointPrompt', num_regions=8, erosion=0.1, dilation=0.15)]))
