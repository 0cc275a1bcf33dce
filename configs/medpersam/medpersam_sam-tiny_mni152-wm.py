_base_ = ['./medpersam_litemedsam_mni152-wm.py']
# Random tiny SAM: the Med-PerSAM pipeline end to end for tests and CI (its Dice is whatever
# random SAM weights make of good prompts). To fit a 3-minute CPU budget the warping model
# trains 600 + 150 iterations instead of 1000 + 300.
model = dict(
    sam=dict(arch='tiny', seed=0),
    head=dict(warping=dict(iters=600, retrain_iters=150)))
