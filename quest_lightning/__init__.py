"""quest-lightning: quantized, energy-aware SNN training for multi-state neuromorphic devices."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # the front door, imported on first use so that ``import quest_lightning`` stays light
    if name == "quantize":
        from quest_lightning.nn.convert import quantize

        return quantize
    raise AttributeError(f"module 'quest_lightning' has no attribute {name!r}")
