"""Measured-device import: the shipped example, variation estimates, round trips and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from quest_lightning.devices import (
    estimate_variation,
    example_measurements,
    load_device_yaml,
    load_measured_device,
    measured_device_from_dict,
    resolve_device,
    save_device_yaml,
    save_measurements,
    shortest_paths,
)

EXAMPLE_R = {  # the example file's readings: state -> device -> ohms
    0: {"A": [5012, 4995, 5021], "B": [4968, 4981, 4990]},
    1: {"A": [5230, 5207, 5219], "B": [5181, 5175, 5196]},
    2: {"A": [5425, 5448, 5410], "B": [5389, 5402, 5371]},
    3: {"A": [5633, 5611, 5650], "B": [5590, 5604, 5577]},
}


def _balanced_anova(groups: list[list[float]]) -> tuple[float, float]:
    """Textbook balanced one-way random effects: sigma_c^2 = mean within variance, sigma_d^2 = var(means) - c/m."""
    x = np.log(np.array(groups, dtype=float))
    m = x.shape[1]
    within = x.var(axis=1, ddof=1).mean()
    between = x.mean(axis=1).var(ddof=1) - within / m
    return math.sqrt(max(between, 0.0)), math.sqrt(within)


def test_example_csv_and_yaml_give_the_same_device():
    csv_dev = load_measured_device(example_measurements("csv"))
    yaml_dev = load_measured_device(example_measurements("yaml"))
    assert csv_dev == yaml_dev
    dev = csv_dev
    assert dev.name == "example_mtj4" and dev.num_states == 4 and dev.can_leak is False
    assert dev.illustrative is True and "not a measurement" in dev.source
    for k, by_device in EXAMPLE_R.items():
        readings = by_device["A"] + by_device["B"]
        assert dev.resistances_ohm[k] == pytest.approx(math.exp(np.log(readings).mean()), rel=1e-12)
        d2d, c2c = _balanced_anova([by_device["A"], by_device["B"]])
        assert dev.nonideal.d2d_sigma[k] == pytest.approx(d2d, rel=1e-9)
        assert dev.nonideal.c2c_sigma[k] == pytest.approx(c2c, rel=1e-9)
    assert dev.nonideal.read_sigma == 0.005 and dev.nonideal.endurance_cycles == 1e9  # from the metadata
    # energies: 0 -> 1 is the mean of two V*I*t pulses; resets are given in joules
    assert dev.edges[(0, 1)] == pytest.approx(0.5 * (1.0e-4 + 1.02e-4) / 2 * 1e-8, rel=1e-12)
    assert dev.edges[(0, 3)] == pytest.approx(0.7 * 1.4e-4 * 1e-8, rel=1e-12)
    assert dev.edges[(3, 0)] == 3e-12 and len(dev.transitions) == 9
    assert shortest_paths(dev).cost(3, 2) == pytest.approx(3e-12 + 0.6 * 1.2e-4 * 1e-8)


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_round_trip(tmp_path, fmt):
    dev = load_measured_device(example_measurements(fmt))
    again = load_measured_device(save_measurements(dev, tmp_path / f"saved.{fmt}"))
    assert again == dev and again.description == dev.description
    assert load_device_yaml(save_device_yaml(dev, tmp_path / "spec.yaml")) == dev
    assert resolve_device(str(tmp_path / "spec.yaml")) == dev


def test_overrides_and_repeats_without_labels(tmp_path):
    dev = load_measured_device(example_measurements("yaml"), name="wafer7", illustrative=False, source="lab")
    assert dev.name == "wafer7" and dev.illustrative is False
    data = {
        "name": "two",
        "can_leak": True,
        "read_energy_j": [1e-15, 1e-15],
        "states": [{"state": 0, "resistance_ohm": [1000, 1100, 900]}, {"state": 1, "resistance_ohm": 2000}],
        "pulses": [{"src": 0, "dst": 1, "energy_j": 1e-12}, {"src": 1, "dst": 0, "energy_j": 1e-12}],
        "illustrative": True,
    }
    cyc = measured_device_from_dict(data)
    spread = float(np.log([1000, 1100, 900]).std(ddof=1))
    assert cyc.nonideal.c2c_sigma == pytest.approx((spread, 0.0)) and cyc.nonideal.d2d_sigma == 0.0
    dev = measured_device_from_dict({**data, "repeats_are": "devices"})
    assert dev.nonideal.d2d_sigma == pytest.approx((spread, 0.0)) and dev.nonideal.c2c_sigma == 0.0
    assert dev.resistances_ohm[1] == 2000.0  # one reading is kept as is


def test_estimate_variation_recovers_known_sigmas():
    rng = np.random.default_rng(0)
    sd, sc, devices, cycles = 0.05, 0.02, 60, 8
    offsets = rng.normal(0.0, sd, devices)
    r, labels = [], []
    for d in range(devices):
        r += list(4000.0 * np.exp(offsets[d] + rng.normal(0.0, sc, cycles)))
        labels += [f"cell{d}"] * cycles
    nominal, d2d, c2c = estimate_variation(r, labels)
    assert d2d == pytest.approx(sd, rel=0.25) and c2c == pytest.approx(sc, rel=0.1)
    assert nominal == pytest.approx(4000.0, rel=0.03)
    # one device: all cycle-to-cycle; one reading per device: all device-to-device
    assert estimate_variation([1.0, 2.0], ["a", "a"])[1:] == (0.0, pytest.approx(math.log(2) / math.sqrt(2)))
    assert estimate_variation([1.0, 2.0], ["a", "b"])[1:] == (pytest.approx(math.log(2) / math.sqrt(2)), 0.0)
    with pytest.raises(ValueError, match="names its device"):
        estimate_variation([1.0, 2.0], ["a", None])


CSV_HEAD = "# name: bad\n# can_leak: false\n# read_energy_j: [1.0e-15, 1.0e-15, 1.0e-15]\n# illustrative: true\n"
CSV_COLS = "kind,state,resistance_ohm,device,src,dst,energy_j,voltage_v,current_a,duration_s\n"
GOOD_ROWS = [
    "state,0,1000,,,,,,,",
    "state,1,2000,,,,,,,",
    "state,2,3000,,,,,,,",
    "pulse,,,,0,1,1e-12,,,",
    "pulse,,,,1,2,1e-12,,,",
    "pulse,,,,2,0,1e-12,,,",
]


def _csv(tmp_path: Path, rows: list[str], head: str = CSV_HEAD) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(head + CSV_COLS + "\n".join(rows) + "\n")
    return path


def test_good_csv_loads(tmp_path):
    dev = load_measured_device(_csv(tmp_path, GOOD_ROWS))
    assert dev.resistances_ohm == (1000.0, 2000.0, 3000.0) and dev.nonideal.is_ideal


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        (
            GOOD_ROWS[:2] + GOOD_ROWS[3:] + ["state,3,4000,,,,,,,", "pulse,,,,0,3,1e-12,,,", "pulse,,,,3,0,1e-12,,,"],
            r"state\(s\) \[2\] missing",
        ),
        (
            [GOOD_ROWS[0], "state,1,-2000,,,,,,,"] + GOOD_ROWS[2:],
            r"table\.csv line 7: resistance_ohm='-2000' must be positive",
        ),
        (GOOD_ROWS + ["pulse,,,,1,7,1e-12,,,"], r"line 12: pulse 1 -> 7 names state 7, which has no resistance row"),
        (GOOD_ROWS[:3] + ["pulse,,,,0,2,1e-12,,,", "pulse,,,,2,0,1e-12,,,"], "state 1 is unreachable"),
        (
            GOOD_ROWS[:3] + ["pulse,,,,0,1,1e-12,,,", "pulse,,,,0,2,1e-12,,,", "pulse,,,,2,0,1e-12,,,"],
            "state 1 is a trap",
        ),
        (GOOD_ROWS + ["pulse,,,,0,2,1e-12,0.5,,"], "not both"),
        (GOOD_ROWS + ["pulse,,,,0,2,,0.5,1e-4,"], "needs energy_j"),
        (GOOD_ROWS + ["pulse,,,,0,0,1e-12,,,"], "does not change the state"),
        (GOOD_ROWS + ["state,1,2000,,0,,,,,"], r"these columns should be empty: \['src'\]"),
        (GOOD_ROWS + ["write,1,2000,,,,,,,"], "must be 'state' or 'pulse'"),
        (["state,0,3000,,,,,,,", "state,1,2000,,,,,,,", "state,2,1000,,,,,,,"] + GOOD_ROWS[3:], "sorted ascending"),
        (GOOD_ROWS + ["state,1.5,2000,,,,,,,"], "state index"),
    ],
)
def test_malformed_csv_gets_a_clear_error(tmp_path, rows, fragment):
    with pytest.raises(ValueError, match=fragment):
        load_measured_device(_csv(tmp_path, rows))


def test_malformed_metadata_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"metadata \['name'\] missing"):
        load_measured_device(_csv(tmp_path, GOOD_ROWS, head="# can_leak: false\n"))
    with pytest.raises(ValueError, match="unknown metadata key"):
        load_measured_device(_csv(tmp_path, GOOD_ROWS, head=CSV_HEAD + "# colour: blue\n"))
    with pytest.raises(ValueError, match="both given in nonideal and estimated"):
        load_measured_device(
            _csv(tmp_path, GOOD_ROWS + ["state,0,1100,,,,,,,"], head=CSV_HEAD + "# nonideal: {c2c_sigma: 0.1}\n")
        )
    bad_header = tmp_path / "h.csv"
    bad_header.write_text(CSV_HEAD + "kind,state,ohms\n")
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['ohms'\]"):
        load_measured_device(bad_header)
    with pytest.raises(FileNotFoundError):
        load_measured_device(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="expected a .csv"):
        (tmp_path / "t.txt").write_text("")
        load_measured_device(tmp_path / "t.txt")
    with pytest.raises(ValueError, match=r"states\[0\]"):
        measured_device_from_dict({"name": "x", "can_leak": False, "states": [{"state": 0, "ohm": 1}]})


def test_example_files_ship_with_the_package():
    """The example files are package data: they exist next to the module and pyproject ships them."""
    for fmt in ("csv", "yaml"):
        assert example_measurements(fmt).is_file()
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["quest_lightning.devices"]
    pkg = root / "quest_lightning" / "devices"
    shipped = {p for g in globs for p in pkg.glob(g)}
    assert {example_measurements("csv"), example_measurements("yaml")} <= {p.resolve() for p in shipped}
