"""Private model training: DP-SGD (Opacus) with user-level sampling, diffprivlib's classic models, jobs
that are charged before they run, a model registry, model cards and predictions.

The facade is `TrainingService`; its errors are in `training.errors`. This package imports `mechanisms`
and `budget`, never the gateway: the catalog arrives as plain dicts and the bounded rows through a
`read_table` callable.
"""

from .errors import Forbidden, InvalidJob, JobFailed, NotFound, TrainingError, UnknownDataset
from .jobs import METHODS, TASKS
from .service import TrainingService

__all__ = [
    "METHODS",
    "TASKS",
    "Forbidden",
    "InvalidJob",
    "JobFailed",
    "NotFound",
    "TrainingError",
    "TrainingService",
    "UnknownDataset",
]
