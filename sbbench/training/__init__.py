"""The shared training loop every method builds on."""

from sbbench.training.loop import (
    Objective,
    TrainConfig,
    TrainingDiverged,
    TrainLog,
    Update,
    WeightedObjective,
    cross_entropy_objective,
    gradient_step,
    make_optimizer,
    make_scheduler,
    should_stop,
    train,
    weighted_cross_entropy_objective,
    weighted_mean,
)

__all__ = ["Objective", "TrainConfig", "TrainLog", "TrainingDiverged", "Update", "WeightedObjective",
           "cross_entropy_objective", "gradient_step", "make_optimizer", "make_scheduler", "should_stop", "train",
           "weighted_cross_entropy_objective", "weighted_mean"]
