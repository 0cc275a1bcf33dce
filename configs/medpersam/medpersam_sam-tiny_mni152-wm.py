_base_ = ['./medpersam_sam-vit-b_mni152-wm.py']
# Random tiny SAM: the Med-PerSAM pipeline end to end for tests and CI (its Dice is whatever
# random SAM weights make of good prompts).
model = dict(sam=dict(arch='tiny', checkpoint=None, seed=0))
