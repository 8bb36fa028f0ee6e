"""synth: synthetic feedback and training data for aligning language models."""

__version__ = "0.1.0"
