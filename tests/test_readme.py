"""The README's Python snippet runs as written and attaches the three callbacks."""

import re
from pathlib import Path

from quest_lightning.lightning.callbacks import AORMeter, DeviceEnergyCallback, WeightTransitionMonitor

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_snippet_attaches_the_callbacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python snippet"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    kinds = {type(c) for c in trainer.callbacks}
    assert {WeightTransitionMonitor, AORMeter, DeviceEnergyCallback} <= kinds
    energy = next(c for c in trainer.callbacks if isinstance(c, DeviceEnergyCallback))
    assert energy.device.name == "skmtj7" and energy.states == (0, 3, 6)
