"""harness: benchmarking and reproducibility for d2l chapters 7-8."""
__version__ = "0.1.0"
