"""sbbench: a benchmark for simplicity bias in neural networks (Shah et al., NeurIPS 2020)."""

__version__ = "0.4.0"
