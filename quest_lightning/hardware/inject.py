r"""Run a model as a real array would, or train it under the device's noise.

Both install a :attr:`~quest_lightning.nn.layers.QuantLayerMixin.weight_perturbation` hook on every quantized layer.
The hook reads the cells back (:func:`~quest_lightning.hardware.array.read_levels`) and moves each weight by the
level error it reads, in units of the layer's grid step :math:`\alpha / Q`:

.. math::

    w = w_q + (\hat v - (\hat w + Q))\,\frac{\alpha}{Q},

so a cell that reads back its own level keeps :math:`w_q` bit for bit, and the gradient still flows through
:math:`w_q` (the level error is a constant of the forward pass, as in aihwkit's hardware-aware training).
Full-precision layers (``enabled=False``, QUEST's first conv and readout) are not on the array and are untouched.

* :func:`on_array`: one physical array (fixed draws, :func:`~quest_lightning.hardware.array.draw_cells`), read with
  fresh read noise at every forward pass (one read of each weight per forward pass, shared by its time steps
  and samples).
* :func:`noise_aware_training`: a fresh array at every forward pass in training mode (every draw new, so the model
  learns to tolerate the device's statistics rather than one chip); evaluation-mode passes are left ideal.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from quest_lightning.hardware.array import ArrayModel, CellDraw, draw_cells, read_levels
from quest_lightning.nn.inspect import require_quantized_layers
from quest_lightning.nn.layers import QuantLayerMixin

__all__ = ["ArrayInstance", "ArrayPerturbation", "noise_aware_training", "on_array"]


class ArrayPerturbation:
    """The ``weight_perturbation`` hook of one layer (see the module docstring).

    Args:
        layer: The quantized layer (held by a weak reference).
        array: The array model.
        cells: The fixed draws of one physical array, or ``None`` to draw a fresh array at every call.
        generator: The random generator of the draws and the read noise.
        training_only: Perturb only while the layer is in training mode.
    """

    def __init__(
        self,
        layer: QuantLayerMixin,
        array: ArrayModel,
        cells: CellDraw | None,
        generator: torch.Generator,
        training_only: bool = False,
    ) -> None:
        self._layer = weakref.ref(layer)
        self.array = array
        self.cells = cells
        self.generator = generator
        self.training_only = training_only

    def __call__(self, w_q: Tensor, codes: Tensor) -> Tensor:
        layer = self._layer()
        if layer is None or (self.training_only and not layer.training):
            return w_q
        with torch.no_grad():
            cells = self.cells
            if cells is None:
                cells = draw_cells(self.array, codes.shape, self.generator, codes.device)
            read_eps = None
            if self.array.has_read_noise:
                read_eps = torch.randn(codes.shape, generator=self.generator, dtype=torch.float64, device=codes.device)
            q = self.array.qmax
            error = read_levels(codes, self.array, cells, read_eps) - (codes.to(torch.float64) + q)
            step = layer.alpha.detach().to(torch.float64) / max(q, 1)
            delta = (error * step).to(w_q.dtype)
        return w_q + delta


@dataclass(frozen=True, eq=False)
class ArrayInstance:
    """One physical array under a model: the array model and the fixed draws of each quantized layer.

    Attributes:
        array: The array model.
        cells: ``{layer name: CellDraw}`` in module order.
    """

    array: ArrayModel
    cells: dict[str, CellDraw]

    @property
    def num_cells(self) -> int:
        """Cells (weights) on the array."""
        return sum(c.stuck.numel() for c in self.cells.values())

    @property
    def num_stuck(self) -> int:
        """Stuck cells on the array."""
        return sum(c.num_stuck for c in self.cells.values())


def _layers_for(model: nn.Module, array: ArrayModel, who: str) -> list[tuple[str, QuantLayerMixin]]:
    layers = require_quantized_layers(model, who)
    for name, layer in layers:
        name = name or type(layer).__name__
        if layer.num_levels != array.num_levels:
            raise ValueError(
                f"{who}: layer {name!r} has {layer.bits}-bit weights ({layer.num_levels} levels) but the pattern "
                f"{array.pattern} holds {array.num_levels}; use a pattern with one state per level"
            )
        if layer.weight_perturbation is not None:
            raise ValueError(f"{who}: layer {name!r} already has a weight_perturbation hook; nest no two of them")
    return layers


def _generator(model: nn.Module, seed: int) -> torch.Generator:
    device = next(model.parameters()).device
    return torch.Generator(device=device).manual_seed(int(seed))


@contextmanager
def _installed(hooks: dict[QuantLayerMixin, ArrayPerturbation]) -> Iterator[None]:
    try:
        for layer, hook in hooks.items():
            layer.weight_perturbation = hook
        yield
    finally:
        for layer in hooks:
            layer.weight_perturbation = None


@contextmanager
def on_array(model: nn.Module, array: ArrayModel, seed: int = 0) -> Iterator[ArrayInstance]:
    """Inside the block, ``model`` computes with the weights one physical array of ``array`` would read.

    Args:
        model: A model with quantized layers (all of the pattern's bit width).
        array: The device, pattern and converter.
        seed: Seed of this array's draws (and of its read noise), on the model's device.

    Yields:
        The :class:`ArrayInstance` (its draws, e.g. how many cells are stuck).

    Raises:
        ValueError: If the model has no quantized layer, a layer's levels do not match the pattern, or a layer
            already has a hook.

    Example:
        >>> from quest_lightning.devices import get_device
        >>> from quest_lightning.nn import QuantLinear
        >>> layer = QuantLinear(4, 2, bits=2)
        >>> array = ArrayModel(get_device("skmtj7"), (0, 3, 6))  # an ideal device reads back exactly
        >>> x = torch.ones(1, 4)
        >>> with on_array(layer, array) as chip:
        ...     y = layer(x)
        >>> torch.equal(y, layer(x)), chip.num_stuck
        (True, 0)
    """
    layers = _layers_for(model, array, "on_array")
    gen = _generator(model, seed)
    cells = {name: draw_cells(array, layer.weight.shape, gen, layer.weight.device) for name, layer in layers}
    hooks = {layer: ArrayPerturbation(layer, array, cells[name], gen) for name, layer in layers}
    with _installed(hooks):
        yield ArrayInstance(array=array, cells=cells)


@contextmanager
def noise_aware_training(model: nn.Module, array: ArrayModel, seed: int = 0) -> Iterator[None]:
    """Inside the block, every training-mode forward pass sees the weights of a freshly drawn array.

    Evaluation-mode passes (``model.eval()``) stay ideal, so validation inside the block measures the ideal model;
    evaluate on arrays with :func:`on_array` or :func:`~quest_lightning.hardware.evaluate.evaluate_on_array`.

    Raises:
        ValueError: As :func:`on_array`.
    """
    layers = _layers_for(model, array, "noise_aware_training")
    gen = _generator(model, seed)
    with _installed({layer: ArrayPerturbation(layer, array, None, gen, training_only=True) for _, layer in layers}):
        yield
