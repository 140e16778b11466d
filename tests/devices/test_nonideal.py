"""NonIdealities: the ideal default, validation, per-state sigmas, and the round trip through dicts and YAML."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from toy_device import TOY

from quest_lightning.devices import (
    PRESETS,
    DeviceSpec,
    NonIdealities,
    device_from_dict,
    device_to_dict,
    get_device,
    load_device_yaml,
    save_device_yaml,
)


def test_default_is_ideal_and_every_preset_keeps_it():
    assert NonIdealities().is_ideal and NonIdealities().to_dict() == {}
    assert TOY.nonideal == NonIdealities()
    for name in PRESETS:  # no source gives numbers for the presets' non-idealities: they stay ideal
        assert get_device(name).nonideal.is_ideal, name
        assert "nonideal" not in device_to_dict(get_device(name))


def test_sigma_one_for_all_or_per_state():
    ni = NonIdealities(d2d_sigma=0.05, c2c_sigma=(0.01, 0.02, 0.03))
    assert ni.sigma("d2d_sigma", 3) == (0.05, 0.05, 0.05)
    assert ni.sigma("c2c_sigma", 3) == (0.01, 0.02, 0.03)
    assert ni.sigma("read_sigma", 3) == (0.0, 0.0, 0.0)
    assert not ni.is_ideal
    with pytest.raises(ValueError, match="exactly 4"):
        ni.sigma("c2c_sigma", 4)
    with pytest.raises(ValueError, match="not a variation field"):
        ni.sigma("stuck_fraction", 3)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"d2d_sigma": -0.1}, "d2d_sigma"),
        ({"read_sigma": float("nan")}, "read_sigma"),
        ({"c2c_sigma": ()}, "empty"),
        ({"c2c_sigma": (0.1, -0.2)}, "c2c_sigma"),
        ({"stuck_fraction": 1.5}, "stuck_fraction"),
        ({"stuck_fraction": True}, "bool"),
        ({"stuck_state": -1}, "stuck_state"),
        ({"stuck_state": 1.5}, "stuck_state"),
        ({"endurance_cycles": 0.5}, "at least 1 write"),
        ({"endurance_sigma": 0.3}, "needs endurance_cycles"),
        ({"drift_nu_sigma": -0.01}, "drift_nu_sigma"),
        ({"drift_t0_s": 0.0}, "positive time"),
        ({"source": 3}, "source"),
    ],
)
def test_bad_values_name_the_field(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        NonIdealities(**changes)


def test_device_checks_lengths_and_stuck_state():
    with pytest.raises(ValueError, match=r"DeviceSpec\.nonideal.*exactly 3"):
        dataclasses.replace(TOY, nonideal=NonIdealities(d2d_sigma=(0.1, 0.1)))
    with pytest.raises(ValueError, match=r"states 0\.\.2"):
        TOY.with_nonideal(stuck_state=3)
    with pytest.raises(ValueError, match="unknown non-ideality key"):
        TOY.with_nonideal(d2d_sigmaa=0.1)
    with pytest.raises(ValueError, match="nonideal"):
        dataclasses.replace(TOY, nonideal=0.1)
    assert dataclasses.replace(TOY, nonideal=None).nonideal == NonIdealities()


def test_with_nonideal_keeps_the_rest():
    dev = TOY.with_nonideal(d2d_sigma=0.05, stuck_fraction=0.01)
    dev2 = dev.with_nonideal(read_sigma=(0.0, 0.01, 0.02))
    assert dev2.nonideal.d2d_sigma == 0.05 and dev2.nonideal.stuck_fraction == 0.01
    assert dev2.nonideal.read_sigma == (0.0, 0.01, 0.02)
    assert dev2.resistances_ohm == TOY.resistances_ohm and dev2 != TOY
    hash(dev2)


def test_round_trip_through_dict_and_yaml(tmp_path):
    ni = NonIdealities(
        d2d_sigma=(0.01, 0.02, 0.03),
        c2c_sigma=0.005,
        read_sigma=0.002,
        stuck_fraction=1e-3,
        stuck_state=0,
        endurance_cycles=1e9,
        endurance_sigma=0.5,
        drift_nu=0.05,
        drift_nu_sigma=0.01,
        drift_t0_s=1.0,
        source="made up for a test",
    )
    dev = dataclasses.replace(TOY, nonideal=ni)
    data = device_to_dict(dev)
    assert data["nonideal"]["d2d_sigma"] == [0.01, 0.02, 0.03]  # plain lists in YAML
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert device_from_dict(data) == dev
    assert load_device_yaml(save_device_yaml(dev, tmp_path / "dev.yaml")) == dev


def test_yaml_strings_are_numbers(tmp_path):
    """A user's YAML 1.1 file reads ``1e-3`` as a string; it is converted like every other number."""
    text = yaml.safe_dump(device_to_dict(TOY)) + "nonideal: {d2d_sigma: 5e-2, stuck_fraction: 1e-3}\n"
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    dev = load_device_yaml(path)
    assert isinstance(dev, DeviceSpec)
    assert dev.nonideal.d2d_sigma == 0.05 and dev.nonideal.stuck_fraction == 0.001
