# Embedded task: the lateral ventricles (enclosed CSF, see mmseg_medpersam/datasets/mni152.py)
# on 14 axial MNI152 slices z=74..100; slice z=88 is the reference, the other 13 are scored.
_base_ = ['./mni152_wm.py']
data_root = 'data/mni152_ventricles'
dataset_type = 'MNI152VentriclesDataset'
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
