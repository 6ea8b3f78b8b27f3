"""python/ltshim.py, the control module, without the real library: the errors when it is not
loaded, and every wrapper's arguments and results through a fake libltshim compiled here from
C and loaded RTLD_GLOBAL (the module looks its functions up in the process's global scope, as
it finds the preloaded library). Each case runs in a fresh interpreter, so that a fake loaded
by one cannot make another see a library."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYDIR = os.path.join(os.path.dirname(HARNESS), "python")

FAKE_C = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long last_ptr = 0;
static int last_pinned = -7, pin_calls = 0, steps = 0, stats_calls = 0;
static size_t last_len = 12345;
static int last_buf_null = -1;

static int off(void) { return getenv("FAKE_PACKING_OFF") != NULL; }

const char *ltshim_version(void) { return "9.8.7-fake"; }

#ifndef OLD_LIBRARY
int ltshim_pin(const void *ptr, int pinned) {
    pin_calls++;
    last_ptr = (unsigned long long)(uintptr_t)ptr;
    last_pinned = pinned;
    return ptr == (const void *)0x1 ? -1 : 0;
}
int64_t ltshim_pack_cold(void) { return off() ? -1 : 5000000001LL; }
int64_t ltshim_restore_all(void) { return off() ? -1 : 7; }
void ltshim_step(void) { steps++; }
#endif

/* The report grows by 40 bytes on each of the first calls, as a live report may between the
   sizing call and the reading one. It carries the previous call's arguments and the first's. */
static size_t first_len = 999, first_ret = 0;
static int first_buf_null = -1;
size_t ltshim_stats_json(char *buf, size_t len) {
    char s[8192];
    int grow = stats_calls < 3 ? 40 * stats_calls : 80;
    stats_calls++;
    int n = snprintf(s, sizeof s,
        "{\"packing\": {\"steps\": %d}, \"last_ptr\": %llu, \"last_pinned\": %d, \"pin_calls\": %d,"
        " \"stats_calls\": %d, \"first_len\": %zu, \"first_buf_null\": %d, \"first_ret\": %zu,"
        " \"last_len\": %zu, \"last_buf_null\": %d, \"pad\": \"%0*d\"}",
        steps, last_ptr, last_pinned, pin_calls, stats_calls, first_len, first_buf_null, first_ret,
        last_len, last_buf_null, 3000 + grow, 0);
    if (stats_calls == 1) { first_len = len; first_buf_null = buf == NULL; first_ret = (size_t)n; }
    last_len = len;
    last_buf_null = buf == NULL;
    if (buf != NULL && (size_t)n < len) memcpy(buf, s, (size_t)n + 1);
    else if (buf != NULL && len > 0) buf[0] = 'X'; /* a partial write must not be taken for the report */
    return (size_t)n;
}
"""


def python(code, env=None):
    """Runs `code` in a fresh interpreter with python/ on the path; returns the CompletedProcess."""
    e = dict(os.environ, PYTHONPATH=PYDIR)
    e.pop("LD_PRELOAD", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e, timeout=60)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("SKIPPED (loudly): no C compiler (cc, gcc, clang) to build the fake libltshim with")
    d = tmp_path_factory.mktemp("fake_libltshim")
    src = d / "fake.c"
    src.write_text(FAKE_C)
    libs = {}
    for name, defs in (("full", []), ("old", ["-DOLD_LIBRARY"])):
        out = d / f"libltshim_{name}.so"
        r = subprocess.run([cc, "-shared", "-fPIC", "-O1", *defs, "-o", str(out), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        libs[name] = str(out)
    return libs


LOAD = """
import ctypes, json, sys
ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else {lib!r}, mode=ctypes.RTLD_GLOBAL)
import ltshim
"""


def with_fake(lib, body, env=None):
    r = python(LOAD.format(lib=lib) + textwrap.dedent(body), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- without the library ------------------------------------------------------------------

def test_without_the_library_available_is_false_and_every_call_says_how_to_load_it():
    r = python("""
        import json, ltshim
        out = {"available": ltshim.available(), "errors": {}}
        for name, call in [("version", ltshim.version), ("stats", ltshim.stats), ("pack_cold", ltshim.pack_cold),
                           ("restore_all", ltshim.restore_all), ("pin", lambda: ltshim.pin(4096)),
                           ("unpin", lambda: ltshim.unpin(4096)), ("step", ltshim.step)]:
            try:
                call()
                out["errors"][name] = None
            except RuntimeError as e:
                out["errors"][name] = str(e)
        print(json.dumps(out))
    """)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["available"] is False
    for name, msg in out["errors"].items():
        assert msg is not None, f"{name}() did not raise without the library"
        assert "libltshim is not loaded in this process" in msg, (name, msg)
        assert "ltshim run --" in msg and "LD_PRELOAD=" in msg, (name, msg)
        assert msg.count(". ") == 0, f"{name}: one sentence expected, got {msg!r}"


def test_importing_the_module_imports_no_torch():
    r = python("import sys, ltshim; print('torch' in sys.modules)")
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr


# ---- through a fake library ---------------------------------------------------------------

def test_available_and_version_come_from_the_library_in_the_global_scope(fakes):
    out = with_fake(fakes["full"], "print(json.dumps([ltshim.available(), ltshim.version()]))")
    assert out == [True, "9.8.7-fake"]


def test_pin_passes_a_tensors_data_ptr_and_the_pinned_flag(fakes):
    out = with_fake(fakes["full"], """
        class FakeTensor:
            def data_ptr(self):
                return 0x7f00deadb000
        ltshim.pin(FakeTensor())
        a = ltshim.stats()
        ltshim.unpin(0xffff800000001000)   # an int address, above 2**63
        b = ltshim.stats()
        print(json.dumps([a["last_ptr"], a["last_pinned"], b["last_ptr"], b["last_pinned"], b["pin_calls"]]))
    """)
    assert out == [0x7f00deadb000, 1, 0xffff800000001000, 0, 2]


def test_pin_of_an_unknown_address_is_a_value_error_naming_it(fakes):
    out = with_fake(fakes["full"], """
        try:
            ltshim.pin(1)
            print(json.dumps(None))
        except ValueError as e:
            print(json.dumps(str(e)))
    """)
    assert out is not None and "0x1" in out and "no GPU buffer" in out


def test_pin_refuses_what_is_neither_a_tensor_nor_an_address(fakes):
    out = with_fake(fakes["full"], """
        res = []
        for bad in (True, "0x1000", 1.5):
            try:
                ltshim.pin(bad)
                res.append("accepted")
            except TypeError:
                res.append("TypeError")
        print(json.dumps(res + [ltshim.stats()["pin_calls"]]))
    """)
    assert out == ["TypeError", "TypeError", "TypeError", 0]


def test_pack_and_restore_return_the_librarys_64_bit_counts(fakes):
    out = with_fake(fakes["full"], "print(json.dumps([ltshim.pack_cold(), ltshim.restore_all()]))")
    assert out == [5000000001, 7]


def test_minus_one_from_pack_or_restore_says_packing_is_off(fakes):
    out = with_fake(fakes["full"], """
        msgs = []
        for f in (ltshim.pack_cold, ltshim.restore_all):
            try:
                msgs.append(f())
            except RuntimeError as e:
                msgs.append(str(e))
        print(json.dumps(msgs))
    """, env={"FAKE_PACKING_OFF": "1"})
    assert all(isinstance(m, str) and "packing is off in this mode" in m and "observe" in m for m in out), out


def test_step_reaches_the_library(fakes):
    out = with_fake(fakes["full"], "ltshim.step(); ltshim.step(); ltshim.step(); print(json.dumps(ltshim.stats()['packing']['steps']))")
    assert out == 3


def test_stats_sizes_with_null_then_rereads_a_report_that_grew_between_calls(fakes):
    s = with_fake(fakes["full"], "print(json.dumps(ltshim.stats()))")
    # call 1: (NULL, 0) sizes it; call 2: a buffer of that size plus the NUL, but the report
    # grew 40 bytes and does not fit; call 3: room enough, the report returned (pad 3000 + 80).
    assert s["first_buf_null"] == 1 and s["first_len"] == 0
    assert s["last_buf_null"] == 0 and s["last_len"] == s["first_ret"] + 1
    assert s["stats_calls"] == 3 and len(s["pad"]) == 3080


def test_an_older_library_without_a_function_is_named(fakes):
    out = with_fake(fakes["old"], """
        try:
            ltshim.pack_cold()
            print(json.dumps(None))
        except RuntimeError as e:
            print(json.dumps([ltshim.available(), str(e)]))
    """)
    assert out[0] is True
    assert "ltshim_pack_cold" in out[1] and "9.8.7-fake" in out[1] and "not loaded" not in out[1]


# ---- the real library, when it is built ---------------------------------------------------

def test_the_real_library_preloaded_answers_through_the_module():
    root = os.path.dirname(HARNESS)
    lib = next((p for p in (os.path.join(root, "target", prof, "libltshim.so") for prof in ("debug", "release")) if os.path.exists(p)), None)
    if lib is None:
        pytest.skip("SKIPPED (loudly): libltshim.so is not built (cargo build); the fake library's tests above still ran")
    r = python("""
        import json, ltshim
        out = {"available": ltshim.available(), "version": ltshim.version(), "has_config": "config" in ltshim.stats()}
        try:
            ltshim.pin(0x1234)
            out["pin"] = "accepted"
        except ValueError as e:
            out["pin"] = str(e)
        try:
            out["pack"] = ltshim.pack_cold()
        except RuntimeError as e:
            out["pack"] = str(e)
        print(json.dumps(out))
    """, env={"LD_PRELOAD": lib, "LTSHIM_MODE": "observe",
              "LD_LIBRARY_PATH": os.path.join(root, "target", "debug", "ctests")})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["available"] is True and out["version"] and out["has_config"]
    assert "0x1234 is in no GPU buffer" in out["pin"]
    assert "packing is off in this mode" in out["pack"], out["pack"]
