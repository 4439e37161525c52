"""Test support shipped with the package: a simulated NVIDIA GPU for machines without one.

Selected by configuration (``execution.simulated_gpus`` in a study), never by a special case in
a measurement path; every figure measured on it says ``simulated``.
"""
