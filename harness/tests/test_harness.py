"""The harness's own logic, on a machine without a GPU: fidelity metrics, bounds, the report,
argument errors, and the subprocess plumbing (fake workloads run natively and under the real
`ltshim run`, with the CUDA double standing in for the driver)."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ltharness import fidelity, report
from ltharness.runner import RunResult

HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(HARNESS)
CLI = os.path.join(ROOT, "target", "debug", "ltshim")
DOUBLE_DIR = os.path.join(ROOT, "target", "debug", "ctests")  # libcuda.so.1 -> the double (made by cargo test)


# ---- fidelity -------------------------------------------------------------------------

def test_identical_arrays_are_bit_exact_with_zero_error():
    a = {"x": np.arange(10, dtype=np.float32)}
    f = fidelity.compare(a, {"x": a["x"].copy()})
    assert f["bit_exact"] and f["max_abs_err"] == 0.0 and f["max_rel_err"] == 0.0


def test_negative_zero_is_not_bit_exact_but_has_no_error():
    f = fidelity.compare({"x": np.array([0.0], np.float32)}, {"x": np.array([-0.0], np.float32)})
    assert not f["bit_exact"]
    assert f["max_abs_err"] == 0.0


def test_nan_in_both_runs_is_no_error_and_nan_in_one_is_infinite():
    nan = np.array([np.nan, 1.0])
    assert fidelity.compare({"x": nan}, {"x": nan.copy()})["max_abs_err"] == 0.0
    assert math.isinf(fidelity.compare({"x": nan}, {"x": np.array([0.0, 1.0])})["max_abs_err"])


def test_errors_are_measured():
    f = fidelity.compare({"x": np.array([1.0, 2.0])}, {"x": np.array([1.1, 2.0])})
    assert f["max_abs_err"] == pytest.approx(0.1)
    assert f["max_rel_err"] == pytest.approx(0.1)


def test_shape_mismatch_and_missing_keys_are_differences():
    f = fidelity.compare({"x": np.zeros(3), "y": np.zeros(1)}, {"x": np.zeros(4)})
    assert not f["bit_exact"]
    assert f["keys"]["x"]["shape_mismatch"] and f["keys"]["y"]["missing_in"] == "ltshim"


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    assert fidelity.perplexity(np.zeros((5, 7)), np.array([0, 1, 2, 3, 4])) == pytest.approx(7.0)


def test_language_model_metrics():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 50))
    ids = np.array([1, 2, 3, 4, 5, 6])
    same = fidelity.language_model({"logits": logits, "prompt_ids": ids}, {"logits": logits.copy()})
    assert same["top1_agreement"] == 1.0 and same["logits_cosine_min"] == pytest.approx(1.0)
    assert same["perplexity_native"] == pytest.approx(same["perplexity_ltshim"])
    flipped = fidelity.language_model({"logits": logits}, {"logits": -logits})
    assert flipped["top1_agreement"] < 0.5 and flipped["logits_cosine_min"] < 0


def test_lossless_modes_must_be_bit_exact_and_lossy_must_meet_its_bounds():
    exact = fidelity.compare({"x": np.ones(3)}, {"x": np.ones(3)})
    off = fidelity.compare({"x": np.ones(3)}, {"x": np.ones(3) * 1.01})
    assert fidelity.check_bounds(exact, "observe", {}) == []
    assert "must be bit-exact" in fidelity.check_bounds(off, "lossless", {})[0]
    assert fidelity.check_bounds(off, "lossy", {"max_abs_err": 0.02}) == []
    assert "max abs error" in fidelity.check_bounds(off, "lossy", {"max_abs_err": 0.001})[0]


def test_an_output_that_went_nan_where_native_is_finite_is_a_problem_whatever_the_bounds():
    # a training run in lossy mode ended with a NaN loss on the H200, and the sweep called it
    # "within bounds" because the lossy bounds judge logits only
    native = {"final_loss": np.array(10.5), "losses": np.array([11.0, 10.7, 10.5])}
    nan = {"final_loss": np.array(np.nan), "losses": np.array([11.0, np.inf, np.nan])}
    s = fidelity.compare(native, nan)
    assert s["keys"]["losses"]["nonfinite_new"] == 2
    for mode in ("lossy", "lossless"):
        problems = fidelity.check_bounds(s, mode, {"min_cosine": 0.999})
        assert any("not finite where native's are: final_loss (1 values), losses (2 values)" in p for p in problems), problems
    both_nan = fidelity.compare({"x": np.array([np.nan, 1.0])}, {"x": np.array([np.nan, 1.0])})
    assert fidelity.check_bounds(both_nan, "lossy", {}) == [], "NaN in both is not a new NaN"


def test_npz_and_torch_files_are_told_apart_by_content(tmp_path):
    p = tmp_path / "outputs.pt"
    with open(p, "wb") as fh:
        np.savez(fh, x=np.arange(3))
    assert list(fidelity.load(str(p))["x"]) == [0, 1, 2]


# ---- the report -----------------------------------------------------------------------

def fake_run(kind, repeat, peak, wall):
    return RunResult(kind=kind, repeat=repeat, returncode=0, wall_s=wall,
                     timeline=[(0.0, 0), (0.5, peak // 2), (1.0, peak)], nvml_peak_bytes=peak,
                     metrics={"tokens_per_s": 10.0 + repeat})


def test_report_has_table_verdict_and_plots(tmp_path):
    runs = [fake_run("native", 1, 4 << 30, 2.0), fake_run("ltshim", 1, 3 << 30, 2.2),
            fake_run("native", 2, 4 << 30, 2.1), fake_run("ltshim", 2, 3 << 30, 2.3)]
    fid = fidelity.compare({"x": np.ones(2)}, {"x": np.ones(2)})
    meta = {"workload": "infer", "command": ["x"], "mode": "observe", "repeat": 2, "date": "today", "gpu": "test"}
    rep = report.write(str(tmp_path), meta, runs, fid, [], [])
    md = (tmp_path / "report.md").read_text()
    assert "| peak GPU memory (NVML, above idle) | 4.00 GiB (4.00-4.00, n=2) | 3.00 GiB" in md
    assert "| tokens_per_s | 11.5 (11-12, n=2)" in md
    assert "bit-exact: **True**" in md
    for png in ("memory_timeline.png", "peak_and_time.png"):
        assert (tmp_path / png).stat().st_size > 5000
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["aggregate"]["ltshim"]["wall_s"]["median"] == pytest.approx(2.25)
    assert rep["aggregate"]["native"]["runs_ok"] == 2


# ---- arguments and plumbing -----------------------------------------------------------

def compare(*args, env=None):
    e = dict(os.environ, LD_LIBRARY_PATH=DOUBLE_DIR)
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(HARNESS, "compare.py"), *args], capture_output=True, text=True, env=e, timeout=120)


def test_help_works_without_a_gpu():
    r = compare("--help")
    assert r.returncode == 0 and "--workload" in r.stdout and "Exit codes" in r.stdout


def test_argument_errors_are_reported():
    assert compare("--repeat", "0").returncode == 2
    r = compare("--workload", "infer", "--", "true")
    assert r.returncode == 2 and "not both" in r.stderr


def test_without_a_gpu_it_says_so_and_writes_what_it_has(tmp_path):
    try:
        import pynvml
        pynvml.nvmlInit()
        pytest.skip("SKIPPED (loudly): this machine has a GPU, the no-GPU message cannot be provoked")
    except Exception:
        pass
    r = compare("--out", str(tmp_path), "--", "true")
    assert r.returncode == 2 and "no GPU to measure on" in r.stderr
    assert "no GPU to measure on" in (tmp_path / "report.md").read_text()


FAKE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    mode = sys.argv[1]
    if mode == "fail":
        print("the workload broke", file=sys.stderr); sys.exit(5)
    x = np.arange(8, dtype=np.float32)
    if mode == "random":
        x = x + np.random.default_rng().random(8).astype(np.float32)
    with open(os.environ["HARNESS_OUTPUTS"], "wb") as fh:
        np.savez(fh, x=x)
    json.dump({"items_per_s": 100.0}, open(os.environ["HARNESS_METRICS"], "w"))
""")


@pytest.fixture
def fake(tmp_path):
    if not (os.path.exists(CLI) and os.path.exists(os.path.join(DOUBLE_DIR, "libcuda.so.1"))):
        pytest.fail("build first: cargo build --workspace && cargo test --workspace (scripts/test.sh does)")
    p = tmp_path / "fake.py"
    p.write_text(FAKE)
    return str(p)


def test_a_deterministic_command_compares_bit_exact(tmp_path, fake):
    out = tmp_path / "out"
    r = compare("--allow-no-gpu", "--ltshim", CLI, "--repeat", "2", "--out", str(out), "--", sys.executable, fake, "same")
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "report.json").read_text())
    assert data["fidelity"]["bit_exact"] is True
    assert [x["kind"] for x in data["runs"]] == ["native", "ltshim", "ltshim", "native"]  # order alternates
    assert data["aggregate"]["ltshim"]["metrics"]["items_per_s"]["median"] == 100.0
    assert "[compare] run 4/4: native ok" in r.stderr


def test_differing_outputs_in_observe_mode_exit_1(tmp_path, fake):
    r = compare("--allow-no-gpu", "--ltshim", CLI, "--out", str(tmp_path), "--", sys.executable, fake, "random")
    assert r.returncode == 1
    assert "must be bit-exact" in (tmp_path / "report.md").read_text()


def test_a_failing_workload_exits_3_and_its_error_is_reported(tmp_path, fake):
    r = compare("--allow-no-gpu", "--ltshim", CLI, "--out", str(tmp_path), "--", sys.executable, fake, "fail")
    assert r.returncode == 3
    md = (tmp_path / "report.md").read_text()
    assert "native run 1 failed: exit code 5" in md and "the workload broke" in md


def test_a_missing_library_is_one_clear_error(tmp_path, fake):
    r = compare("--allow-no-gpu", "--ltshim", "/nonexistent/ltshim", "--out", str(tmp_path), "--", sys.executable, fake, "same")
    assert r.returncode == 2 and "missing" in r.stderr


def test_every_workload_compare_names_is_a_script_that_parses():
    # (they import torch, which CI does not install: parsing is what can be checked here)
    import ast
    sys.path.insert(0, HARNESS)
    import compare
    for name in compare.WORKLOADS:
        path = os.path.join(HARNESS, "workloads", f"{name}.py")
        assert os.path.exists(path), name
        tree = ast.parse(open(path).read(), path)
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{name}.py has no main()"


def test_every_run_keeps_nvlink_multicast_off_unless_the_caller_set_it(tmp_path, fake):
    probe = tmp_path / "env_probe.py"
    probe.write_text(textwrap.dedent("""
        import json, os
        import numpy as np
        off = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
        with open(os.environ["HARNESS_OUTPUTS"], "wb") as fh:
            np.savez(fh, x=np.zeros(2))
        json.dump({"multicast_off": float(all(os.environ.get(k) == v for k, v in off.items()))}, open(os.environ["HARNESS_METRICS"], "w"))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")}
    e = dict(env, LD_LIBRARY_PATH=DOUBLE_DIR)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, os.path.join(HARNESS, "compare.py"), "--allow-no-gpu", "--ltshim", CLI, "--out", str(out), "--", sys.executable, str(probe)],
                       capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr
    agg = json.loads((out / "report.json").read_text())["aggregate"]
    assert agg["native"]["metrics"]["multicast_off"]["median"] == 1.0
    assert agg["ltshim"]["metrics"]["multicast_off"]["median"] == 1.0
