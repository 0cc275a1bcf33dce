_base_ = ['./medpersam_litemedsam_mni152-wm.py']
# Random tiny SAM: the Med-PerSAM pipeline end to end for tests and CI (its Dice is whatever
# random SAM weights make of good prompts). To fit a CPU test budget the warping model
# trains 400 + 100 iterations instead of 700 + 200.
model = dict(
    sam=dict(arch='tiny', seed=0),
    head=dict(warping=dict(iters=400, retrain_iters=100)))
