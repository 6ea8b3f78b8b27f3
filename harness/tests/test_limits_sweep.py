"""Device limits and the sweep, without a GPU: the limit parser, a percentage of the native peak
turned into bytes, the library's packing stats read field by field, the sweep's order, stopping
and verdicts with fake runs, the plots' limit line and library timeline, and compare.py end to
end with a stand-in `ltshim` CLI (a Python script) that fails under limits it "cannot" meet."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ltharness import limits, packing, report, sweep
from ltharness.runner import RunResult

HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GiB, MiB = 1 << 30, 1 << 20


# ---- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("12GiB", 12 * GiB), ("500MiB", 500 * MiB), ("1.5GiB", 3 * GiB // 2), ("3GB", 3 * 10**9), ("250MB", 250 * 10**6),
    ("1073741824", GiB), ("64k", 64 << 10), ("2g", 2 * GiB), ("1TiB", 1 << 40), (" 8 GiB ", 8 * GiB)])
def test_byte_limits_parse_with_binary_and_decimal_units(text, expected):
    lim = limits.parse_limit(text)
    assert lim.bytes == expected and lim.percent is None
    assert lim.resolve(None) == expected and lim.resolve(123) == expected  # the native peak does not matter


@pytest.mark.parametrize("text,percent", [("60%", 60.0), ("12.5%", 12.5), ("100%", 100.0), ("150 %", 150.0)])
def test_percent_limits_are_of_the_native_peak(text, percent):
    lim = limits.parse_limit(text)
    assert lim.percent == percent and lim.bytes is None
    assert lim.resolve(None) is None
    assert lim.resolve(10 * GiB) == int(10 * GiB * percent / 100)


@pytest.mark.parametrize("bad", ["", "abc", "12 parsecs", "0%", "-5GiB", "0", "0MiB", "5%%", "1001%", "GiB", "1e9"])
def test_bad_limits_are_refused_with_what_is_accepted(bad):
    with pytest.raises(ValueError) as e:
        limits.parse_limit(bad)
    assert repr(bad) in str(e.value)


def test_limit_lists_are_percentages_highest_first_without_repeats():
    assert limits.parse_percent_list("90,80,70") == [90, 80, 70]
    assert limits.parse_percent_list("30, 90%,60,90") == [90, 60, 30]
    for bad in ("", ",", "90,abc", "90,8GiB"):
        with pytest.raises(ValueError):
            limits.parse_percent_list(bad)


def run(kind="native", repeat=1, rc=0, wall=10.0, peak=None, metrics=None, stats=None, outputs=None, error=None, tail=None):
    return RunResult(kind=kind, repeat=repeat, returncode=rc, wall_s=wall, nvml_peak_bytes=peak, metrics=metrics or {},
                     ltshim_stats=stats, outputs_path=outputs, error=error if error or rc == 0 else f"exit code {rc}", tail=tail or [])


def test_native_peak_is_the_median_of_nvml_then_of_torchs_peak_and_never_of_failed_runs():
    runs = [run(peak=10 * GiB), run(peak=30 * GiB), run(peak=20 * GiB), run(rc=1, peak=90 * GiB), run("ltshim", peak=1)]
    peak, src = limits.native_peak(runs)
    assert peak == 20 * GiB and "NVML" in src and "3 native" in src
    peak, src = limits.native_peak([run(metrics={"peak_reserved_bytes": 4 * GiB}), run(metrics={"peak_reserved_bytes": 6 * GiB})])
    assert peak == 5 * GiB and "peak_reserved_bytes" in src
    assert limits.native_peak([run(rc=3, peak=GiB)]) == (None, "no native run completed")
    peak, src = limits.native_peak([run()])
    assert peak is None and "no NVML samples" in src


def test_the_limit_check_uses_nvml_and_the_librarys_held_peak():
    r = run("ltshim", peak=5 * GiB, stats={"packing": {"held_peak_bytes": 4 * GiB}})
    c = limits.check(r, 4 * GiB)
    assert c == {"nvml_peak_bytes": 5 * GiB, "nvml_under_limit": False, "held_peak_bytes": 4 * GiB, "library_under_limit": True}
    c = limits.check(run("ltshim", stats={"allocations": {}}), 4 * GiB)
    assert c["nvml_under_limit"] is None and c["library_under_limit"] is None


def test_with_several_devices_the_limit_check_takes_the_largest_device_peak_not_the_sum():
    devices = {"0": {"held_peak_bytes": 3 * GiB}, "1": {"held_peak_bytes": 4 * GiB}}
    r = run("ltshim", stats={"packing": {"held_peak_bytes": 7 * GiB, "devices": devices}})
    c = limits.check(r, 4 * GiB)
    assert c["held_peak_bytes"] == 4 * GiB and c["library_under_limit"] is True


# ---- the library's packing stats --------------------------------------------------------------

FULL_PACKING = {"enabled": True, "mode": "lossless", "limit_bytes": 4 * GiB, "held_bytes": 3 * GiB, "held_peak_bytes": 4 * GiB - 1,
                "resident_bytes": 2 * GiB, "packed_bytes": GiB // 2, "packed_original_bytes": 2 * GiB, "passthrough_bytes": 64 * MiB,
                "scratch_bytes": 32 * MiB, "packs": 40, "restores": 12, "drops_clean": 5,
                "bytes_in_by_codec": {"zvc": 2 * GiB}, "bytes_out_by_codec": {"zvc": GiB // 2}, "pack_host_ns": 2_500_000,
                "restore_host_ns": 1_000_000, "steps": 4, "restores_per_step": [0, 4, 3, 5], "kept_resident": {"graph": 2, "pinned": 1},
                "encodes_by_cause": {"first": 10, "changed": 2, "discarded": 1, "to_lossy": 0},
                "encoded_bytes_by_cause": {"first": 10 * MiB, "changed": 2 * MiB, "discarded": MiB, "to_lossy": 0},
                "copies_discarded": {"of_written": 1, "of_survivor": 3, "lossless": 0, "any": 0},
                "copies_discarded_bytes": {"of_written": MiB, "of_survivor": 3 * MiB, "lossless": 0, "any": 0},
                "timeline": [[0, 0, 0, 0], [500, 2 * GiB, 0, 2 * GiB], [1000, GiB, GiB // 2, 3 * GiB // 2]]}


def test_packing_summary_reads_every_field_and_derives_ratio_and_restores_per_step():
    s = packing.summarize({"packing": FULL_PACKING})
    assert s["ratio"] == 4.0 and s["restores_per_step_median"] == 3.5 and s["restores_per_step_max"] == 5
    assert s["packs"] == 40 and s["kept_resident"] == {"graph": 2, "pinned": 1} and s["mode"] == "lossless"
    assert s["encodes_by_cause"]["discarded"] == 1 and s["copies_discarded_bytes"]["of_survivor"] == 3 * MiB
    rows = "\n".join(packing.table([("run", s)]))
    assert "| encodes by cause | first 10 (10.0 MiB), changed 2 (2.0 MiB), discarded 1 (1.0 MiB), to_lossy 0 (0.0 MiB) |" in rows
    assert "| kept copies discarded | of_written 1 (1.0 MiB), of_survivor 3 (3.0 MiB), lossless 0 (0.0 MiB), any 0 (0.0 MiB) |" in rows
    t, resident, packed, held = packing.timeline({"packing": FULL_PACKING})
    assert t == [0.0, 0.5, 1.0] and resident[1] == 2 * GiB and packed[2] == GiB // 2 and held[2] == 3 * GiB // 2


def test_packing_fields_are_all_optional():
    assert packing.summarize({"allocations": {}}) is None and packing.summarize(None) is None
    s = packing.summarize({"packing": {"packs": 3, "restores_per_step": "junk", "timeline": [[1, 2]]}})
    assert s["packs"] == 3 and s["restores"] is None and s["ratio"] is None and s["restores_per_step_median"] is None
    assert packing.timeline({"packing": {"timeline": [[1, 2]]}}) is None
    rows = "\n".join(packing.table([("run", s)]))
    assert "| packs / restores / clean drops | 3 / n/a / n/a |" in rows and "n/a" in rows
    assert "| encodes by cause | n/a |" in rows and "| kept copies discarded | n/a |" in rows


# ---- the report with a limit ----------------------------------------------------------------

def test_report_states_the_limit_in_bytes_and_percent_and_whether_each_run_stayed_under(tmp_path):
    stats = {"allocations": {"peak_bytes": 1}, "launches": {"kernels_executed_seen": 2}, "fallbacks": {}, "config": {}, "packing": FULL_PACKING}
    over = dict(stats, packing=dict(FULL_PACKING, held_peak_bytes=5 * GiB))
    runs = [run("native", peak=8 * GiB), run("ltshim", 1, peak=int(4.4 * GiB), stats=stats), run("ltshim", 2, peak=3 * GiB, stats=over)]
    meta = {"workload": "sparse_mlp", "command": ["x"], "mode": "lossless", "repeat": 2, "date": "today", "gpu": "test",
            "device_limit": limits.describe(limits.parse_limit("50%"), 4 * GiB, 8 * GiB, "NVML")}
    rep = report.write(str(tmp_path), meta, runs, None, [], [])
    md = (tmp_path / "report.md").read_text()
    assert f"= {4 * GiB} bytes (4.00 GiB), 50.0% of the native peak 8.00 GiB" in md
    assert "| 1 | yes | 4.40 GiB | **NO** | 4.00 GiB | yes |" in md
    assert "| 2 | yes | 3.00 GiB | yes | 5.00 GiB | **NO** |" in md
    assert "## Packing (library stats)" in md and "2.00 GiB -> 512.0 MiB, 4.00x" in md and "graph: 2, pinned: 1" in md
    assert [c["library_under_limit"] for c in rep["limit_checks"]] == [True, False]
    assert json.loads((tmp_path / "report.json").read_text())["meta"]["device_limit"]["bytes"] == 4 * GiB


def test_the_timeline_plot_draws_the_limit_and_the_librarys_resident_and_packed_bytes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [run("native", peak=GiB), run("ltshim", stats={"packing": FULL_PACKING})]
    runs[0].timeline = [(0.0, 0), (1.0, GiB)]
    fig, ax = plt.subplots()
    report.draw_timeline(ax, runs, "t", limit_bytes=3 * GiB)
    lines = {l.get_label(): l for l in ax.get_lines()}
    limit = next(l for k, l in lines.items() if k.startswith("device limit"))
    assert list(limit.get_ydata()) == [3.0, 3.0]
    resident = next(l for k, l in lines.items() if "resident" in k)
    packed = next(l for k, l in lines.items() if "packed" in k)
    assert list(resident.get_xdata()) == [0.0, 0.5, 1.0] and list(resident.get_ydata()) == [0.0, 2.0, 1.0]
    assert list(packed.get_ydata()) == [0.0, 0.0, 0.5]
    fig2, ax2 = plt.subplots()
    report.draw_timeline(ax2, runs[:1], "t")  # no limit, no library timeline: NVML only
    assert [l.get_label() for l in ax2.get_lines()] == ["native"]
    plt.close(fig)
    plt.close(fig2)


# ---- the sweep's logic, with fake runs --------------------------------------------------------

def fake_judge(ok_runs):
    return {"bit_exact": all(r.metrics.get("exact", True) for r in ok_runs)}, \
        ([] if all(r.metrics.get("exact", True) for r in ok_runs) else ["mode lossless must be bit-exact, but these outputs differ: x"])


def fake_sweep(percents, completes, stop_after=2, exact=lambda p: True, raises=()):
    calls, written = [], []
    base = sweep.baseline([run(wall=10.0, metrics={"steps_per_s": 2.0})], "steps_per_s")

    def run_at(p, limit_bytes):
        calls.append((p, limit_bytes))
        if p in raises:
            raise KeyError("a harness bug")
        if completes(p):
            return [run("ltshim", wall=10.0 * 100 / p, metrics={"steps_per_s": 2.0 * p / 100, "exact": exact(p)},
                        stats={"packing": {"held_peak_bytes": limit_bytes - 1, "restores": 100 - p}})]
        return [run("ltshim", rc=1, wall=1.0, tail=["Traceback", "torch.OutOfMemoryError: CUDA out of memory"])]

    entries = sweep.sweep(percents, 1000 * MiB, run_at, lambda p, b, rs: sweep.evaluate(p, b, rs, base, fake_judge),
                          stop_after=stop_after, on_entry=lambda es: written.append(len(es)))
    return entries, calls, written, base


def test_the_sweep_goes_from_the_highest_limit_down_and_stops_after_two_failures_in_a_row():
    entries, calls, written, _ = fake_sweep([30, 90, 50, 70, 10, 20, 40, 60, 80], lambda p: p >= 50)
    assert [p for p, _ in calls] == [90, 80, 70, 60, 50, 40, 30]
    assert calls[0][1] == 900 * MiB
    assert [e["limit_percent"] for e in entries] == [90, 80, 70, 60, 50, 40, 30, 20, 10]
    assert [e.get("skipped", False) for e in entries] == [False] * 7 + [True, True]
    assert written == list(range(1, 10))  # written after every limit
    assert sweep.lowest(entries)["limit_percent"] == 50


def test_one_failure_does_not_stop_the_sweep_and_keep_going_tries_every_limit():
    entries, calls, _, _ = fake_sweep([90, 80, 70, 60], lambda p: p != 80)
    assert [p for p, _ in calls] == [90, 80, 70, 60]
    assert sweep.lowest(entries)["limit_percent"] == 60
    _, calls, _, _ = fake_sweep([90, 80, 70, 60], lambda p: False, stop_after=0)
    assert len(calls) == 4


def test_a_harness_error_at_one_limit_is_recorded_and_the_sweep_goes_on():
    entries, calls, _, _ = fake_sweep([90, 80, 70], lambda p: True, raises=(80,))
    assert [p for p, _ in calls] == [90, 80, 70]
    assert not entries[1]["completed"] and "harness error" in entries[1]["verdict"] and "a harness bug" in entries[1]["verdict"]
    assert entries[2]["completed"]


def test_each_entry_holds_speed_fidelity_packing_and_the_failures_last_lines():
    entries, _, _, _ = fake_sweep([80, 50, 40], lambda p: p >= 50, exact=lambda p: p != 50)
    e80, e50, e40 = entries
    assert e80["completed"] and e80["speed_vs_native"] == pytest.approx(0.8) and e80["wall_vs_native"] == pytest.approx(1.25)
    assert e80["verdict"] == "bit-exact" and e80["packing"]["restores"] == 20 and e80["library_under_limit"] is True
    assert e50["verdict"].startswith("BROKEN") and e50["fidelity_problems"]
    assert not e40["completed"] and e40["returncodes"] == [1] and "CUDA out of memory" in e40["tail"][-1]
    assert e40["verdict"] == "not run to the end" and e40["speed_vs_native"] is None
    assert sweep.lowest(entries)["limit_percent"] == 50
    assert sweep.lowest(entries, within_fidelity=True)["limit_percent"] == 80


def test_sweep_files_say_the_lowest_limit_and_hold_a_row_per_limit(tmp_path):
    entries, _, _, base = fake_sweep([90, 70, 50, 30, 20, 10], lambda p: p >= 50)
    meta = {"workload": "sparse_mlp", "mode": "lossless", "repeat": 1, "date": "today", "native_peak_bytes": 1000 * MiB,
            "native_peak_source": "NVML", "speed_metric": "steps_per_s"}
    data = sweep.write(str(tmp_path), meta, base, entries)
    md = (tmp_path / "sweep.md").read_text()
    assert "**Lowest limit at which it completed: 50% of the native peak (0.49 GiB)**" in md
    rows = [l for l in md.splitlines() if l.startswith("| ") and l.split("|")[1].strip().endswith("%")]
    assert len(rows) == 6
    assert "| 30% | 0.29 GiB | **no** |" in md and "CUDA out of memory" in md and "| 10% | 0.10 GiB | skipped |" in md
    assert "0.70x" in md  # speed at 70%
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["lowest_completed_percent"] == 50 == data["lowest_completed_percent"]
    assert len(saved["entries"]) == 6
    assert (tmp_path / "sweep.png").stat().st_size > 5000


def test_the_speed_metric_is_the_workloads_throughput_or_the_first_per_second_metric():
    assert sweep.speed_metric("infer", []) == "decode_tokens_per_s"
    assert sweep.speed_metric(None, [run(metrics={"z_per_s": 1.0, "a_per_s": 2.0, "b": 3})]) == "a_per_s"
    assert sweep.speed_metric(None, [run(metrics={"b": 3})]) is None
    assert sweep.speed_metric("infer", [], override="prefill_tokens_per_s") == "prefill_tokens_per_s"


def test_without_a_metric_speed_is_the_wall_time_ratio():
    base = sweep.baseline([run(wall=10.0)], None)
    e = sweep.evaluate(50, 100, [run("ltshim", wall=20.0)], base, lambda ok: (None, []))
    assert e["speed_vs_native"] == pytest.approx(0.5) and e["verdict"] == "not compared (no outputs)"


def test_speeds_are_taken_again_against_every_native_run_once_the_closing_one_is_in():
    first = sweep.baseline([run(wall=10.0, metrics={"steps_per_s": 1.0})], "steps_per_s")
    e = sweep.evaluate(70, 100, [run("ltshim", wall=12.0, metrics={"steps_per_s": 1.5})], first, lambda ok: (None, []))
    assert e["speed_vs_native"] == pytest.approx(1.5), "a slow first native run makes the library look fast"
    both = sweep.baseline([run(wall=10.0, metrics={"steps_per_s": 1.0}), run(wall=5.0, metrics={"steps_per_s": 2.0})], "steps_per_s")
    sweep.speeds(e, both)
    assert e["speed_vs_native"] == pytest.approx(1.0) and e["wall_vs_native"] == pytest.approx(12.0 / 7.5)
    failed = sweep.evaluate(60, 90, [run("ltshim", rc=1, wall=1.0)], first, lambda ok: (None, []))
    sweep.speeds(failed, both)
    assert failed["speed_vs_native"] is None and failed["wall_vs_native"] is None, "a run that did not complete has no speed"


# ---- compare.py end to end, with a stand-in ltshim CLI ---------------------------------------

# `ltshim run --mode M --stats F [--lib L] -- CMD...`: the workload "needs" 60% of its native
# peak (FAKE_PEAK); under less it fails as PyTorch does. It writes a stats report with a
# packing object, as the engine will.
FAKE_CLI = textwrap.dedent("""\
    #!{python}
    import json, os, subprocess, sys
    a = sys.argv[1:]
    assert a[0] == "run", a
    i, opts = 1, {{}}
    while a[i] != "--":
        opts[a[i]] = a[i + 1]; i += 2
    cmd = a[i + 1:]
    env = dict(os.environ, LTSHIM_MODE=opts["--mode"])
    limit = int(os.environ["LTSHIM_DEVICE_LIMIT"]) if "LTSHIM_DEVICE_LIMIT" in os.environ else None
    peak = int(os.environ["FAKE_PEAK"])
    if limit is not None and limit < 0.6 * peak:
        print("Traceback (most recent call last):", file=sys.stderr)
        print(f"torch.OutOfMemoryError: CUDA out of memory (limit {{limit}})", file=sys.stderr)
        sys.exit(1)
    rc = subprocess.run(cmd, env=env).returncode
    held = int(0.6 * peak) + int(os.environ.get("FAKE_OVER", "0"))
    json.dump({{"allocations": {{"peak_bytes": peak}}, "launches": {{"kernels_executed_seen": 1}}, "fallbacks": {{}}, "config": {{"state": "active"}},
               "packing": {{"enabled": True, "mode": opts["--mode"], "limit_bytes": limit, "held_peak_bytes": held, "packed_bytes": peak // 8,
                           "packed_original_bytes": peak // 2, "packs": 3, "restores": 7, "restores_per_step": [2, 3, 2],
                           "timeline": [[0, peak // 2, 0, peak // 2], [100, peak // 4, peak // 8, 3 * peak // 8]]}}}}, open(opts["--stats"], "w"))
    sys.exit(rc)
""")

# The workload: its speed falls with the limit; lossy mode changes its outputs a little; a
# limit under FAKE_HANG_BELOW bytes makes it hang (it writes its pid first).
FAKE_WORKLOAD = textwrap.dedent("""\
    import json, os, sys, time
    import numpy as np
    limit = os.environ.get("LTSHIM_DEVICE_LIMIT")
    peak = int(os.environ["FAKE_PEAK"])
    if limit and int(limit) < int(os.environ.get("FAKE_HANG_BELOW", "0")):
        open(os.environ["FAKE_PIDFILE"], "w").write(str(os.getpid()))
        time.sleep(120)
    x = np.arange(8, dtype=np.float32)
    if os.environ.get("LTSHIM_MODE") == "lossy":
        x = x * np.float32(1.001)
    if os.environ.get("FAKE_NOT_DETERMINISTIC"):  # every run, native or not, its own outputs
        x = x + np.float32(os.getpid() % 997 + 1) * np.float32(1e-3)
    np.savez(open(os.environ["HARNESS_OUTPUTS"], "wb"), x=x)
    json.dump({"items_per_s": 100.0 * (int(limit) / peak if limit else 1.0), "peak_reserved_bytes": peak,
               "limit_seen": int(limit) if limit else -1}, open(os.environ["HARNESS_METRICS"], "w"))
""")

PEAK = 1000 * MiB


@pytest.fixture
def stand_in(tmp_path):
    cli = tmp_path / "ltshim"
    cli.write_text(FAKE_CLI.format(python=sys.executable))
    cli.chmod(0o755)
    lib = tmp_path / "libltshim.so"
    lib.write_text("not a library: the stand-in CLI never loads it\n")
    work = tmp_path / "work.py"
    work.write_text(FAKE_WORKLOAD)
    return str(cli), str(lib), str(work)


def compare(*args, env=None):
    e = dict(os.environ, HARNESS_NO_NVML="1", FAKE_PEAK=str(PEAK))
    e.pop("LTSHIM_DEVICE_LIMIT", None)
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(HARNESS, "compare.py"), "--allow-no-gpu", *args],
                          capture_output=True, text=True, env=e, timeout=240)


def test_compare_gives_a_percentage_limit_in_bytes_to_the_ltshim_run_only(tmp_path, stand_in):
    cli, lib, work = stand_in
    out = tmp_path / "out"
    r = compare("--ltshim", cli, "--lib", lib, "--device-limit", "70%", "--repeat", "2", "--out", str(out), "--", sys.executable, work)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((out / "report.json").read_text())
    want = int(PEAK * 0.7)
    assert data["meta"]["mode"] == "lossless"  # the default with a limit
    assert data["meta"]["device_limit"]["bytes"] == want and data["meta"]["device_limit"]["percent_of_native_peak"] == pytest.approx(70, abs=0.01)
    seen = {(x["kind"], x["repeat"]): x["metrics"]["limit_seen"] for x in data["runs"]}
    assert seen == {("native", 1): -1, ("native", 2): -1, ("ltshim", 1): want, ("ltshim", 2): want}
    assert [c["library_under_limit"] for c in data["limit_checks"]] == [True, True]
    md = (out / "report.md").read_text()
    assert f"= {want} bytes" in md and "## Packing (library stats)" in md and "| packs / restores / clean drops | 3 / 7 / n/a | 3 / 7 / n/a |" in md
    assert (out / "memory_timeline.png").stat().st_size > 5000


def test_compare_exits_1_when_the_librarys_count_goes_over_the_limit(tmp_path, stand_in):
    cli, lib, work = stand_in
    r = compare("--ltshim", cli, "--lib", lib, "--device-limit", "700MiB", "--out", str(tmp_path), "--", sys.executable, work,
                env={"FAKE_OVER": str(200 * MiB)})
    assert r.returncode == 1, r.stdout + r.stderr
    md = (tmp_path / "report.md").read_text()
    assert "over the limit" in md and f"{700 * MiB} bytes" in md


def test_a_percentage_limit_without_a_native_peak_is_refused_and_written(tmp_path, stand_in):
    cli, lib, _ = stand_in
    r = compare("--ltshim", cli, "--lib", lib, "--device-limit", "50%", "--out", str(tmp_path), "--", sys.executable, "-c", "pass")
    assert r.returncode == 2 and "cannot turn the device limit 50% into bytes" in r.stderr
    assert "no peak_reserved_bytes" in (tmp_path / "report.md").read_text()


def test_bad_limit_arguments_exit_2():
    for args in (["--device-limit", "lots"], ["--limits", "90,x"], ["--device-limit", "5GiB", "--limits", "90"]):
        r = compare(*args, "--", "true")
        assert r.returncode == 2 and ("device limit" in r.stderr or "--limits" in r.stderr or "not both" in r.stderr), r.stderr


def test_the_sweep_end_to_end_finds_the_lowest_limit_and_survives_failing_runs(tmp_path, stand_in):
    cli, lib, work = stand_in
    out = tmp_path / "out"
    r = compare("--ltshim", cli, "--lib", lib, "--mode", "lossy", "--limits", "90,70,50,40,30", "--out", str(out), "--", sys.executable, work)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((out / "sweep.json").read_text())
    assert data["lowest_completed_percent"] == 70
    got = [(e["limit_percent"], e["limit_bytes"], e["completed"], e.get("skipped", False)) for e in data["entries"]]
    assert got == [(90, int(PEAK * 0.9), True, False), (70, int(PEAK * 0.7), True, False), (50, int(PEAK * 0.5), False, False),
                   (40, int(PEAK * 0.4), False, False), (30, int(PEAK * 0.3), False, True)]
    e90 = data["entries"][0]
    assert e90["speed_vs_native"] == pytest.approx(0.9) and e90["verdict"] == "differs, no bound applies (max abs err 0.007, max rel err 0.001)"
    assert e90["fidelity"]["max_rel_err"] == pytest.approx(0.001, rel=0.01) and e90["packing"]["ratio"] == 4.0
    assert "CUDA out of memory" in data["entries"][2]["tail"][-1]
    kinds = sorted(os.path.basename(p) for p in os.listdir(out) if p.startswith("log_"))
    assert kinds == ["log_ltshim_40pct_1.txt", "log_ltshim_50pct_1.txt", "log_ltshim_70pct_1.txt", "log_ltshim_90pct_1.txt",
                     "log_native_1.txt", "log_native_2.txt"]  # native set, the limits, the closing native run
    md = (out / "sweep.md").read_text()
    assert "Lowest limit at which it completed: 70%" in md and "closing native run" in md
    assert "speeds are against the median of all 2 native runs" in md, md
    assert (out / "sweep.png").stat().st_size > 5000


def test_a_lossless_sweep_that_changes_outputs_exits_1(tmp_path, stand_in):
    cli, lib, work = stand_in
    # the stand-in makes outputs differ in lossy mode; ask lossless but tell the workload lossy
    wl = tmp_path / "lying.py"
    wl.write_text("import os\nos.environ['LTSHIM_MODE'] = 'lossy' if os.environ.get('LTSHIM_MODE') else ''\n" + open(work).read())
    r = compare("--ltshim", cli, "--lib", lib, "--mode", "lossless", "--limits", "90", "--out", str(tmp_path / "o"), "--", sys.executable, str(wl))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "must be bit-exact" in (tmp_path / "o" / "sweep.md").read_text()


def test_a_sweep_over_a_workload_whose_native_runs_differ_says_so(tmp_path, stand_in):
    cli, lib, work = stand_in
    out = tmp_path / "o"
    r = compare("--ltshim", cli, "--lib", lib, "--mode", "lossless", "--limits", "90", "--out", str(out), "--", sys.executable, work,
                env={"FAKE_NOT_DETERMINISTIC": "1"})
    assert r.returncode == 1, r.stdout + r.stderr  # the lossless run still differs from the baseline
    assert "native runs are not bit-exact among themselves" in (out / "sweep.md").read_text()
    # a deterministic workload gets no such note
    r = compare("--ltshim", cli, "--lib", lib, "--mode", "lossless", "--limits", "90", "--out", str(tmp_path / "d"), "--", sys.executable, work)
    assert r.returncode == 0 and "not bit-exact among themselves" not in (tmp_path / "d" / "sweep.md").read_text()


def test_a_hung_run_is_timed_out_with_its_workload_and_the_sweep_goes_on(tmp_path, stand_in):
    cli, lib, work = stand_in
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    r = compare("--ltshim", cli, "--lib", lib, "--limits", "90,80,70", "--timeout", "3", "--out", str(tmp_path / "o"), "--", sys.executable, work,
                env={"FAKE_HANG_BELOW": str(int(PEAK * 0.85)), "FAKE_PIDFILE": str(pidfile)})
    assert time.monotonic() - t0 < 60
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert [e["completed"] for e in data["entries"]] == [True, False, False]
    assert "timed out after 3.0s" in data["entries"][1]["errors"][0]
    assert not alive(int(pidfile.read_text())), "the workload under the CLI was left running"


def alive(pid):
    """True while `pid` runs (a zombie, reparented to a PID 1 that does not reap, is not running)."""
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True
