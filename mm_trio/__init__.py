"""mm-trio: a multi-symbol grid market maker on Trio."""

__version__ = "0.1.0"
