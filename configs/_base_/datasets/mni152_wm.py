# The embedded default: white matter on 31 axial MNI152 slices (from nilearn's wheel, written
# on first use); slice z=90 is the labelled reference, the other 30 are segmented and scored.
dataset_type = 'MNI152WhiteMatterDataset'
data_root = 'data/mni152_wm'
# The dataset's pipeline: each target with the task's references, and its label for the metrics.
dataset_pipeline = [
    dict(type='LoadOneShotImage'),
    dict(type='LoadOneShotAnnotations'),
    dict(type='PackOneShotInputs'),  # PackSegInputs + reference/slice/window meta keys
]
# mmseg's inference_model(model, img) runs test_pipeline on an image path or array with no
# label; the model brings the reference (this dataset's, or one set with model.set_reference).
test_pipeline = [
    dict(type='LoadOneShotTarget'),  # a path; an array is formatted by the next step
    dict(type='FormatOneShotTarget'),
    dict(type='PackOneShotInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=dataset_pipeline),
)
test_evaluator = dict(type='OneShotEvaluator',
                      metrics=[dict(type='PerImageDiceMetric'), dict(type='PromptQualityMetric')])
