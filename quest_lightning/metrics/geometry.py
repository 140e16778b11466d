"""The shape of a synaptic layer as numbers: what the operation counts need, without holding the module.

A 1-D convolution is the 2-D convolution of a height-1 input (kernel, stride, dilation and padding of height 1 and 0),
so one piece of arithmetic serves both.

A meter that kept the ``nn.Module`` would hold the model's parameters and could not be checkpointed or rebuilt on
its own; :class:`LayerGeometry` is a frozen, validated record of the convolution (or linear map) arithmetic instead.

>>> from torch import nn
>>> g = LayerGeometry.of(nn.Conv2d(3, 8, 3, stride=2, padding=1))
>>> g.output_size(32, 32), g.ops((3, 32, 32))
((16, 16), 55296)
>>> LayerGeometry.of(nn.Linear(128, 10)).ops((128,))
1280
>>> LayerGeometry.of(nn.Conv1d(2, 4, 3, padding=1)).ops((2, 16))  # 3 x 2 x 4 MACs at 16 output positions
384
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

__all__ = ["LayerGeometry", "ann_ops"]

Kind = Literal["conv2d", "conv1d", "linear"]
KINDS: tuple[str, ...] = ("conv2d", "conv1d", "linear")


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class LayerGeometry:
    """Geometry of a 2-D or 1-D convolution or a linear layer.

    Attributes:
        kind: ``"conv2d"``, ``"conv1d"`` (held as a 2-D convolution of height 1) or ``"linear"``.
        in_channels: Input channels (input features of a linear layer).
        out_channels: Output channels (output features of a linear layer).
        kernel_size: ``(k_h, k_w)``; ``(1, 1)`` for a linear layer.
        stride: ``(s_h, s_w)``.
        padding: Zero padding ``(top, bottom, left, right)``, already resolved (``"same"`` pads
            :math:`d(k-1)` in total, the extra one at the bottom/right, as PyTorch does).
        dilation: ``(d_h, d_w)``.
        groups: Convolution groups; ``in_channels`` and ``out_channels`` are multiples of it.

    Raises:
        ValueError: On an unknown ``kind``, a non-positive size, a negative padding or ``groups`` that does not
            divide both channel counts (the message names the field and the value).
    """

    kind: Kind
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LayerGeometry.kind={self.kind!r} is unknown: use 'conv2d' or 'linear' (or 'conv1d').")
        for name in ("in_channels", "out_channels", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LayerGeometry.{name}={value!r} is invalid: expected a positive integer.")
        for name, length, low in (("kernel_size", 2, 1), ("stride", 2, 1), ("dilation", 2, 1), ("padding", 4, 0)):
            value = getattr(self, name)
            ok = isinstance(value, tuple) and len(value) == length
            if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
                raise ValueError(
                    f"LayerGeometry.{name}={value!r} is invalid: expected a tuple of {length} integers >= {low}."
                )
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"LayerGeometry.groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}."
            )
        if self.kind == "linear" and (self.kernel_size, self.stride, self.padding, self.dilation, self.groups) != (
            (1, 1),
            (1, 1),
            (0, 0, 0, 0),
            (1, 1),
            1,
        ):
            raise ValueError("a linear LayerGeometry has no kernel, stride, padding, dilation or groups to set.")
        if self.kind == "conv1d" and (self.kernel_size[0], self.stride[0], self.dilation[0], *self.padding[:2]) != (
            1,
            1,
            1,
            0,
            0,
        ):
            raise ValueError(
                "a conv1d LayerGeometry is a 2-D convolution of height 1: its kernel, stride and dilation have height "
                "1 and its top and bottom padding are 0."
            )

    @classmethod
    def of(cls, layer: nn.Module) -> LayerGeometry:
        """The geometry of an ``nn.Conv2d``, ``nn.Conv1d`` or ``nn.Linear`` (or a subclass such as ``QuantConv2d``).

        Raises:
            TypeError: ``layer`` is none of them.
            ValueError: A convolution whose ``padding_mode`` is not ``"zeros"`` (its padded positions would be real
                inputs, which the counts do not model).
        """
        if isinstance(layer, (nn.Conv2d, nn.Conv1d)) and layer.padding_mode != "zeros":
            raise ValueError(
                f"padding_mode={layer.padding_mode!r} is not supported by the AOR count (padded positions would "
                "be real inputs); use padding_mode='zeros'."
            )
        if isinstance(layer, nn.Conv1d):
            (k,), (s,), (d,) = layer.kernel_size, layer.stride, layer.dilation
            if isinstance(layer.padding, str):
                total = d * (k - 1) if layer.padding == "same" else 0
                left, right = total // 2, total - total // 2
            else:
                left = right = int(layer.padding[0])
            c_in, c_out, groups = int(layer.in_channels), int(layer.out_channels), int(layer.groups)
            return cls("conv1d", c_in, c_out, (1, k), (1, s), (0, 0, left, right), (1, d), groups)
        if isinstance(layer, nn.Conv2d):
            kernel, dilation = _pair(layer.kernel_size), _pair(layer.dilation)
            if isinstance(layer.padding, str):  # "same" or "valid"
                pads = []
                for k, d in zip(kernel, dilation, strict=True):
                    total = d * (k - 1) if layer.padding == "same" else 0
                    pads += [total // 2, total - total // 2]
                padding = (pads[0], pads[1], pads[2], pads[3])
            else:
                ph, pw = _pair(layer.padding)
                padding = (ph, ph, pw, pw)
            return cls(
                "conv2d",
                int(layer.in_channels),
                int(layer.out_channels),
                kernel,
                _pair(layer.stride),
                padding,
                dilation,
                int(layer.groups),
            )
        if isinstance(layer, nn.Linear):
            return cls("linear", int(layer.in_features), int(layer.out_features))
        raise TypeError(
            f"LayerGeometry.of supports nn.Conv2d and nn.Linear, got {type(layer).__name__}; give a 2-D convolution, "
            "a linear layer or an nn.Conv1d."
        )

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight: ``[C_out, C_in/g, k_h, k_w]``, ``[C_out, C_in/g, k]`` or ``[f_out, f_in]``."""
        if self.kind == "linear":
            return (self.out_channels, self.in_channels)
        if self.kind == "conv1d":
            return (self.out_channels, self.in_channels // self.groups, self.kernel_size[1])
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def feature_dims(self) -> int:
        """Dimensions of one sample's input: 3 (``[C, H, W]``), 2 (``[C, L]``) or 1 (``[F]``)."""
        return {"conv2d": 3, "conv1d": 2, "linear": 1}[self.kind]

    def output_positions(self, input_shape: tuple[int, ...]) -> int:
        """How many output positions each weight meets, for a per-sample input of ``input_shape`` (1 for a linear
        layer)."""
        if self.kind == "linear":
            return 1
        h_out, w_out = self.output_size(*self._plane(input_shape))
        return h_out * w_out

    def _plane(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        return (1, input_shape[-1]) if self.kind == "conv1d" else (input_shape[-2], input_shape[-1])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output height and width for an ``height × width`` input (a convolution only; height 1 for a conv1d)."""
        top, bottom, left, right = self.padding
        sizes = []
        for size, lo, hi, k, s, d in zip(
            (height, width), (top, left), (bottom, right), self.kernel_size, self.stride, self.dilation, strict=True
        ):
            sizes.append((size + lo + hi - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def ops(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates for one sample and one time step (the ANN-equivalent operation count).

        A conv: :math:`k_h k_w \\cdot (C_{in}/g) \\cdot C_{out} \\cdot H_{out} W_{out}` (:math:`k_h = H_{out} = 1`
        for a conv1d); a linear: :math:`f_{in} f_{out}`. ``input_shape`` is the per-sample input shape (``[C, H, W]``,
        ``[C, L]`` or ``[F]``).
        """
        if self.kind == "linear":
            return self.in_channels * self.out_channels
        weights_per_output = math.prod(self.kernel_size) * (self.in_channels // self.groups) * self.out_channels
        return weights_per_output * self.output_positions(input_shape)


def ann_ops(geometry: LayerGeometry, input_shape: tuple[int, ...]) -> int:
    """:meth:`LayerGeometry.ops`: the layer's ANN MACs for one sample and one time step."""
    return geometry.ops(input_shape)
