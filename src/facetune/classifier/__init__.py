"""The face-emotion classifier, by role.

`network` builds, initialises and folds the EfficientNet-B0 (Lite form); `torch_engine` and
`onnx_engine` run it (PyTorch, or its ONNX export in ONNX Runtime); `inference` chooses the
engine, loads checkpoints and builds ensembles; `train` is the training loop with its
augmentation and distillation; `cpu_watch` reads how busy the machine's CPUs are (how many runs
go at once, and whether a batch compose forks a song worker).
"""
