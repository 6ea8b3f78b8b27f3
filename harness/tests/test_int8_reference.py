"""The lossy fidelity reference (`workloads/common.int8g_decoded`, which `infer.py --fake-int8`
applies to a model natively) decodes to the same bytes as the codec itself (`ltshim pack
--mode lossy`, then `ltshim unpack`), so what it measures is what int8g does, not a guess at
it. Needs torch (the device machine has it); skips loudly without. Runs directly too:
`python3 harness/tests/test_int8_reference.py` (no pytest needed)."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "harness", "workloads"))


def _cli():
    for p in (os.environ.get("INT8_REFERENCE_CLI"), os.path.join(ROOT, ".dev", "ltshim"),
              os.path.join(ROOT, "target", "release", "ltshim"), os.path.join(ROOT, "target", "debug", "ltshim")):
        if p and os.path.exists(p):
            return p
    return None


def _skip(why):
    try:
        import pytest
    except ImportError:
        print(f"SKIPPED (loudly): {why}")
        sys.exit(0)
    pytest.skip(f"SKIPPED (loudly): {why}")


def check(group):
    try:
        import torch
    except ImportError:
        _skip("no torch here (the device machine runs this test)")
    cli = _cli()
    if cli is None:
        _skip("no ltshim binary (cargo build)")
    from common import int8g_decoded
    g = torch.Generator().manual_seed(group)
    # three 64 KiB blocks and a partial one; a group of zeros (decodes to zeros) and one of
    # subnormal-small values inside them, and a group whose amax is exactly representable
    w = (torch.randn(3 * 32768 + 1000, generator=g) * 0.02).to(torch.bfloat16)
    w[group:2 * group] = 0
    w[5 * group:6 * group] = (w[5 * group:6 * group].float() * 1e-30).to(torch.bfloat16)
    w[9 * group] = 0.5
    with tempfile.TemporaryDirectory() as d:
        raw, packed, back = (os.path.join(d, n) for n in ("w.bin", "w.ltb", "w.out"))
        open(raw, "wb").write(w.view(torch.int16).numpy().tobytes())
        subprocess.run([cli, "pack", raw, packed, "--dtype", "bf16", "--mode", "lossy", "--group", str(group), "--max-err", "1"],
                       check=True, capture_output=True)
        subprocess.run([cli, "unpack", packed, back], check=True, capture_output=True)
        got = torch.frombuffer(bytearray(open(back, "rb").read()), dtype=torch.int16)
    want = int8g_decoded(w, group).view(torch.int16)
    assert not torch.equal(got, w.view(torch.int16)), "the codec kept the data exact: nothing went int8g, nothing was compared"
    differ = (got != want).sum().item()
    assert differ == 0, f"G={group}: {differ} of {w.numel()} elements differ from the codec's decoding"


def test_the_reference_decodes_as_the_codec_with_groups_of_128():
    check(128)


def test_the_reference_decodes_as_the_codec_with_groups_of_16():
    check(16)


if __name__ == "__main__":
    for G in (128, 16):
        check(G)
        print(f"G={G}: the reference decodes as the codec, byte for byte")
