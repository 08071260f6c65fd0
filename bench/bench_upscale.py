"""Upscale a 1-megapixel portrait 2x and report time and peak memory.

    python bench/bench_upscale.py [--size 1024] [--scale 2] [--tile 192] [--gpu N] [--out FILE]

The input is scikit-image's astronaut portrait resampled to --size x --size (1024: 1.05 MP).
Peak memory: process RSS sampled every 50 ms (psutil; ncnn allocates outside Python),
getrusage's max RSS, and tracemalloc's peak for Python-side allocations.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
import tracemalloc

import psutil
from PIL import Image

from portrait_studio.finishing.upscale import DEFAULT_OVERLAP, DEFAULT_TILE, _engine, upscale, vulkan_devices
from portrait_studio.testing import photos


class PeakRss:
    """Samples this process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.peak = 0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process(os.getpid())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="0: one pass, no tiling")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    parser.add_argument("--gpu", type=int, default=None, help="Vulkan device index (default: CPU)")
    parser.add_argument("--out", default=None, help="save the result here")
    args = parser.parse_args()

    devices = vulkan_devices()
    hardware = [d for d in devices if not d.software]
    print(f"Vulkan devices: {[d.name for d in devices] or 'none'}; hardware GPU found: {bool(hardware)}")
    print(f"CPU cores: {os.cpu_count()}, device: {'CPU' if args.gpu is None else f'Vulkan {args.gpu}'}")

    image = photos.astronaut().resize((args.size, args.size), Image.Resampling.LANCZOS)
    rss_before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    _engine(-1 if args.gpu is None else args.gpu)
    load_s = time.perf_counter() - t0

    tracemalloc.start()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        out = upscale(
            image,
            args.scale,
            tile=args.tile or None,
            overlap=args.overlap,
            gpu=args.gpu,
            progress=lambda done, total: print(
                f"  tile {done}/{total} {time.perf_counter() - t0:.0f}s", flush=True
            ),
        )
        seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    mp = args.size * args.size / 1e6
    print(
        f"input {image.size} ({mp:.2f} MP) -> output {out.size}, scale {args.scale}, tile {args.tile}, overlap {args.overlap}"
    )
    print(f"model load: {load_s:.1f} s")
    print(f"upscale: {seconds:.1f} s ({args.size * args.size / seconds:.0f} input px/s)")
    print(
        f"peak RSS: {rss.peak / 2**30:.2f} GiB (before: {rss_before / 2**30:.2f} GiB); "
        f"ru_maxrss: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )
    print(f"Python-side peak (tracemalloc): {py_peak / 2**20:.0f} MiB")
    if args.out:
        out.save(args.out)
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
