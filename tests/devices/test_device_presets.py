"""Every preset gets the same smoke test; the registry and the documented physics choices."""

from __future__ import annotations

import pytest
import torch

from quest_lightning.devices import (
    PRESETS,
    DeviceSpec,
    check_bits_fit,
    check_leak_allowed,
    enumerate_patterns,
    get_device,
    ideal_device,
    list_devices,
    pattern_energies,
    register_device,
    shortest_paths,
    unregister_device,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_smoke(name):
    dev = get_device(name)
    assert isinstance(dev, DeviceSpec) and dev.name == name
    assert dev == PRESETS[name]()  # the factory rebuilds the same (valid) spec
    assert dev.illustrative is True and dev.source.strip()
    assert PRESETS[name].__doc__ and len(PRESETS[name].__doc__) > 40
    check_bits_fit(dev, 2)
    check_bits_fit(dev, 3)
    sp = shortest_paths(dev)
    assert sp.strongly_connected
    assert torch.isfinite(sp.energy_j).all() and (sp.energy_j >= 0).all()
    pe = pattern_energies(dev, bits=2)
    n = dev.num_states
    assert pe.write_j.shape == (n * (n - 1) * (n - 2), 3, 3)
    assert torch.isfinite(pe.write_j).all() and torch.isfinite(pe.read_j).all()
    assert (pe.read_j > 0).all()
    assert torch.all(pe.write_j.diagonal(dim1=-2, dim2=-1) == 0)
    off = pe.write_j[:, ~torch.eye(3, dtype=torch.bool)]
    assert (off > 0).all()  # every real transition costs something


@pytest.mark.parametrize("name", ["skmtj7", "skmtj7_vcma"])
def test_skmtj_family_is_seven_states_no_leak_and_fully_priced(name):
    dev = get_device(name)
    assert dev.num_states == 7 and dev.can_leak is False
    with pytest.raises(ValueError, match="cannot leak"):
        check_leak_allowed(dev, leaky=True)
    assert len(enumerate_patterns(dev, 3)) == 5040
    assert torch.isfinite(pattern_energies(dev, 3).write_j).all()


def test_documented_leak_choices():
    assert get_device("ideal7").can_leak is True
    assert get_device("rram8").can_leak is True  # filament relaxation
    assert get_device("pcm8").can_leak is True  # amorphous drift
    assert get_device("fefet8").can_leak is False  # non-volatile polarisation


def test_vcma_is_cheaper_than_current_driven():
    base = shortest_paths(get_device("skmtj7")).energy_j
    vcma = shortest_paths(get_device("skmtj7_vcma")).energy_j
    off = ~torch.eye(7, dtype=torch.bool)
    assert (vcma[off] < base[off]).all()


def test_ideal_device_makes_every_pattern_equal():
    pe = pattern_energies(ideal_device(5, write_energy_j=2.0, read_energy_j=1.0), bits=2)
    assert torch.all(pe.write_j == pe.write_j[0]) and torch.all(pe.read_j == 1.0)
    assert float(pe.write_j[0, 0, 1]) == 2.0


def test_registry_roundtrip():
    assert {"skmtj7", "skmtj7_vcma", "ideal7", "rram8", "pcm8", "fefet8"} <= set(list_devices())
    mine = ideal_device(4, name="test_registry_ideal4")
    try:
        assert register_device(mine) is mine
        assert get_device("test_registry_ideal4") is mine
        register_device(mine)  # re-registering the same spec is harmless
        with pytest.raises(ValueError, match="already registered"):
            register_device(ideal_device(4, write_energy_j=1.0, name="test_registry_ideal4"))
        register_device(ideal_device(4, write_energy_j=1.0, name="test_registry_ideal4"), overwrite=True)
        assert get_device("test_registry_ideal4").transitions[0].energy_j == 1.0
    finally:
        unregister_device("test_registry_ideal4")
    with pytest.raises(ValueError, match="unknown device 'test_registry_ideal4'.*skmtj7"):
        get_device("test_registry_ideal4")
    with pytest.raises(TypeError):
        register_device({"name": "x"})  # type: ignore[arg-type]
