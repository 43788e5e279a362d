"""The shared training loop every method builds on."""

from sbbench.training.loop import (
    Objective,
    TrainConfig,
    TrainingDiverged,
    TrainLog,
    Update,
    cross_entropy_objective,
    gradient_step,
    make_optimizer,
    train,
)

__all__ = ["Objective", "TrainConfig", "TrainLog", "TrainingDiverged", "Update", "cross_entropy_objective",
           "gradient_step", "make_optimizer", "train"]
