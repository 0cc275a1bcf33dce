"""The inference API every tool uses, in the manner of ``mmseg.apis``.

* ``load_config`` / ``init_one_shot_model``: a config (+ options, + a SAM checkpoint) to a
  built segmentor, bad settings raised as ``ConfigError`` (exit 4);
* ``OneShotInferencer``: config + checkpoint + one labelled reference -> fit on the targets ->
  one prediction per target (``tools/infer.py``);
* ``build_test_runner``: mmengine's Runner for a config's test loop (``tools/test.py``);
* ``build_dataset``: a config's test dataset, an embedded task written first (the one place
  embedded data is written before a run; datasets only read);
* ``dataset_targets``: a config's targets, preprocessed as the test loop sees them;
* ``run_inference``: the user's own files from references into an output folder: targets
  planned (``planning``), each mask and panel written as it finishes, label volumes and DICOM
  SEGs (``volume_outputs``), an output folder owned by one run (``out_dir``): the procedure
  behind ``tools/infer.py``;
* ``run_tool``: the tools' one mapping of errors to exit codes.

``mmseg.apis.init_model(config)`` builds every config of the project too.
"""
from ..utils.cli import run_tool
from .file_inference import InferenceSettings, run_inference
from .inference import (
    OneShotInferencer,
    Prediction,
    apply_checkpoint,
    build_dataset,
    build_model,
    build_test_runner,
    check_device,
    dataset_targets,
    init_one_shot_model,
    load_config,
)

__all__ = ['InferenceSettings', 'OneShotInferencer', 'Prediction', 'apply_checkpoint',
           'build_dataset', 'build_model', 'build_test_runner', 'check_device', 'dataset_targets',
           'init_one_shot_model', 'load_config', 'run_inference', 'run_tool']
