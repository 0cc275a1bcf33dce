# Embedded task with simulated inter-subject variation (mmseg_medpersam/datasets/variation.py):
# the undeformed reference slice of the MNI152 ventricles task, and every other slice under its own
# seeded affine + elastic map, bias field, gamma/contrast change and noise. severity scales
# every magnitude (1: the documented defaults); another severity or seed writes its own folder.
_base_ = ['./mni152_wm.py']
data_root = 'data/mni152_ventricles-var'
dataset_type = 'MNI152VariationDataset'
test_dataloader = dict(
    dataset=dict(type=dataset_type, structure='ventricles', severity=1.0, seed=0,
                 data_root=data_root))
