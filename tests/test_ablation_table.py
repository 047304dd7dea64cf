"""benchmarks/ablation_table.py: one row per transfer report (multi-task score, delta, spread when there are seeds,
mean delta, parameter ratio) and the peer's row, from the files the report and the peer script write."""

import importlib.util
import json
from pathlib import Path


SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ablation_table.py"


def _load():
    spec = importlib.util.spec_from_file_location("ablation_table_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(folder: Path, seeds, rows, ratio=None) -> Path:
    folder.mkdir(parents=True)
    payload = {"seeds": seeds, "tasks": rows}
    if ratio is not None:
        payload["parameters"] = {"ratio_to_one_single_task_model": ratio}
    (folder / "transfer.json").write_text(json.dumps(payload), encoding="utf-8")
    return folder


def test_rows_show_each_report_and_the_peer(tmp_path, capsys):
    one = _report(tmp_path / "screen", [42], [{"task": "a", "multi": 0.8, "delta": 0.02},
                                              {"task": "b", "multi": 0.5, "delta": -0.04}])
    three = _report(tmp_path / "default", [1, 2, 3], [{"task": "a", "multi": 0.81, "delta": 0.01, "delta_std": 0.005},
                                                      {"task": "b", "multi": 0.6, "delta": 0.03, "delta_std": 0.01}],
                    ratio=1.02)
    peer = tmp_path / "peer.json"
    peer.write_text(json.dumps({"peer": "tasknet", "peer_version": "1.60", "seeds": [1],
                                "tasks": {"a": {"mean": 0.7}, "b": {"mean": 0.4}}}), encoding="utf-8")
    assert _load().main([str(one), str(three), "--peer", str(peer)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| Setting | Seeds | `a` | `b` | Mean Δ | Params |"
    assert lines[2] == "| screen | 42 | 0.800 (+0.020) | 0.500 (-0.040) | -0.0100 | – |"
    assert lines[3] == "| default | 1, 2, 3 | 0.810 (+0.010 ± 0.005) | 0.600 (+0.030 ± 0.010) | +0.0200 | 1.02x |"
    assert lines[4] == "| peer: tasknet 1.60 | 1 | 0.700 | 0.400 | – | – |"
