# The one-shot segmentor: a frozen promptable model (``sam``: a leaf lists a file of ../sam/
# and sets model = dict(sam={{_base_.sam}})) and a method head (a file of this folder). Images
# reach it as RGB 0..255, unnormalised: each SAM-family model normalises in its own way.
model = dict(
    type='OneShotSAMSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False))
