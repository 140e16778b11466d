"""The benchmark runs end to end in its CI-safe form and produces its table (timings are not asserted)."""

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_step.py"


def test_quick_benchmark_produces_table_and_json(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_step", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_step", bench)  # dataclasses look their module up by name
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    results = bench.main(["--quick", "--device", "cpu", "--json", str(out)])
    names = [r.name for r in results]
    assert names == bench.configurations(quick=True)
    table = capsys.readouterr().out
    assert "| config | T | batch | step (ms)" in table
    assert "| step (ms) median [min, max] |" in table
    for name in names:
        assert f"| {name} | 4 |" in table
    # the exactness of the integer products is asserted once per run, before the timing, and reported
    assert "Exact: 4 quantized layers, integer products equal to the float64 product (asserted)." in table
    assert "quest-spikingjelly-all over quest-spikingjelly-none, B=8, T=4:" in table
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["results"]] == names
    assert data["exact"].startswith("Exact: 4 quantized layers") and len(data["runs"]) == 1
    base = next(r for r in data["results"] if r["name"] == "sj-fp32")
    assert base["ratio"] == 1.0 and base["memory_ratio"] == 1.0
    assert all(r["step_ms"] > 0 and r["samples_per_s"] > 0 and r["ratio"] > 0 for r in data["results"])
    assert all(r["step_min_ms"] <= r["step_ms"] <= r["step_max_ms"] for r in data["results"])


def test_exactness_check_fails_on_an_inexact_product(monkeypatch):
    """The run's assertion is a real check: a product off by one float32 step fails it."""
    import pytest

    import quest_lightning.functional.intmm as intmm

    spec = importlib.util.spec_from_file_location("bench_step_check", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_step_check", bench)
    spec.loader.exec_module(bench)
    scaled = intmm._scaled
    monkeypatch.setattr(intmm, "_scaled", lambda acc, step, out=None: scaled(acc, step * (1 + 2**-23), out))
    args = bench.argparse.Namespace(width=8, fc=64, image=16)
    with pytest.raises(AssertionError, match="differs from the float64 product"):
        bench.assert_exact_products(args, bench.torch.device("cpu"))
