"""Bring your own network: :func:`quantize` converts an existing snnTorch or SpikingJelly model in place.

It sits above :mod:`quest_lightning.nn` (whose layers and neurons it builds) and :mod:`quest_lightning.devices`
(whose constraints it checks once on the converted model).
"""

from quest_lightning.convert.conversion import ConversionReport, ConversionRow
from quest_lightning.convert.converter import quantize

__all__ = ["ConversionReport", "ConversionRow", "quantize"]
