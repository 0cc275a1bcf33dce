# The one-shot segmentor: a frozen promptable model (``sam``, set by a file of ../sam/) and a
# method head (set by a file of this folder). Images reach it as RGB 0..255, unnormalised:
# each SAM-family model normalises in its own way inside the backend.
model = dict(
    type='OneShotSAMSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=False))
