"""fraudctl — one CLI for a real-time fraud-scoring platform."""

__version__ = "0.1.0"
