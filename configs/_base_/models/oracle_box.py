# NOT a method: an upper reference. LiteMedSAM prompted with each target's GROUND-TRUTH box
# (the best of its 3 masks by predicted IoU): what a perfect box prompt gives this model.
_base_ = ['../sam/litemedsam.py']
model = dict(type='OracleBoxSegmentor', head=None, multimask_output=True)
