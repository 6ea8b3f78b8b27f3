"""ltshim: control libltshim from inside the PyTorch (or any Python) program it is preloaded into.

    import ltshim
    if ltshim.available():
        ltshim.pin(kv_cache)          # never pack this tensor's buffer
        ltshim.pack_cold()            # pack every buffer that may be packed now
        print(ltshim.stats()["packing"])

The program is started under the library (`ltshim run -- python3 train.py`, or
`LD_PRELOAD=/path/to/libltshim.so python3 train.py`); this module only talks to it.

Why ctypes, and why the process's global symbol scope (RTLD_DEFAULT, `ctypes.CDLL(None)`): the
library is already mapped into the process by LD_PRELOAD, and it must be the *same* copy that
intercepts the program's CUDA calls: its registry of buffers, its packed copies and its stats
live in that copy's memory. Opening libltshim.so by path would map a second, independent copy
(or, if the loader deduplicated it, still tie this module to an install path); looking the
control functions up in the global scope finds exactly the preloaded one, or nothing when the
program runs without the library, which `available()` then reports. ctypes needs no build step,
no compiler and no version of PyTorch to match, so the module is one file that a user copies or
puts on `sys.path`; it imports nothing beyond the standard library (a tensor is read through its
`data_ptr()`, so torch is not imported either).

Every function but `available()` raises RuntimeError with one sentence when the library is not
loaded in this process. The C declarations are in shim/ltshim.h."""
import ctypes
import json

__all__ = ["available", "version", "stats", "pack_cold", "restore_all", "pin", "unpin", "step"]

_NOT_LOADED = ("libltshim is not loaded in this process: start the program under it, "
               "`ltshim run -- python3 your_script.py` or `LD_PRELOAD=/path/to/libltshim.so python3 your_script.py`")

# name: (restype, argtypes)
_SIGNATURES = {
    "ltshim_version": (ctypes.c_char_p, []),
    "ltshim_stats_json": (ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t]),
    "ltshim_pin": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "ltshim_pack_cold": (ctypes.c_int64, []),
    "ltshim_restore_all": (ctypes.c_int64, []),
    "ltshim_step": (None, []),
}

_functions = {}  # name -> bound foreign function, filled once the library is found


def _lookup(name):
    """The foreign function `name` from the process's global scope, or None."""
    fn = _functions.get(name)
    if fn is not None:
        return fn
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    fn.restype, fn.argtypes = _SIGNATURES[name]
    _functions[name] = fn
    return fn


def available():
    """True when libltshim is loaded in this process (its control API can be called)."""
    return _lookup("ltshim_version") is not None


def _fn(name):
    fn = _lookup(name)
    if fn is not None:
        return fn
    if not available():
        raise RuntimeError(_NOT_LOADED)
    raise RuntimeError(f"the libltshim loaded in this process (version {version()}) has no {name}(): "
                       "it is older than this module; rebuild it (`cargo build --release`)")


def version():
    """The library's version string, e.g. "0.1.0"."""
    v = _fn("ltshim_version")()
    return v.decode() if v is not None else ""


def stats():
    """The library's live stats report (the same JSON as LTSHIM_STATS at exit) as a dict."""
    fn = _fn("ltshim_stats_json")
    size = fn(None, 0) + 1
    for _ in range(8):
        buf = ctypes.create_string_buffer(size)
        full = fn(buf, size)
        if full < size:  # it fitted, NUL included
            return json.loads(buf.value.decode())
        size = full + 1 + full // 4  # it grew between the calls: leave room for more
    raise RuntimeError(f"libltshim's stats report kept growing faster than it could be read ({full} bytes)")


def _packing_count(name, what):
    got = _fn(name)()
    if got < 0:
        raise RuntimeError(f"cannot {what}: packing is off in this mode (observe, off, or the library fell back "
                           "to passthrough); run with LTSHIM_MODE=lossless or lossy")
    return got


def pack_cold():
    """Packs every buffer that may be packed now; returns how many were packed."""
    return _packing_count("ltshim_pack_cold", "pack")


def restore_all():
    """Makes every packed buffer resident again; returns how many were restored."""
    return _packing_count("ltshim_restore_all", "restore")


def _address(obj):
    if isinstance(obj, bool):
        raise TypeError("pin/unpin take a tensor or an integer address, not a bool")
    if isinstance(obj, int):
        return obj
    data_ptr = getattr(obj, "data_ptr", None)
    if callable(data_ptr):
        return int(data_ptr())
    raise TypeError(f"pin/unpin take a tensor (anything with data_ptr()) or an integer address, not {type(obj).__name__}")


def _set_pinned(obj, pinned):
    fn = _fn("ltshim_pin")
    ptr = _address(obj)
    if fn(ptr, 1 if pinned else 0) != 0:
        raise ValueError(f"address {ptr:#x} is in no GPU buffer libltshim knows (a CPU tensor, an empty one, "
                         "or memory allocated before the library was loaded?)")


def pin(obj):
    """Keeps the buffer holding `obj` (a tensor, or an integer device address) resident: it is
    never packed until `unpin`. Raises ValueError when the address is in no buffer the library
    knows."""
    _set_pinned(obj, True)


def unpin(obj):
    """Lets the buffer holding `obj` be packed again."""
    _set_pinned(obj, False)


def step():
    """Marks the end of one step of the program (the stats count restores per step)."""
    _fn("ltshim_step")()
