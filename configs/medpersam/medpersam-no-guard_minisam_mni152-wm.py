_base_ = ['./medpersam_minisam_mni152-wm.py']
# Ablation: no guard: SAM's refined mask is always used, even where it leaves the warped
# structure (min_sam_agreement=0), and every refined mask is a pseudo-label (pseudo_min_dice=0).
model = dict(head=dict(min_sam_agreement=0.0, pseudo_min_dice=0.0))
