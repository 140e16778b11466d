"""The README's Python snippets run as written: the front door gives the callbacks, the three attach to a Trainer,
and ``quantize`` converts the SpikingJelly network in place."""

import re
from pathlib import Path

import quest_lightning
from quest_lightning.lightning import callbacks
from quest_lightning.nn.layers import QuantLayerMixin
from quest_lightning.nn.neurons.base import QuantNeuron

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_front_door_gives_the_callbacks_themselves():
    for name in ("WeightTransitionMonitor", "AORMeter", "DeviceEnergyCallback"):
        assert getattr(quest_lightning, name) is getattr(callbacks, name)


def test_readme_snippet_attaches_the_callbacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python snippet"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    kinds = {type(c) for c in trainer.callbacks}
    assert {callbacks.WeightTransitionMonitor, callbacks.AORMeter, callbacks.DeviceEnergyCallback} <= kinds
    energy = next(c for c in trainer.callbacks if isinstance(c, callbacks.DeviceEnergyCallback))
    assert energy.device.name == "skmtj7" and energy.states == (0, 3, 6)

    net = namespace["net"]  # the bring-your-own-network snippet: every layer and neuron converted, the middle at 2 bits
    layers = [m for m in net if isinstance(m, QuantLayerMixin)]
    assert len(layers) == 3 and sum(isinstance(m, QuantNeuron) for m in net) == 2
    assert [layer.enabled for layer in layers] == [False, True, False] and layers[1].bits == 2
