"""scripts/benchmark.py's logic runs on the CPU and reports every field for every mode."""
from pathlib import Path

import torch

from cans.config import load_config
from cans.engine.benchmark import run_benchmark

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_reports_all_fields_on_cpu():
    cfg = load_config(str(REPO / "configs/CANS_Plus/Sony.yaml"),
                      ["model.width=4", "model.enc_blk_nums=[1,1,1,1]", "model.dec_blk_nums=[1,1,1,1]"])
    out = run_benchmark(cfg, ["plain", "bf16", "channels_last"], torch.device("cpu"), patch=128,
                        full_size=(64, 80), warmup=0, iters=1)
    assert out["device"] == "cpu" and [r["mode"] for r in out["results"]] == ["plain", "bf16", "channels_last"]
    for r in out["results"]:
        assert r["train_step_ms"] > 0 and r["infer_ms"] > 0
        assert r["train_tflops"] > 0 and r["infer_tflops"] > 0
        assert r["train_peak_gb"] is None  # CPU: no device memory figure
