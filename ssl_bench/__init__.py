"""ssl-bench: self-supervised pretext tasks on one shared backbone, measured by one evaluation harness."""

__version__ = "0.1.0"
