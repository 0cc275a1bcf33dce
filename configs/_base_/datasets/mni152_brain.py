# Embedded task: the whole brain (tissue with its cavities filled, see
# mmseg_medpersam/datasets/mni152.py) on 31 axial MNI152 slices; z=90 is the reference.
_base_ = ['./mni152_wm.py']
data_root = 'data/mni152_brain'
dataset_type = 'MNI152BrainDataset'
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
