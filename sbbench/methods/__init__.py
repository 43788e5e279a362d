"""Training methods: the plug-in contract, the built-in methods and their registry."""

from sbbench.methods.base import HParams, Method, Track, TrainContext, hparam

__all__ = ["HParams", "Method", "Track", "TrainContext", "hparam"]
