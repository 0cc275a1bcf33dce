# PerSAM (Zhang et al., 2023): location prior (1 positive + 1 negative point), target-guided
# attention, target-semantic prompt, 2 cascaded refinements. Default SAM: LiteMedSAM.
_base_ = ['../sam/litemedsam.py']
model = dict(head=dict(type='PerSAMHead', num_refinements=2))
