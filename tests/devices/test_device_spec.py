"""DeviceSpec: construction, derived read energy, and the validation table of bad specs."""

from __future__ import annotations

import dataclasses

import pytest

from quest_lightning.devices import DeviceCapability, DeviceSpec, Transition

GOOD = dict(
    name="toy3",
    resistances_ohm=(1e3, 2e3, 4e3),
    can_leak=False,
    transitions=((0, 1, 1e-12), (1, 2, 1e-12), (2, 0, 3e-12), (1, 0, 3e-12)),
    read_voltage_v=0.1,
    read_time_s=1e-8,
)


def make(**changes):
    return DeviceSpec(**{**GOOD, **changes})


def test_good_spec_normalises_and_derives_read_energy():
    dev = make(transitions=[[0, 1, 1e-12], {"src": 1, "dst": 2, "energy_j": 1e-12}, (2, 0, 3e-12), (1, 0, 3e-12)])
    assert dev.num_states == 3
    assert dev.transitions[1] == Transition(1, 2, 1e-12)
    assert all(isinstance(e, Transition) for e in dev.transitions)
    # E = V^2 t / R = 0.01 * 1e-8 / R
    assert dev.read_energies_j == pytest.approx((1e-13, 5e-14, 2.5e-14), rel=1e-12)
    assert dev.edges[(2, 0)] == 3e-12
    assert isinstance(dev, DeviceCapability)
    hash(dev)  # frozen and hashable


def test_mapping_transitions_and_explicit_read_energy():
    dev = make(
        transitions={(0, 1): 1.0, (1, 2): 1.0, (2, 0): 1.0},
        read_voltage_v=None,
        read_time_s=None,
        read_energy_j=[3.0, 2.0, 1.0],
    )
    assert dev.read_energies_j == (3.0, 2.0, 1.0)
    assert len(dev.transitions) == 3


def test_frozen():
    dev = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.name = "other"  # type: ignore[misc]


# (id, changes, field named in the message, a fragment of the explanation)
BAD = [
    ("empty-name", dict(name="  "), "name", "non-empty"),
    ("one-state", dict(resistances_ohm=(1e3,), transitions=()), "resistances_ohm", "at least 2"),
    ("unsorted", dict(resistances_ohm=(2e3, 1e3, 4e3)), "resistances_ohm", "sorted ascending"),
    ("duplicate-resistance", dict(resistances_ohm=(1e3, 1e3, 4e3)), "resistances_ohm", "unique"),
    ("zero-resistance", dict(resistances_ohm=(0.0, 1e3, 4e3)), "resistances_ohm", "positive"),
    ("nan-resistance", dict(resistances_ohm=(1e3, float("nan"), 4e3)), "resistances_ohm", "positive and finite"),
    ("leak-not-bool", dict(can_leak="no"), "can_leak", "True or False"),
    ("negative-energy", dict(transitions=((0, 1, -1e-12), (1, 2, 1e-12), (2, 0, 1e-12))), "transitions", ">= 0"),
    ("missing-state", dict(transitions=((0, 1, 1e-12), (1, 3, 1e-12), (2, 0, 1e-12))), "transitions", "does not exist"),
    (
        "self-loop",
        dict(transitions=((0, 0, 1e-12), (0, 1, 1e-12), (1, 2, 1e-12), (2, 0, 1e-12))),
        "transitions",
        "self-loop",
    ),
    (
        "duplicate-edge",
        dict(transitions=((0, 1, 1e-12), (0, 1, 2e-12), (1, 2, 1e-12), (2, 0, 1e-12))),
        "transitions",
        "twice",
    ),
    (
        "unreachable-state",
        dict(transitions=((0, 1, 1e-12), (1, 0, 1e-12), (2, 0, 1e-12))),
        "transitions",
        "R_2 cannot be reached",
    ),
    ("trap-state", dict(transitions=((0, 1, 1e-12), (1, 0, 1e-12), (0, 2, 1e-12))), "transitions", "R_2 cannot reach"),
    ("bad-edge-shape", dict(transitions=((0, 1),)), "transitions", "(src, dst, energy_j)"),
    (
        "read-wrong-length",
        dict(read_voltage_v=None, read_time_s=None, read_energy_j=(1e-14, 1e-14)),
        "read_energy_j",
        "one read energy per state",
    ),
    (
        "read-negative",
        dict(read_voltage_v=None, read_time_s=None, read_energy_j=(1e-14, -1e-14, 1e-14)),
        "read_energy_j",
        ">= 0",
    ),
    ("read-both", dict(read_energy_j=(1e-14, 1e-14, 1e-14)), "read_energy_j", "not both"),
    ("read-neither", dict(read_voltage_v=None, read_time_s=None), "read_energy_j", "give the read energy"),
    ("voltage-without-time", dict(read_time_s=None), "read_time_s", "together"),
    ("nonpositive-voltage", dict(read_voltage_v=0.0), "read_voltage_v", "positive"),
    ("nonpositive-time", dict(read_time_s=-1e-9), "read_time_s", "positive"),
    ("measured-without-source", dict(illustrative=False, source=""), "source", "must say where"),
]


@pytest.mark.parametrize(("changes", "field", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_spec_raises_naming_the_field(changes, field, fragment):
    with pytest.raises(ValueError) as info:
        make(**changes)
    msg = str(info.value)
    assert f"DeviceSpec.{field}=" in msg
    assert fragment in msg


def test_bad_spec_message_shows_the_value():
    with pytest.raises(ValueError, match=r"resistances_ohm=\(2000\.0, 1000\.0, 4000\.0\)"):
        make(resistances_ohm=(2e3, 1e3, 4e3))


def test_validation_table_is_big_enough():
    assert len(BAD) >= 10
