_base_ = ['./persam-f_litemedsam_mni152-wm.py']
# Random tiny SAM: the pipeline end to end for tests and CI (its Dice means nothing).
model = dict(sam=dict(arch='tiny', seed=0))
