"""The shared training loop every method builds on."""

from sbbench.training.loop import (
    Objective,
    TrainConfig,
    TrainingDiverged,
    TrainLog,
    cross_entropy_objective,
    train,
)

__all__ = ["Objective", "TrainConfig", "TrainLog", "TrainingDiverged", "cross_entropy_objective", "train"]
