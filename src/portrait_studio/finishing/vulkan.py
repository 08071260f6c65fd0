"""Which Vulkan GPUs the upscaler may use, and a clear refusal when there is none.

The CPU path never touches Vulkan. A GPU is used only when the caller names one, and only
if it is real hardware: Mesa's llvmpipe/lavapipe are Vulkan "devices" that run on the CPU,
16x slower than the CPU path itself, so asking for one is refused with the reason.

ncnn (the `ncnn` PyPI package) opens Vulkan itself at run time: the loader
`libvulkan.so.1` (Debian: libvulkan1) and, failing that, a few GPU drivers directly (the
NVIDIA driver's libGLX_nvidia.so.0 among them). Nothing is linked, so a machine without
any of them still imports and upscales on the CPU. The probe runs in a child process,
once per process: initialising a broken driver can crash the process that does it, and
ncnn reports a missing loader on the C stderr, which stays out of the user's terminal.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from functools import cache

from pydantic import BaseModel, ConfigDict

from ..errors import NotConfigured

__all__ = ["VulkanDevice", "VulkanProbe", "choose_gpu", "probe_vulkan", "vulkan_devices"]

_DEVICE_TYPES = {0: "discrete", 1: "integrated", 2: "virtual", 3: "cpu"}
_SOFTWARE_NAMES = ("llvmpipe", "lavapipe", "swiftshader", "software")

INSTALL_HINT = (
    "apt-get install libvulkan1 plus the GPU's Vulkan driver (NVIDIA: the proprietary driver; "
    "AMD/Intel: mesa-vulkan-drivers), or leave out the GPU id to upscale on the CPU"
)


class VulkanDevice(BaseModel):
    """A Vulkan device ncnn can see. `software` marks CPU renderers (llvmpipe, lavapipe)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    name: str
    kind: str  # discrete | integrated | virtual | cpu | unknown
    software: bool


class VulkanProbe(BaseModel):
    """What the machine offers: whether the Vulkan loader library loads, and the devices ncnn found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    loader: bool
    devices: tuple[VulkanDevice, ...] = ()
    error: str | None = None  # the probe itself failed (ncnn missing, crash, timeout)

    @property
    def hardware(self) -> tuple[VulkanDevice, ...]:
        return tuple(d for d in self.devices if not d.software)


def _loader_present() -> bool:
    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return False
    return True


_PROBE = """
import json, ncnn
out = []
for i in range(ncnn.get_gpu_count()):
    info = ncnn.get_gpu_info(i)
    out.append({"index": i, "name": info.device_name(), "code": int(info.type())})
print(json.dumps(out))
"""


def _device(index: int, name: str, code: int) -> VulkanDevice:
    kind = _DEVICE_TYPES.get(code, "unknown")
    software = kind == "cpu" or any(s in name.lower() for s in _SOFTWARE_NAMES)
    return VulkanDevice(index=index, name=name, kind=kind, software=software)


@cache
def probe_vulkan() -> VulkanProbe:
    """Probe once per process (a child process: a broken driver cannot take this one down)."""
    loader = _loader_present()
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return VulkanProbe(loader=loader, error=f"the Vulkan probe did not finish: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return VulkanProbe(loader=loader, error=f"the Vulkan probe failed: {last}")
    lines = done.stdout.strip().splitlines()
    devices = tuple(_device(**raw) for raw in json.loads(lines[-1])) if lines else ()
    return VulkanProbe(loader=loader, devices=devices)


def vulkan_devices() -> tuple[VulkanDevice, ...]:
    """The Vulkan devices ncnn sees on this machine (software renderers included, marked)."""
    return probe_vulkan().devices


def choose_gpu(gpu: int, probe: VulkanProbe, *, allow_software: bool = False) -> VulkanDevice:
    """The device for `gpu`, or a NotConfigured that says what is missing and how to fix it.

    A missing loader is a missing *system* library (apt), not a Python module; a software
    renderer is refused unless `allow_software` (it is slower than the CPU path).
    """
    if gpu < 0:
        raise NotConfigured(f"GPU id {gpu} is negative", hint="pass a Vulkan device index (0, 1, ...) or none for the CPU")
    if probe.error is not None and not probe.devices:
        raise NotConfigured(f"no Vulkan GPU could be probed ({probe.error})", hint=INSTALL_HINT)
    if not probe.devices:
        if not probe.loader:
            raise NotConfigured(
                "no Vulkan GPU: the system library libvulkan.so.1 (the Vulkan loader) is missing "
                "and no GPU driver could be opened directly",
                hint=INSTALL_HINT,
            )
        raise NotConfigured("no Vulkan GPU: the Vulkan loader is installed but lists no device", hint=INSTALL_HINT)
    found = ", ".join(f"{d.index}: {d.name}{' (software)' if d.software else ''}" for d in probe.devices)
    device = next((d for d in probe.devices if d.index == gpu), None)
    if device is None:
        raise NotConfigured(f"no Vulkan device {gpu} (found: {found})",
                            hint="pick one of those ids, or leave out the GPU id to upscale on the CPU")
    if device.software and not allow_software:
        raise NotConfigured(
            f"Vulkan device {gpu} is {device.name}, a software renderer that runs on the CPU and is slower "
            f"than the CPU path (found: {found})",
            hint="leave out the GPU id to upscale on the CPU, or install the GPU's Vulkan driver",
        )
    return device
