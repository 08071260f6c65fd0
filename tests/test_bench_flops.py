"""The FLOP count the GPU benchmark reports utilisation against."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _bench():
    path = Path(__file__).parent.parent / "bench" / "bench_gpu_flux.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_flux", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flux1_dev_costs_74_tflop_per_step_at_1024():
    bench = _bench()
    tflop = bench.flops_per_step(bench.FLUX1_DEV, 4096, 512) / 1e12
    assert abs(tflop - 74.4) < 0.2
    assert bench.flops_per_step(bench.FLUX1_DEV, 1024, 512) / 1e12 < 25  # 512²: ~21.5


def test_h100_pcie_is_not_mistaken_for_sxm():
    bench = _bench()
    assert bench.peak_tflops("NVIDIA H100 PCIe", None) == (756.0, 1513.0)
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == (989.4, 1978.9)
