"""``segview bench``: speed figures measured side by side in one run.

Machines are shared and noisy, so every benchmark times the fast path and its baseline in
the same process on the same data and reports their ratio against the target an issue
sets; absolute times are printed too but mean little except on a dedicated GPU. Each one
also checks that the fast path gives the same answer as the baseline.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import numpy as np

from ..core.metrics import ConfusionMatrix, confusion_counts, scores_from_counts


def machine_summary() -> str:
    try:
        import torch
        threads: int | str = torch.get_num_threads()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        threads, gpu = "?", "no torch"
    return (f"{platform.node()}: {os.cpu_count()} CPUs, torch threads {threads}, {gpu}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.1f} ms"
    return f"{seconds:8.2f} s "


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:10.0f}x  (target >= {target:g}x)  {'PASS' if ratio >= target else 'FAIL'}"


# -- metrics ----------------------------------------------------------------------------

def synthetic_labels(shape, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference labels (nested ellipsoids, one shell per class) and two predictions that
    differ from it by a shift and by a boundary jitter, like two imperfect models."""
    z, y, x = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:y, 0:x].astype(np.float32)
    ref = np.zeros(shape, np.uint8)
    pred_a = np.zeros(shape, np.uint8)
    pred_b = np.zeros(shape, np.uint8)
    for k in range(z):
        scale = 1 - abs(2 * k / max(z - 1, 1) - 1) * 0.6  # ellipsoids taper towards the ends
        for target, (dy, dx, wobble) in ((ref, (0, 0, 0)), (pred_a, (3, -2, 0)),
                                         (pred_b, (0, 0, 0.04))):
            radius = np.hypot((yy - y / 2 - dy) / (0.40 * y), (xx - x / 2 - dx) / (0.30 * x))
            radius /= scale * (1 + wobble * rng.standard_normal())
            for c in range(1, num_classes):
                target[k][radius < 1 - (c - 1) / num_classes] = c
    return pred_a, pred_b, ref


def bench_metrics(shape=(300, 512, 512), num_classes: int = 4, radius: int = 15,
                  strokes: int = 200, echo: Callable[[str], None] = print) -> dict:
    """ConfusionMatrix update after a brush stroke vs a full recount (np.bincount) and vs
    MONAI's DiceMetric, for two models. Returns the measured figures."""
    echo(f"segview bench metrics: {' x '.join(map(str, shape))} volume (z, y, x), "
         f"{num_classes} classes, brush radius {radius} px on one slice, two models")
    echo(f"  {machine_summary()}")
    pred_a, pred_b, ref = synthetic_labels(shape, num_classes, seed=0)
    matrices = [ConfusionMatrix.from_arrays(p, ref, num_classes) for p in (pred_a, pred_b)]

    z = shape[0] // 2
    cy, cx = shape[1] // 2, int(shape[2] * 0.62)  # across the outer boundaries
    region = (z, slice(max(cy - radius, 0), min(cy + radius + 1, shape[1])),  # a brush wider than the
              slice(max(cx - radius, 0), min(cx + radius + 1, shape[2])))   # slice stops at its edges
    yy, xx = np.ogrid[region[1], region[2]]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2

    def stroke(paint: int) -> None:
        old = ref[region].copy()
        new = old.copy()
        new[disc] = paint
        ref[region] = new
        start = time.perf_counter()
        for matrix, pred in zip(matrices, (pred_a, pred_b)):
            matrix.update_reference(region, old, new, pred)
        update_times.append(time.perf_counter() - start)

    update_times: list[float] = []
    for n in range(strokes):  # paint and repaint with changing classes
        stroke(1 + n % (num_classes - 1))
    update = statistics.median(update_times)
    full = median_seconds(lambda: confusion_counts(pred_a, ref, num_classes), repeats=3)

    identical = all(np.array_equal(m.counts, confusion_counts(p, ref, num_classes))
                    and np.array_equal(m.per_slice[z], confusion_counts(p[z], ref[z], num_classes))
                    for m, p in zip(matrices, (pred_a, pred_b)))
    echo(f"  incremental update, 2 models  {_format_time(update)}  (median of {strokes} strokes)")
    echo(f"  full np.bincount, 1 model     {_format_time(full)}  (median of 3)")
    echo(f"  speed-up vs full bincount     {_verdict(full / update, 100)}")
    figures = {"update_s": update, "bincount_s": full, "identical": identical}

    monai = _monai_dice_seconds(pred_a, pred_b, ref, num_classes, matrices)
    if monai is None:
        echo("  MONAI is not installed (pip install monai): its comparison is skipped")
    else:
        seconds, agrees = monai
        echo(f"  MONAI DiceMetric, 2 models    {_format_time(seconds)}  (one-hot tensors "
             "made beforehand, not timed)")
        echo(f"  speed-up vs MONAI             {_verdict(seconds / update, 1000)}")
        figures.update(monai_s=seconds, identical=identical and agrees)
    echo(f"  counts identical to a full recount (volume and slice {z}): "
         f"{'yes' if identical else 'NO'}" + ("" if monai is None else
                                            f"; Dice equal to MONAI's: {'yes' if monai[1] else 'NO'}"))
    return figures


def _monai_dice_seconds(pred_a, pred_b, ref, num_classes, matrices):
    try:
        import torch
        from monai.metrics import DiceMetric
    except ImportError:
        return None

    def one_hot(labels):
        tensor = torch.from_numpy(labels).long()[None]
        return torch.nn.functional.one_hot(tensor, num_classes).movedim(-1, 1).float()

    reference = one_hot(ref)
    predictions = [one_hot(pred_a), one_hot(pred_b)]
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    results = []
    with torch.no_grad():
        seconds = median_seconds(lambda: results.append([metric(p, reference)[0].numpy()
                                                         for p in predictions]), repeats=2)
    ours = [scores_from_counts(m.counts).dice for m in matrices]
    agrees = all(np.allclose(np.nan_to_num(o, nan=1.0), r, rtol=1e-5)
                 for o, r in zip(ours, results[-1]))
    return seconds, agrees



# -- training and inference -------------------------------------------------------------

def _architectures() -> list[tuple[str, dict, int]]:
    """(name, UNet arguments, input size): the shipped architecture and the paper's."""
    shipped, size = {"base_channels": 16, "depth": 4, "norm": "batch", "num_classes": 4}, 128
    from ..ml.checkpoint import CheckpointError, read_metadata
    from ..resources import shipped_models
    try:
        meta = read_metadata(shipped_models()["cardiac_ce"])
        shipped = {k: v for k, v in meta["architecture"].items() if k != "name"}
        size = meta["preprocessing"]["input_size"][0]
    except (KeyError, CheckpointError):  # no shipped models yet: their intended shape
        pass
    shipped.pop("in_channels", None)
    paper = {"base_channels": 64, "depth": 4, "norm": None, "num_classes": 4}
    return [(f"shipped (base {shipped['base_channels']}, {size}x{size})", shipped, size),
            ("paper (base 64, 256x256)", paper, 256)]


def _steps_per_second(step: Callable[[], None], seconds: float = 3.0, warmup: int = 1) -> float:
    """Calls per second of ``step``, run for about ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - start)


def bench_train(batch_size: int = 8, seconds: float = 3.0, echo=print) -> dict:
    """Training images per second for each architecture on the CPU, and on the GPU (bf16 +
    channels_last against fp32) when there is one."""
    import torch

    echo(f"segview bench train: Adam steps with CE + Dice, batch {batch_size}")
    echo(f"  {machine_summary()}")
    figures = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name, arguments, size in _architectures():
        for device in devices:
            modes = [("fp32", False)] + ([("bf16 + channels_last", True)] if device == "cuda" else [])
            rates = {}
            for mode, fast in modes:
                rates[mode] = _training_rate(arguments, size, device, fast, batch_size, seconds)
                echo(f"  {name:<28} {device:<4} {mode:<21} {rates[mode]:8.1f} images/s")
            if len(rates) == 2:
                echo(f"  {'':<28} {device:<4} {'speed-up':<21} "
                     f"{rates['bf16 + channels_last'] / rates['fp32']:8.2f}x")
            figures[(name, device)] = rates
    return figures


def _training_rate(arguments, size, device, fast, batch_size, seconds) -> float:
    """Training images per second of one architecture on one device."""
    import torch

    from ..ml.losses import build_loss
    from ..ml.unet import UNet

    model = UNet(1, **arguments).to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loss_function = build_loss("ce+dice")
    images = torch.randn(batch_size, 1, size, size, device=device)
    labels = torch.randint(0, arguments["num_classes"], (batch_size, size, size), device=device)
    if fast:
        # Module.to accepts memory_format (torch's docs); its overload stubs omit it.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        images = images.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=fast):
            loss = loss_function(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return _steps_per_second(step, seconds) * batch_size


def bench_infer(seconds: float = 3.0, echo=print) -> dict:
    """Inference slices per second per architecture on the CPU: torch against ONNX Runtime
    (the default CPU runtime of ``Predictor.from_checkpoint``), batch 8, same threads, in
    alternating rounds, labels checked equal; on a GPU also fp32 batch 1 eager against
    bf16 + channels_last batch 32 (goal 4x), and a 300-slice 512 x 512 volume end to end
    through the Predictor (goal under 0.4 s on an H100)."""
    import torch

    from ..ml.unet import UNet

    echo("segview bench infer: forward passes without gradients")
    echo(f"  {machine_summary()}")
    figures: dict = {}  # (architecture, device) -> rates, and "volume_s"
    for name, arguments, size in _architectures():
        torch.manual_seed(0)
        model = UNet(1, **arguments).eval()
        rates = _cpu_rates(model, torch.randn(8, 1, size, size), seconds)
        echo(f"  {name:<28} cpu  torch fp32 batch 8  {rates['torch']:8.1f} slices/s")
        figures[(name, "cpu")] = rates["torch"]
        if "onnxruntime" not in rates:
            echo("  onnxruntime is not installed: its comparison is skipped")
        else:
            ratio = rates["onnxruntime"] / rates["torch"]
            echo(f"  {name:<28} cpu  ONNX Runtime batch 8 {rates['onnxruntime']:8.1f} slices/s   "
                 f"{ratio:5.2f}x torch; labels equal: {'yes' if rates['labels_equal'] else 'NO'}; "
                 f"{'ONNX Runtime' if ratio > 1 else 'torch'} is faster here")
            figures[(name, "cpu-onnxruntime")] = rates["onnxruntime"]
        if torch.cuda.is_available():
            figures[(name, "cuda")] = _gpu_inference(model, size, seconds, echo, name)
    if torch.cuda.is_available():
        figures["volume_s"] = _gpu_volume_seconds(echo)
    else:
        echo("  no GPU here: the bf16 + channels_last ratio and the 300 x 512 x 512 volume "
             "time need one")
    return figures


def _cpu_rates(model, images, seconds, rounds: int = 3) -> dict:
    """Slices per second of torch and of ONNX Runtime (the model exported, torch's thread
    count) on ``images``, each the median of ``rounds`` alternating rounds so that a
    shared machine's load falls on both; and whether ONNX Runtime's labels equal torch's
    wherever torch's top two logits are not tied within rounding."""
    import torch

    def torch_forward():
        with torch.no_grad():
            return model(images)

    steps = {"torch": torch_forward}
    session = _onnx_session(model, images.shape[-1])
    if session is not None:
        array = images.numpy()
        steps["onnxruntime"] = lambda: session.run(None, {"image": array})[0]
    measured: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up: kernels chosen, memory allocated
    for _ in range(rounds):
        for name, step in steps.items():
            measured[name].append(_steps_per_second(step, seconds / rounds, warmup=0) * len(images))
    rates: dict = {name: statistics.median(values) for name, values in measured.items()}
    if session is not None:
        expected, got = torch_forward(), torch.from_numpy(steps["onnxruntime"]())
        top2 = expected.topk(2, dim=1).values
        decided = (top2[:, 0] - top2[:, 1]) > 1e-4
        rates["labels_equal"] = bool(torch.equal(expected.argmax(1)[decided], got.argmax(1)[decided]))
    return rates


def _onnx_session(model, size):
    """An ONNX Runtime CPU session of ``model`` with torch's thread count; None without
    onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import torch

    from ..ml.onnx_model import _export

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(_export(model, size).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def _gpu_inference(model, size, seconds, echo, name) -> dict:
    import torch

    model = model.cuda()
    one = torch.randn(1, 1, size, size, device="cuda")
    many = torch.randn(32, 1, size, size, device="cuda")

    def run(images, fast):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
            model(images)
        torch.cuda.synchronize()

    slow = _steps_per_second(lambda: run(one, False), seconds)
    model.to(memory_format=torch.channels_last)
    many = many.contiguous(memory_format=torch.channels_last)
    fast = _steps_per_second(lambda: run(many, True), seconds) * 32
    echo(f"  {name:<28} cuda fp32 batch 1        {slow:8.1f} slices/s")
    echo(f"  {name:<28} cuda bf16+cl batch 32    {fast:8.1f} slices/s   "
         f"{_verdict(fast / slow, 4).strip()}")
    model.to(memory_format=torch.contiguous_format)
    return {"fp32_batch1": slow, "bf16_batch32": fast}


def _gpu_volume_seconds(echo) -> float:
    """A 300 x 512 x 512 CT volume through the Predictor with the shipped lung model (or an
    untrained one of the same shape), from int16 HU to labels on the CPU."""
    import torch

    from ..core.volume import Volume
    from ..ml.inference import Predictor
    from ..ml.unet import UNet

    from ..ml.checkpoint import CheckpointError
    from ..resources import shipped_models
    try:
        predictor = Predictor.from_checkpoint(shipped_models()["lung_ce_dice"], "cuda", batch_size=64)
    except (KeyError, CheckpointError):  # no shipped model: same architecture, random weights
        meta = {"classes": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                            {"value": 1, "name": "infection", "color": [255, 170, 0]}],
                "preprocessing": {"input_size": [256, 256],
                                  "normalization": {"method": "ct-window", "low": -1000, "high": 1000}}}
        predictor = Predictor(UNet(1, 2, 16, norm="batch"), meta, "cuda", batch_size=64)
    rng = np.random.default_rng(0)
    volume = Volume(rng.integers(-1000, 400, (300, 512, 512), dtype=np.int16), (0.7, 0.7, 1.0),
                    (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "CT")
    predictor.predict_volume(volume)  # warm-up: kernels, autotuning
    torch.cuda.synchronize()
    seconds = median_seconds(lambda: predictor.predict_volume(volume), repeats=3)
    echo(f"  300 x 512 x 512 volume end to end (Predictor, bf16)  {_format_time(seconds)}   "
         f"({'PASS' if seconds < 0.4 else 'over'} the 0.4 s goal)")
    return seconds


def bench_gui(seconds: float = 3.0, echo=print, compare: bool = False) -> dict:
    """Frame times while scrolling (in compare mode with ``compare``), event-loop stalls
    during inference, and the 3D view's surfaces, in the running window
    (``segview.bench.gui``); offscreen when there is no display."""
    _qt_platform()
    from .gui import bench_3d
    from .gui import bench_gui as measure

    figures = measure(seconds, echo, compare=compare)
    return {**figures, **bench_3d(seconds, echo)}


def bench_edit(seconds: float = 3.0, echo=print) -> dict:
    """Mouse-move handling of brush strokes on a 300- and a 30-slice volume, in the window."""
    _qt_platform()
    from .gui import bench_edit as measure

    return measure(seconds, echo)


def _qt_platform() -> None:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def bench_surface(seconds: float = 3.0, echo=print) -> dict:
    """HD95 of one structure pair, segview against medpy's hd95 (``segview.bench.surface``)."""
    from .surface import bench_surface as measure

    return measure(seconds, echo)


def bench_tools(seconds: float = 3.0, echo=print) -> dict:
    """Islands, smoothing and margin on an organ-sized class of a 300 x 512 x 512 volume
    against scipy on the whole volume (``segview.bench.edit_tools``)."""
    from .edit_tools import bench_edit_tools

    return bench_edit_tools(seconds, echo)


def bench_load(seconds: float = 3.0, echo=print) -> dict:
    """load_volume on a 300 x 512 x 512 CT series against SimpleITK's ImageSeriesReader
    (``segview.bench.load``)."""
    from .load import bench_load as measure

    return measure(seconds, echo)


def bench_worklist(seconds: float = 3.0, echo=print) -> dict:
    """Ctrl+N to the next 300 x 512 x 512 CT case of a dataset with cached predictions,
    cold against prefetched, in the window (``segview.bench.worklist``)."""
    _qt_platform()
    from .worklist import bench_worklist as measure

    return measure(seconds, echo)


def bench_finetune(seconds: float = 3.0) -> dict:
    """A shipped checkpoint fine-tuned on corrected cases of a new scanner, judged on
    held-out cases, beside training from scratch (``segview.bench.finetune``)."""
    from .finetune import bench_finetune as measure

    return measure(seconds)


def bench_clicks(seconds: float = 0.0, cases: int | None = None, click_model=None, first_seed: int | None = None,
                 tasks: tuple[str, ...] | None = None) -> dict:
    """The interactive model judged by the simulated reviewer on unseen phantoms, beside the
    brush and random_walker, and its latency per click (``segview.bench.clicks``)."""
    from .clicks import CASES, FIRST_SEED
    from .clicks import bench_clicks as measure

    return measure(seconds, cases or CASES, click_model, first_seed=FIRST_SEED if first_seed is None else first_seed,
                   tasks=tasks)


def bench_scale(seconds: float = 3.0, echo=print) -> dict:
    """A whole-body CT (1500 x 512 x 512) with two models beside 300 slices: peak memory,
    counting, a stroke, the whole-volume copy and its undo step (``segview.bench.scale``)."""
    from .scale import bench_scale as measure

    return measure(seconds, echo)


#: Each runs with ``seconds`` (``metrics`` with its own arguments instead) and returns its figures.
BENCHMARKS: dict[str, Callable[..., dict]] = {
    "metrics": bench_metrics, "train": bench_train, "infer": bench_infer, "gui": bench_gui,
    "edit": bench_edit, "surface": bench_surface, "tools": bench_tools, "load": bench_load,
    "worklist": bench_worklist, "finetune": bench_finetune, "clicks": bench_clicks, "scale": bench_scale}
