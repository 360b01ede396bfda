"""gentools: a notebook-first PyTorch toolkit for the classic generative architectures."""

__version__ = "0.1.0"
