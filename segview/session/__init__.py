"""Review sessions (no Qt): the state of the work and every transition of it."""
from .models import SLOTS, Model
from .provenance import Provenance
from .review import LabelFile, PredictionBatch, ReviewSession, SessionError, read_label_file
from .worklist import (STATUSES, Case, CaseSession, DatasetError, PredictionCache, QueueStep, Worklist,
                       WorklistNavigator, dataset_layout)

__all__ = ["ReviewSession", "Model", "SLOTS", "LabelFile", "PredictionBatch", "SessionError", "read_label_file",
           "Worklist", "Case", "CaseSession", "STATUSES", "DatasetError", "PredictionCache", "QueueStep",
           "Provenance", "WorklistNavigator", "dataset_layout"]
