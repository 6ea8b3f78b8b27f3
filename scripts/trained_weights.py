#!/usr/bin/env python3
"""Real trained weights for `ltshim bench --input`, fetched from the package registry and kept
out of the repository: the Silero VAD model (a small trained speech model, MIT licensed, shipped
inside the `silero-vad` wheel on PyPI). Reads the float32 tensors out of the wheel's
TorchScript archive (a zip of raw tensor storages, named by a pickle) without torch, and writes
them as one tensor each in f32 (`.npy`), bf16 and f16 (`.safetensors`; bf16 rounded to nearest
even from the trained f32 values, f16 by numpy's conversion).

Exit status 0 with the paths printed; 77 (and a loud SKIPPED line) when the wheel cannot be had
(no network): callers skip then, never pass silently."""
import argparse
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "silero-vad==6.2.3"
ARCHIVE = "silero_vad/data/silero_vad.jit"


def fetch_wheel(dest):
    """The wheel's path, downloaded with pip (pinned); None when pip cannot get it."""
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", "-d", dest, PACKAGE],
                       check=True, timeout=300, capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
        print(f"trained_weights: pip could not download {PACKAGE}: {e}", file=sys.stderr)
        return None
    wheels = [f for f in os.listdir(dest) if f.endswith(".whl")]
    return os.path.join(dest, wheels[0]) if wheels else None


class _Stub:
    """Whatever the pickle builds (TorchScript modules, tensors): only its storages matter."""
    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def float_storages(jit_bytes):
    """The archive's float32 storages, in the order of their keys: a list of bytes."""
    z = zipfile.ZipFile(io.BytesIO(jit_bytes))
    root = z.namelist()[0].split("/")[0]
    found = {}

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name.endswith("Storage"):
                return name
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            return type(name, (_Stub,), {})

        def persistent_load(self, pid):
            _, storage, key, _location, numel = pid
            found[str(key)] = (storage if isinstance(storage, str) else getattr(storage, "__name__", ""), numel)
            return key

    for pkl in ("data.pkl", "constants.pkl"):
        name = f"{root}/{pkl}"
        if name in z.namelist():
            Reader(io.BytesIO(z.read(name))).load()
    out = []
    for key in sorted(found, key=lambda k: (len(k), k)):
        kind, numel = found[key]
        if kind != "FloatStorage" or numel == 0:
            continue
        raw = z.read(f"{root}/data/{key}")
        if len(raw) != 4 * numel:
            raise ValueError(f"storage {key}: {len(raw)} bytes for {numel} floats")
        out.append(raw)
    return out


def bf16_bits(f32):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (NaNs stay NaN)."""
    import numpy as np
    u = f32.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(f32)
    rounded[nan] = (u[nan] >> 16) | 0x40
    return rounded.astype(np.uint16)


def write_safetensors(path, dtype, raw, count):
    header = json.dumps({"weights": {"dtype": dtype, "shape": [count], "data_offsets": [0, len(raw)]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.write(raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/ltshim/trained"), help="where the tensor files go")
    ap.add_argument("--wheel", help="a silero-vad wheel already downloaded (else pip downloads it)")
    args = ap.parse_args()
    import numpy as np
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(tmp)
        if not wheel:
            print(f"SKIPPED (loudly): no trained weights: {PACKAGE} could not be downloaded", file=sys.stderr)
            return 77
        with zipfile.ZipFile(wheel) as w:
            storages = float_storages(w.read(ARCHIVE))
    f32 = np.frombuffer(b"".join(storages), dtype="<f4")
    paths = {
        "f32": os.path.join(args.out, "silero_vad_f32.npy"),
        "bf16": os.path.join(args.out, "silero_vad_bf16.safetensors"),
        "f16": os.path.join(args.out, "silero_vad_f16.safetensors"),
    }
    np.save(paths["f32"], f32)
    write_safetensors(paths["bf16"], "BF16", bf16_bits(f32).tobytes(), f32.size)
    write_safetensors(paths["f16"], "F16", f32.astype("<f2").tobytes(), f32.size)
    print(json.dumps({"source": PACKAGE, "tensors": len(storages), "elements": int(f32.size), "files": paths}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
