"""Real-image datasets: MNIST and CIFAR-10 from the Hugging Face Hub or a folder, and the MNIST-CIFAR dominoes."""

from sbbench.data.images.dominoes import FRESH_SETS, INPUT_SHAPE, VARIANTS, DominoSpec, make_dominoes
from sbbench.data.images.sources import DEFAULT_HUB, DatasetUnavailable, HubRepo, ImageSource

__all__ = ["DEFAULT_HUB", "FRESH_SETS", "INPUT_SHAPE", "VARIANTS", "DatasetUnavailable", "DominoSpec", "HubRepo",
           "ImageSource", "make_dominoes"]
