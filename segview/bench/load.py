"""``segview bench load``: opening a 300 x 512 x 512 CT series, segview's ``load_volume``
against SimpleITK's ImageSeriesReader on the same files.

SimpleITK is timed as a script uses it on a folder: ``GetGDCMSeriesFileNames`` (its series
scan) then ``ImageSeriesReader.Execute``; segview's ``load_volume(folder)`` scans and reads
too. Rounds alternate between the two and medians are compared (the target: segview no
slower, ratio >= 1). Peak memory is the growth of the peak resident size (VmHWM) in a
fresh process per reader, against the volume's bytes (target <= 1.5x). The time until the middle slice can
be shown (``first_slice``) is measured from the folder (``load_volume``: the series scan,
then the middle slice; the target is 0.5 s) and from a series already listed.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHAPE = (300, 512, 512)  # (z, y, x)
TARGET_RATIO = 1.0
TARGET_MEMORY = 1.5
TARGET_FIRST_SLICE_S = 0.5

# The peak resident size of this process (VmHWM: ru_maxrss would start at the parent's
# size, which it inherits across fork and exec).
_PEAK_SCRIPT = """
import json, resource, sys
import numpy as np
import SimpleITK as sitk
from segview.core.io import load_volume

def peak_kib():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

folder, reader = sys.argv[1], sys.argv[2]
before = peak_kib()
if reader == "segview":
    array = load_volume(folder).array
else:
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder)
    series = sitk.ImageSeriesReader()
    series.SetFileNames(names)
    image = series.Execute()
    array = sitk.GetArrayViewFromImage(image)
after = peak_kib()
print(json.dumps({"peak": (after - before) * 1024, "bytes": int(array.nbytes)}))
"""


def write_ct_series(folder: Path, shape=SHAPE) -> Path:
    """The lung phantom (HU) resized by nearest neighbour to ``shape`` and written as a CT
    series as scanners write one (uint16 stored, RescaleIntercept -1024)."""
    from ..core.dicom import write_dicom_series
    from ..core.phantoms import lung_phantom
    from ..core.volume import Volume

    phantom = lung_phantom(seed=3).volume
    index = [np.minimum(np.arange(n) * m // n, m - 1) for n, m in zip(shape, phantom.shape)]
    array = phantom.array[np.ix_(*index)].astype(np.int16)
    spacing = (phantom.spacing[0] * phantom.shape[2] / shape[2], phantom.spacing[1] * phantom.shape[1] / shape[1],
               phantom.spacing[2] * phantom.shape[0] / shape[0])
    volume = Volume(array, spacing, phantom.origin, phantom.direction, modality="CT",
                    meta={k: v for k, v in phantom.meta.items() if k != "warnings"})
    write_dicom_series(volume, folder)
    return folder


def _peak_memory(folder: Path, reader: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(folder), reader],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_load(seconds: float = 3.0, echo: Callable[[str], None] = print, shape=SHAPE) -> dict:
    """Time ``load_volume`` and SimpleITK's ImageSeriesReader on one CT series of ``shape``
    (written once to a temporary folder), alternating for at least 5 rounds (more with
    ``seconds``: about ``seconds`` / 2 rounds). Returns the figures; ``identical`` says
    whether voxels and geometry agree."""
    import SimpleITK as sitk

    from . import machine_summary
    from ..core.dicom import READ_THREADS, list_dicom_series, read_dicom_files
    from ..core.io import load_volume

    echo(f"segview bench load: a {' x '.join(map(str, shape))} (z, y, x) CT series, uint16 stored "
         "with RescaleIntercept -1024, one file per slice")
    echo(f"  {machine_summary()}; segview reads with {READ_THREADS} threads")
    with tempfile.TemporaryDirectory(prefix="segview-bench-load-") as tmp:
        folder = Path(tmp) / "ct"
        start = time.perf_counter()
        write_ct_series(folder, shape)
        echo(f"  series written in {time.perf_counter() - start:.1f} s to {folder}")

        def sitk_read():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
            return reader.Execute()

        first_shown: list[float] = []

        def segview_read():
            begin = time.perf_counter()
            return load_volume(folder, first_slice=lambda v, z: first_shown.append(time.perf_counter() - begin))

        ours, theirs, volume, image = [], [], None, None
        rounds = max(5, round(seconds / 2))
        for n in range(rounds):
            for name in (("segview", "sitk") if n % 2 == 0 else ("sitk", "segview")):
                begin = time.perf_counter()
                if name == "segview":
                    volume = segview_read()
                    ours.append(time.perf_counter() - begin)
                else:
                    image = sitk_read()
                    theirs.append(time.perf_counter() - begin)
        assert volume is not None and image is not None
        reference = sitk.GetArrayViewFromImage(image)
        identical = bool(np.array_equal(volume.array, reference)
                         and np.allclose(volume.spacing, image.GetSpacing(), atol=1e-6)
                         and np.allclose(volume.origin, image.GetOrigin(), atol=1e-6)
                         and np.allclose(volume.direction, image.GetDirection(), atol=1e-6))
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        ratio = theirs_s / ours_s

        # The window's way: the series already listed, only reading to the middle slice.
        [info] = list_dicom_series(folder)
        listed: list[float] = []
        for _ in range(3):
            begin = time.perf_counter()
            read_dicom_files(info, first_slice=lambda v, z: listed.append(time.perf_counter() - begin))

        ours_mem, theirs_mem = _peak_memory(folder, "segview"), _peak_memory(folder, "sitk")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    first_s, listed_s = statistics.median(first_shown), statistics.median(listed)
    echo(f"  load_volume(folder)          {ours_s * 1e3:8.1f} ms   median of {rounds}, "
         f"{volume.array.dtype}, {volume.array.nbytes / 2**20:.0f} MiB")
    echo(f"  SimpleITK ImageSeriesReader  {theirs_s * 1e3:8.1f} ms   median of {rounds}, "
         f"{reference.dtype} ({image.GetPixelIDTypeAsString()}), {reference.nbytes / 2**20:.0f} MiB "
         "(series file names + Execute)")
    echo(f"  ratio SimpleITK / segview    {ratio:8.2f}x  (target >= {TARGET_RATIO:g}x)  "
         f"{verdict(ratio >= TARGET_RATIO)}")
    for label, mem in (("segview", ours_mem), ("SimpleITK", theirs_mem)):
        times = mem["peak"] / mem["bytes"]
        target = f"(target <= {TARGET_MEMORY:g}x)  {verdict(times <= TARGET_MEMORY)}" if label == "segview" else ""
        echo(f"  peak memory {label:<10}       {mem['peak'] / 2**20:8.0f} MiB = {times:.2f}x its volume's "
             f"{mem['bytes'] / 2**20:.0f} MiB {target}")
    echo(f"  middle slice ready after     {first_s * 1e3:8.1f} ms from the folder (series scan included; "
         f"target <= {TARGET_FIRST_SLICE_S * 1e3:.0f} ms)  {verdict(first_s <= TARGET_FIRST_SLICE_S)}")
    echo(f"                               {listed_s * 1e3:8.1f} ms from a series already listed "
         "(read_dicom_files(SeriesInfo, first_slice=...))")
    echo(f"  voxels and geometry equal to SimpleITK's: {'yes' if identical else 'NO'}")
    return {"segview_s": ours_s, "sitk_s": theirs_s, "ratio": ratio, "identical": identical,
            "segview_dtype": str(volume.array.dtype), "sitk_dtype": str(reference.dtype),
            "segview_bytes": int(volume.array.nbytes), "sitk_bytes": int(reference.nbytes),
            "segview_peak_bytes": ours_mem["peak"], "sitk_peak_bytes": theirs_mem["peak"],
            "first_slice_s": first_s, "first_slice_listed_s": listed_s}
