"""The Python blocks of docs/bring-your-own-network.md run as written, in order."""

import re
from pathlib import Path

from spikingjelly.activation_based import neuron as sj_neuron

from quest_lightning.nn import QuantIFNode, QuantLeaky, QuantLinear

PAGE = Path(__file__).resolve().parents[2] / "docs" / "bring-your-own-network.md"


def test_the_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks[1:]:  # the first is the one-line summary
        exec(compile(block, str(PAGE), "exec"), namespace)
    model, net, seq = namespace["model"], namespace["net"], namespace["seq"]
    assert type(model.net[1]) is QuantIFNode and isinstance(model.net[1], sj_neuron.IFNode)
    assert isinstance(model.net[4], QuantLinear) and model.net[4].enabled and model.net[1].scale_source is model.net[0]
    assert isinstance(net.lif2, QuantLeaky) and net.lif2.scale_source is net.conv2
    assert namespace["spk_rec"].shape == (4, 16, 10) and namespace["mem"].shape == (16, 10)
    assert isinstance(seq[5], QuantLeaky)
