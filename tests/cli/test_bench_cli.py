"""`segview bench metrics` runs end to end and checks itself (no timings are asserted)."""
import pytest

from segview.cli import main


def test_bench_metrics_reports_ratios_and_identical_counts(capsys):
    assert main(["bench", "metrics", "--shape", "4", "48", "40", "--strokes", "6",
                 "--radius", "5"]) == 0
    out = capsys.readouterr().out
    assert "speed-up vs full bincount" in out and "speed-up vs MONAI" in out
    assert "counts identical to a full recount (volume and slice 2): yes" in out
    assert "Dice equal to MONAI's: yes" in out


def test_bench_refuses_nonsense_sizes(capsys):
    assert main(["bench", "metrics", "--shape", "0", "10", "10"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_bench_metrics_refuses_classes_past_8_bits_and_clips_a_brush_wider_than_the_slice(capsys):
    assert main(["bench", "metrics", "--shape", "2", "16", "16", "--classes", "257"]) == 2
    assert "--classes from 2 to 256" in capsys.readouterr().err
    assert main(["bench", "metrics", "--shape", "4", "24", "20", "--strokes", "3", "--radius", "30"]) == 0
    assert "counts identical to a full recount (volume and slice 2): yes" in capsys.readouterr().out


def test_bench_train_and_infer_run_on_cpu(capsys, monkeypatch):
    from segview import bench
    monkeypatch.setattr(bench, "_architectures", lambda: [
        ("tiny", {"base_channels": 2, "depth": 2, "norm": None, "num_classes": 2}, 32)])
    assert main(["bench", "train", "--seconds", "0.1"]) == 0
    assert main(["bench", "infer", "--seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "images/s" in out and "slices/s" in out


def test_bench_gui_measures_frames_and_stalls_in_the_window(qapp, capsys):
    from segview.bench.gui import bench_gui

    figures = bench_gui(seconds=0.2, shape=(6, 64, 64))
    out = capsys.readouterr().out
    assert "window/level, 2 overlays" in out
    assert "frame p50" in out and "timer gaps, idle" in out and "during inference" in out
    assert "6 slices in" in out
    assert figures["frame_p95_ms"] >= figures["frame_p50_ms"] > 0
    assert figures["gap_max_ms_inference"] >= figures["gap_p99_ms_inference"] > 0


def test_bench_3d_times_the_first_surfaces_against_marching_cubes_alone(qapp, capsys):
    from segview.bench.gui import bench_3d

    figures = bench_3d(seconds=0.1, shape=(24, 96, 96))  # offscreen: no OpenGL, the builder alone
    out = capsys.readouterr().out
    assert "3D view, 24 x 96 x 96 labels, 3 classes" in out and "x marching cubes alone" in out
    assert "scroll with the 3D view open" in out
    assert figures["surfaces_first_ratio"] > 0 and figures["frame_p95_ms_3d"] > 0


def test_bench_edit_times_strokes_on_two_volume_sizes_and_checks_the_metrics(qapp, capsys):
    from segview.bench.gui import bench_edit

    figures = bench_edit(seconds=0.1, shapes=((12, 64, 64), (4, 64, 64)))
    out = capsys.readouterr().out
    assert "mouse move p50" in out and "metrics exact" in out and "p95 12 slices / p95 4 slices" in out
    assert all(figures[((12, 64, 64), plane)]["exact"] for plane in ("axial", "coronal", "sagittal"))
    assert figures[((4, 64, 64), "axial")]["exact"]
    assert figures["growth"] > 0


def test_bench_gui_in_compare_mode(qapp, capsys):
    from segview.bench.gui import bench_gui

    figures = bench_gui(seconds=0.1, shape=(6, 64, 64), compare=True)
    assert "compare mode, 2 panes" in capsys.readouterr().out and figures["frame_p95_ms"] > 0


def test_bench_worklist_times_the_next_case_cold_and_prefetched(qapp, capsys):
    from segview.bench.worklist import bench_worklist

    from segview.gui.settings import recent, remember_recent, settings

    remember_recent("/the/users/scan.nii.gz")
    users = settings().fileName()
    figures = bench_worklist(seconds=1, shape=(6, 48, 48))
    out = capsys.readouterr().out
    assert "next case cold" in out and "next case prefetched" in out and "the 1 s goal" in out
    assert "predictions shown equal the cached ones: yes" in out
    assert figures["exact"] and figures["cold_s"] > 0 and figures["prefetched_s"] > 0
    assert settings().fileName() == users and recent() == ["/the/users/scan.nii.gz"]  # the bench's cases not in it


def test_bench_scale_prints_both_sizes_side_by_side_and_checks_itself(capsys):
    from segview.bench.scale import bench_scale

    result = bench_scale(shapes=((6, 48, 40), (18, 48, 40)), strokes=3)
    out = capsys.readouterr().out
    assert "6 slices" in out and "18 slices" in out and "growth" in out
    assert "peak memory / image bytes" in out and "undo step / dense diff" in out
    assert "count both models / bincount pass" in out and "mouse move p95" in out
    assert result["exact"] and "undo and redo exact, live counts equal to a full recount: yes" in out


def test_seconds_is_offered_only_where_it_sets_something(capsys):
    """A tester's --seconds did nothing to clicks, finetune and scale, while every --help said
    "time per measurement"."""
    for fixed in ("clicks", "finetune", "scale"):
        with pytest.raises(SystemExit):
            main(["bench", fixed, "--seconds", "1"])
        assert "unrecognized arguments: --seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "worklist", "--help"])
    assert "rounds of cold and prefetched Ctrl+N" in capsys.readouterr().out
