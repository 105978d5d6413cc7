"""Training on Fashion-MNIST: the datasets a suite can name and the sample shipped in the package
(datasets, fashion_mnist_sample/), the data checked before a run and held on the device (data), the
loop with checkpoints and resume (loop, checkpoint), FLOPs and MFU (mfu), curves (plots), and the
`train` experiment kind (kind).

May import: harness.core and harness.models. Never run/, track/, views/, gate/ or the CLI.
"""
