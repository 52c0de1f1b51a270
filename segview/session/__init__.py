"""Review sessions (no Qt): the state of the work and every transition of it."""
from .models import SLOTS, Model
from .review import LabelFile, PredictionBatch, ReviewSession, SessionError, read_label_file

__all__ = ["ReviewSession", "Model", "SLOTS", "LabelFile", "PredictionBatch", "SessionError", "read_label_file"]
