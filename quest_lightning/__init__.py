"""quest-lightning: quantized, energy-aware SNN training for multi-state neuromorphic devices."""

__version__ = "0.1.0"
