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
    for name in names:
        assert f"| {name} | 4 |" in table
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["results"]] == names
    base = next(r for r in data["results"] if r["name"] == "sj-fp32")
    assert base["ratio"] == 1.0
    assert all(r["step_ms"] > 0 and r["samples_per_s"] > 0 and r["ratio"] > 0 for r in data["results"])
