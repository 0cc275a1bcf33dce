# The embedded default: white matter on 31 axial MNI152 slices (from nilearn's wheel, written
# on first use); slice z=90 is the labelled reference, the other 30 are segmented and scored.
dataset_type = 'MNI152WhiteMatterDataset'
data_root = 'data/mni152_wm'
test_pipeline = [
    dict(type='LoadOneShotImage'),
    dict(type='LoadOneShotAnnotations'),
    dict(type='PackOneShotInputs'),  # PackSegInputs + reference/slice/window meta keys
]
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline),
)
test_evaluator = dict(type='OneShotEvaluator',
                      metrics=[dict(type='PerImageDiceMetric'), dict(type='PromptQualityMetric')])
