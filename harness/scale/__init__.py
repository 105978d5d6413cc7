"""Scaling a suite out: shards on several processes, machines or a cluster (launchers/).

Imports core/ (and the layers below scale for launch/merge); ray and submitit only inside the
launcher that needs them.
"""
