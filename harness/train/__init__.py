"""Training on Fashion-MNIST: the data held on the device (data), the loop with checkpoints and
resume (loop, checkpoint), FLOPs and MFU (mfu), curves (plots), and the `train` experiment kind
(kind).

May import: harness.core and harness.models. Never run/, track/, views/, gate/ or the CLI.
"""
