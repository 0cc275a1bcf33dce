# NOT a method: an upper reference. The SAM prompted with each target's GROUND-TRUTH box
# (the best of its 3 masks by predicted IoU): what a perfect box prompt gives that model.
_base_ = ['./one_shot_sam.py']
model = dict(type='OracleBoxSegmentor', multimask_output=True)
