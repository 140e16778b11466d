"""Devices as dicts and YAML: round trips, user-written YAML, and resolve_device."""

from __future__ import annotations

import pytest
import yaml

from quest_lightning.devices import (
    PRESETS,
    device_from_dict,
    device_to_dict,
    get_device,
    load_device_yaml,
    resolve_device,
    save_device_yaml,
)

USER_YAML = """\
name: my_rram4
resistances_ohm: [5e3, 1.0e+4, 2.0e+4, 4.0e+4]   # 5e3 is a string to YAML 1.1; it is converted
can_leak: true
transitions:
  - {src: 0, dst: 1, energy_j: 2.0e-12}
  - {src: 1, dst: 2, energy_j: 2.0e-12}
  - {src: 2, dst: 3, energy_j: 2.0e-12}
  - [3, 0, 5.0e-12]
read_voltage_v: 0.2
read_time_s: 1.0e-8
illustrative: true
source: "Made-up numbers for a tutorial."
"""


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_dict_round_trip(name):
    dev = get_device(name)
    data = device_to_dict(dev)
    assert yaml.safe_load(yaml.safe_dump(data)) == data  # plain YAML-safe types only
    back = device_from_dict(data)
    assert back == dev and back.description == dev.description


@pytest.mark.parametrize("name", ["skmtj7", "ideal7"])  # voltage-derived and explicit read energies
def test_yaml_round_trip(tmp_path, name):
    dev = get_device(name)
    path = save_device_yaml(dev, tmp_path / f"{name}.yaml")
    back = load_device_yaml(path)
    assert back == dev
    assert back.read_energies_j == dev.read_energies_j


def test_user_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(USER_YAML)
    dev = load_device_yaml(path)
    assert dev.name == "my_rram4" and dev.resistances_ohm == (5e3, 1e4, 2e4, 4e4)
    assert dev.transitions[3] == (3, 0, 5e-12)
    assert dev.read_energies_j[0] == pytest.approx(0.04 * 1e-8 / 5e3)
    assert resolve_device(str(path)) == dev
    assert resolve_device(path) == dev


def test_resolve_device_forms():
    dev = get_device("pcm8")
    assert resolve_device(dev) is dev
    assert resolve_device("pcm8") is dev
    assert resolve_device(device_to_dict(dev)) == dev
    with pytest.raises(ValueError, match="neither a registered device"):
        resolve_device("no_such_device")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device("missing.yaml")
    with pytest.raises(ValueError, match="not a DeviceSpec"):
        resolve_device(42)  # type: ignore[arg-type]


def test_from_dict_rejects_typos_and_gaps(tmp_path):
    data = device_to_dict(get_device("skmtj7"))
    with pytest.raises(ValueError, match=r"unknown device key\(s\) \['resistance_ohm'\]"):
        device_from_dict({**data, "resistance_ohm": data["resistances_ohm"]})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['transitions'\]"):
        device_from_dict({k: v for k, v in data.items() if k != "transitions"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(USER_YAML.replace("[5e3, 1.0e+4", "[1.0e+4, 5e3"))
    with pytest.raises(ValueError, match=r"bad\.yaml.*resistances_ohm.*sorted ascending"):
        load_device_yaml(bad)
