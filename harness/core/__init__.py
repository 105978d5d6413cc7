"""The base every layer stands on: what an error, a registry and an experiment kind are, seeds and
determinism, kernel timing, the environment and telemetry, atomic writes.

Owns: errors (UserError: exit 2), registry (name -> entry, did-you-mean), kinds (Kind, Task, the
spec base and the KINDS registry), determinism, timing (time_call), envinfo, telemetry, io.
May import: nothing of harness but itself. Everything else may import it.
"""
