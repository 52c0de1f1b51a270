"""The GPU figures in one run, for a lent GPU machine that has torch, numpy, scipy,
scikit-image, safetensors and onnxruntime but not segview's other needs (the README's
"Clicks on a GPU" and "Speed" tables came from it). Carry pydicom as a wheel and run, from
the repository's root:

    PYTHONPATH=/tmp/site:scripts/gpu_shim:. python3 scripts/gpu_check.py [--bench] [--train]

``scripts/gpu_shim`` stands in for SimpleITK, whose wheel is larger than what may travel
there: the phantoms are then smoothed by scipy, not SimpleITK, so their click counts differ
a little from this machine's; use the run for timings and CUDA checks only.

Prints: the click latency as ``segview bench clicks`` times it (three times), the CUDA
graph's masks against torch's on the CPU, the CUDA tests; with ``--bench`` ``segview bench
infer`` and ``bench train``; with ``--train`` two short ``segview train`` runs on the GPU."""
import subprocess
import sys
import time
import traceback

import numpy as np
import torch
from scipy import ndimage

from segview.bench.clicks import FIRST_SEED, LATENCY_OBJECTS, _latency, _print_targets
from segview.core.phantoms import make_phantom
from segview.ml.interactive import ClickModel, error_click
from segview.resources import CLICK_MODEL


def step(name: str, run) -> None:
    print(f"\n===== {name}", flush=True)
    started = time.perf_counter()
    try:
        run()
    except Exception:  # one failing step must not cost the others their device time
        traceback.print_exc()
    print(f"===== {name}: {time.perf_counter() - started:.1f} s", flush=True)


def latency() -> None:
    torch.set_num_threads(2)
    on_cpu = ClickModel.from_checkpoint(CLICK_MODEL, "cpu")
    for _ in range(3):
        _print_targets({}, _latency(CLICK_MODEL, on_cpu), print)


def agreement() -> None:
    """Masks of the CUDA runtime against torch on the CPU, four clicks on each latency slice."""
    phantom = make_phantom("lung", FIRST_SEED)
    image = ndimage.zoom(phantom.volume.array.astype(np.float32), (1, 2, 2), order=1).astype(np.int16)
    reference = ndimage.zoom(phantom.labels, (1, 2, 2), order=0) > 0
    voxels = reference.reshape(len(reference), -1).sum(axis=1)
    cpu = ClickModel.from_checkpoint(CLICK_MODEL, "cpu", runtime="torch")
    gpu = ClickModel.from_checkpoint(CLICK_MODEL, "cuda")
    differ = total = 0
    for z in np.argsort(-voxels)[:LATENCY_OBJECTS]:
        mask, clicks = np.zeros_like(reference[z]), []
        for _ in range(4):
            click = error_click(mask, reference[z])
            if click is None:
                break
            clicks.append(click)
            (box, a), (box_gpu, b) = cpu.refine(image, z, mask, clicks), gpu.refine(image, z, mask, clicks)
            assert box == box_gpu, (box, box_gpu)
            differ, total = differ + int((a != b).sum()), total + a.size
            mask = mask.copy()
            mask[box] = a
    print(f"{gpu.runtime} against torch on the CPU: {differ} of {total} crop voxels differ")


def segview(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "segview", *arguments], timeout=300, check=False)


def main() -> None:
    print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    step("click latency (bench clicks' _latency), three times", latency)
    if torch.cuda.is_available():
        step("CUDA graph against the CPU", agreement)
    step("CUDA tests", lambda: subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider", "tests/ml/test_interactive.py",
         "-k", "cuda_graph or onnx_runtime_and_torch or region_boxes"], timeout=300, check=False))
    if "--bench" in sys.argv:
        step("segview bench infer", lambda: segview("bench", "infer", "--seconds", "1"))
        step("segview bench train", lambda: segview("bench", "train", "--seconds", "1"))
    if "--train" in sys.argv:
        step("segview train on the GPU", lambda: segview(
            "train", "--phantom", "cardiac", "--cases", "8", "--epochs", "2", "-o", "/tmp/gpu_check_train"))
        step("segview train --interactive on the GPU", lambda: segview(
            "train", "--phantom", "lung", "--cases", "4", "--epochs", "1", "--interactive",
            "--samples-per-epoch", "256", "-o", "/tmp/gpu_check_interactive"))


if __name__ == "__main__":
    main()
