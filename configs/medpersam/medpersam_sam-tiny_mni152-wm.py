# Random tiny SAM: the Med-PerSAM pipeline end to end for tests and CI (its Dice is whatever
# random SAM weights make of good prompts). To fit a CPU test budget the warping model
# trains 400 + 100 iterations instead of 700 + 200.
_base_ = [
    '../_base_/models/medpersam.py',
    '../_base_/sam/sam_tiny.py',
    '../_base_/datasets/mni152_wm.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}},
             head=dict(warping=dict(schedule=dict(iters=400, retrain_iters=100))))
