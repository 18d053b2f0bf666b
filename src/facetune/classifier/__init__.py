"""The face-emotion classifier, by role.

`network` builds, initialises and folds the EfficientNet-B0 (Lite form); `torch_engine` and
`onnx_engine` run it (PyTorch, or its ONNX export in ONNX Runtime); `inference` chooses the
engine, loads checkpoints and builds ensembles; `train` is the training loop with its
augmentation and distillation.
"""
