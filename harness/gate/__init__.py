"""The kernel-speed gate (`harness baseline`, `harness check`; docs/gate.md): measuring a kernel
suite in calibrated rounds (measure), the machine it belongs to (machine), the baseline file
(baseline_file), another revision side by side (ab), the verdicts (check), check.md (report), the
detection study (study: python -m harness.gate.study --calibrate) and the timing layer's own check
(timing: python -m harness.gate.timing).

May import: harness.core, harness.suite, harness.kernels, harness.run (run directories). Nothing of
track/, views/ or the CLI.
"""
