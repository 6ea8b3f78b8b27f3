//! The kernels on a real GPU, against the CPU reference. Without a GPU (CI, the dev machine)
//! each test says so loudly and returns; `LTGPU_REQUIRE_GPU=1` turns that into a failure, as
//! `scripts/device/gpu_tests.sh` sets on the device machine.
use ltgpu::selfcheck::{exactness_sweep, input, malformed_checks};
use ltgpu::{descs_for, Gpu, GpuEncode};

fn gpu_or_skip() -> Option<Gpu> {
    match Gpu::new(0) {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("LTGPU_REQUIRE_GPU").is_none() => {
            eprintln!("SKIPPED (loudly): no GPU ({e}); set LTGPU_REQUIRE_GPU=1 to make this a failure");
            None
        }
        Err(e) => panic!("LTGPU_REQUIRE_GPU is set but the GPU cannot be used: {e}"),
    }
}

#[test]
fn gpu_buffers_and_decodes_equal_the_cpu_reference() {
    let Some(gpu) = gpu_or_skip() else { return };
    let sweep = exactness_sweep(&gpu).unwrap();
    assert!(sweep.len() >= 16);
    let bad: Vec<String> = sweep.iter().filter_map(|c| c.problem.as_ref().map(|p| format!("{}: {p}", c.name))).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn malformed_blocks_come_back_as_their_errors() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (cases, healthy) = malformed_checks(&gpu).unwrap();
    for c in &cases {
        assert!(c.reported(), "{}: expected status {}, got {:?}", c.what, c.expected_status, c.got.as_ref().map_err(|e| e.to_string()));
    }
    assert!(healthy, "a good decode after the malformed ones was not exact");
}

#[test]
fn many_buffers_of_different_codecs_decode_in_one_launch() {
    let Some(gpu) = gpu_or_skip() else { return };
    let opts = GpuEncode { dtype: ltblock::DType::BF16, lossy: true, group: 128, max_rel_l2: 0.01 };
    let sizes = [2 << 20, 65536 + 1000, 3 << 20, (2 << 20) + 4099];
    let inputs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| input(if i % 2 == 1 { "weights" } else { "relu" }, opts.dtype, 0.9, n)).collect();
    let dev: Vec<_> = inputs.iter().map(|d| gpu.upload(d).unwrap()).collect();
    // the last buffer lossless: expf blocks in the same launch as int8g and zvc ones
    let lossless = GpuEncode { lossy: false, ..opts };
    let packs: Vec<_> = dev.iter().zip(&sizes).enumerate().map(|(i, (d, &n))| gpu.encode(d.ptr, n, if i == 3 { lossless } else { opts }).unwrap()).collect();
    let slot = |n: usize| (n.div_ceil(16) * 16) as u64;
    let out = gpu.alloc(sizes.iter().map(|&n| slot(n) as usize).sum()).unwrap();
    let (mut at, mut descs) = (0u64, Vec::new());
    for (p, &n) in packs.iter().zip(&sizes) {
        descs.extend(descs_for(p, out.ptr + at));
        at += slot(n);
    }
    gpu.decode(&descs).unwrap();
    let mut at = 0u64;
    let codecs: Vec<ltblock::Codec> = packs.iter().flat_map(|p| ltblock::inspect(&gpu.download(p.buf.ptr, p.len).unwrap()).unwrap().blocks.into_iter().map(|b| b.codec)).collect();
    for c in [ltblock::Codec::Zvc, ltblock::Codec::Int8g, ltblock::Codec::Expf] {
        assert!(codecs.contains(&c), "no {c:?} block in the launch");
    }
    for (i, (d, &n)) in inputs.iter().zip(&sizes).enumerate() {
        let got = gpu.download(out.ptr + at, n).unwrap();
        let mode = if i == 3 { ltblock::Mode::Lossless } else { ltblock::Mode::Lossy };
        let cpu = ltblock::encode(d, &ltblock::EncodeOptions { mode, dtype: opts.dtype, ..Default::default() });
        assert_eq!(got, ltblock::decode(&cpu).unwrap(), "buffer of {n} bytes");
        at += slot(n);
    }
}

/// Polls until the restore tagged `tag` is reported done (or 10 s pass).
fn settled_tag(packer: &mut ltgpu::packer::Packer, tag: u64) -> ltgpu::packer::Settled {
    let t0 = std::time::Instant::now();
    let mut all = ltgpu::packer::Settled::default();
    while !all.done.iter().any(|&(t, _)| t == tag) {
        assert!(t0.elapsed().as_secs() < 10, "restore {tag} never reported done");
        let s = packer.poll();
        all.done.extend(s.done);
        all.failed.extend(s.failed);
        std::thread::yield_now();
    }
    all
}

#[test]
fn queued_restores_decode_exactly_and_a_copy_corrupted_since_it_was_made_is_reported() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut packer = ltgpu::packer::Packer::new(0).unwrap();
    let n = (3 << 20) + 4096;
    let data = input("weights", ltblock::DType::BF16, 0.5, n);
    let src = gpu.upload(&data).unwrap();
    let lossless = GpuEncode { dtype: ltblock::DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let copy = packer.pack(src.ptr, n, lossless, u64::MAX).unwrap().expect("packs");
    let out = gpu.alloc(n).unwrap();
    let first = packer.restore_async(&copy, out.ptr, 7).unwrap();
    assert_ne!(first, 0, "a queued restore hands out its event");
    let s = settled_tag(&mut packer, 7);
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert!(gpu.download(out.ptr, n).unwrap() == data, "a queued restore is not exact");
    // flip one payload byte of the first block
    let c = &copy.chunks[0];
    let at = c.ptr + c.offsets[0] + 48;
    let byte = gpu.download(at, 1).unwrap()[0] ^ 0x10;
    // SAFETY: one byte inside the copy's pool memory, which the test owns.
    unsafe { cudarc::driver::result::memcpy_htod_sync(at, &[byte]) }.unwrap();
    packer.restore_async(&copy, out.ptr, 8).unwrap();
    let s = settled_tag(&mut packer, 8);
    assert!(s.failed.iter().any(|&(t, block, _)| t == 8 && block == 0), "the corrupted block was not reported: {:?}", s.failed);
    packer.discard(copy);
}

#[test]
fn a_copy_that_would_pass_its_bound_is_refused_before_its_memory_is_taken() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut packer = ltgpu::packer::Packer::new(0).unwrap();
    // two chunks (64 MiB each) of half-zero words: the copy is a little over half of them
    let n = 2 * ltgpu::packer::CHUNK;
    let data = input("relu", ltblock::DType::BF16, 0.5, n);
    let src = gpu.upload(&data).unwrap();
    let lossless = GpuEncode { dtype: ltblock::DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let whole = packer.pack(src.ptr, n, lossless, u64::MAX).unwrap().expect("packs");
    let len = whole.packed_len();
    packer.discard(whole);
    // a bound one byte short: refused (the first chunk fits, the second would not)
    assert!(packer.pack(src.ptr, n, lossless, len - 1).unwrap().is_none(), "a copy of {len} bytes passed a bound of {}", len - 1);
    // exactly its size: made, and exact
    let copy = packer.pack(src.ptr, n, lossless, len).unwrap().expect("fits its own size");
    assert_eq!(copy.packed_len(), len);
    let out = gpu.alloc(n).unwrap();
    packer.restore(&copy, out.ptr).unwrap();
    assert!(gpu.download(out.ptr, n).unwrap() == data, "the bounded copy is not exact");
    packer.discard(copy);
}

#[test]
fn a_pack_in_chunks_asks_before_each_chunk_and_a_stopped_one_hands_back_the_chunks_it_made() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut packer = ltgpu::packer::Packer::new(0).unwrap();
    // three chunks and a bit of half-zero words
    let n = 3 * ltgpu::packer::CHUNK + 4096;
    let data = input("relu", ltblock::DType::BF16, 0.5, n);
    let src = gpu.upload(&data).unwrap();
    let lossless = GpuEncode { dtype: ltblock::DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let mut asked = Vec::new();
    let (copy, end) = packer.pack_bounded(src.ptr, n, lossless, &mut |done, len| {
        asked.push((done, len));
        Some(u64::MAX)
    });
    assert!(matches!(end, ltgpu::packer::PackEnd::Whole), "{end:?}");
    let chunk = ltgpu::packer::CHUNK as u64;
    assert_eq!(asked.iter().map(|a| a.0).collect::<Vec<_>>(), vec![0, chunk, 2 * chunk, 3 * chunk], "asked before each chunk with the bytes done");
    assert!(asked.windows(2).all(|w| w[1].1 > w[0].1) && asked[0].1 == 0, "the copy's length so far grows: {asked:?}");
    assert_eq!(copy.original_len(), n as u64);
    packer.discard(copy);
    // stopped before the third chunk: the copy holds the first two, and they decode exactly
    let (part, end) = packer.pack_bounded(src.ptr, n, lossless, &mut |done, _| (done < 2 * chunk).then_some(u64::MAX));
    assert!(matches!(end, ltgpu::packer::PackEnd::OverBound), "{end:?}");
    assert_eq!(part.original_len(), 2 * chunk);
    let out = gpu.alloc(n).unwrap();
    packer.restore(&part, out.ptr).unwrap();
    assert!(gpu.download(out.ptr, 2 * chunk as usize).unwrap() == data[..2 * chunk as usize], "the chunks of a stopped pack are not exact");
    packer.discard(part);
}

#[test]
fn a_copy_moved_to_host_memory_decodes_checks_and_truncates_as_before() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut packer = ltgpu::packer::Packer::new(0).unwrap();
    // three chunks and a bit of bf16 weights (expf), the first chunk random bytes (raw: the
    // largest chunk)
    let n = 3 * ltgpu::packer::CHUNK + 4096;
    let mut data = input("weights", ltblock::DType::BF16, 0.5, n);
    data[..ltgpu::packer::CHUNK].copy_from_slice(&input("random", ltblock::DType::BF16, 0.0, ltgpu::packer::CHUNK));
    let src = gpu.upload(&data).unwrap();
    let lossless = GpuEncode { dtype: ltblock::DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let mut copy = packer.pack(src.ptr, n, lossless, u64::MAX).unwrap().expect("packs");
    let (len, first) = (copy.packed_len(), copy.chunks[0].len as u64);
    // the host room counts pinned slabs, each a little larger than its chunk
    let slab = |l: u64| ltgpu::packer::slab_for(l as usize) as u64;
    // a host room of the first chunk's slab and a bit: the first chunk moves, the second would
    // pass it
    let moved = packer.move_to_host(&mut copy, u64::MAX, slab(first) + 1).unwrap();
    assert_eq!((moved, copy.host_len(), copy.host_pinned()), (first, first, slab(first)), "the first chunk, and only it, moved");
    assert!(copy.chunks[0].host != 0 && copy.chunks[1..].iter().all(|c| c.host == 0));
    // the rest, asked for by need, with host room for the second chunk's slab only: the first,
    // larger, is in host memory already and takes none of it
    let second = copy.chunks[1].len as u64;
    assert!(second < first, "the raw first chunk is the largest: {first} {second}");
    let moved = packer.move_to_host(&mut copy, 1, slab(second)).unwrap();
    assert_eq!(moved, second, "one chunk meets a need of one byte");
    assert_eq!(copy.packed_len(), len, "moving changes no byte count");
    let out = gpu.alloc(n).unwrap();
    packer.restore(&copy, out.ptr).unwrap();
    assert!(gpu.download(out.ptr, n).unwrap() == data, "a copy partly in host memory is not exact");
    let tag = 9;
    packer.restore_async(&copy, out.ptr, tag).unwrap();
    let s = settled_tag(&mut packer, tag);
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert!(packer.unchanged(&copy, src.ptr).unwrap(), "the check reads the host chunks too");
    // truncating frees device chunks from the end and stops at the host ones
    let device = copy.packed_len() - copy.host_len();
    assert_eq!(packer.truncate(&mut copy, u64::MAX), device);
    assert_eq!(copy.chunks.len(), 2, "the two chunks in host memory stay");
    packer.restore(&copy, out.ptr).unwrap();
    assert!(gpu.download(out.ptr, 2 * ltgpu::packer::CHUNK).unwrap() == data[..2 * ltgpu::packer::CHUNK], "the host chunks left are not exact");
    packer.discard(copy);
    // the host chunks' pinned slabs are kept, and the next move takes them again: a copy of
    // other bytes (the same kinds, every 4099th byte changed) lands in slabs that held this
    // one's, and decodes exactly
    let spare = packer.spare_host_bytes();
    assert!(spare >= first + second, "the freed chunks' slabs are kept: {spare}");
    let mut other = data.clone();
    (0..n).step_by(4099).for_each(|i| other[i] ^= 0x5a);
    let src2 = gpu.upload(&other).unwrap();
    let mut copy = packer.pack(src2.ptr, n, lossless, u64::MAX).unwrap().expect("packs");
    packer.move_to_host(&mut copy, u64::MAX, u64::MAX).unwrap();
    assert!(copy.chunks.iter().all(|c| c.host != 0), "every chunk moved");
    assert!(packer.spare_host_bytes() < spare, "no spare slab was taken again: {} of {spare}", packer.spare_host_bytes());
    packer.restore(&copy, out.ptr).unwrap();
    assert!(gpu.download(out.ptr, n).unwrap() == other, "a copy in reused slabs is not exact");
    packer.discard(copy);
}

#[test]
fn a_gib_decodes_exactly_from_host_memory_and_says_how_fast_against_device_memory() {
    // (the speeds are printed for docs/PERF.md: a restore of a copy in host memory reads it
    // through its mapping, over the bus)
    let Some(gpu) = gpu_or_skip() else { return };
    let mut packer = ltgpu::packer::Packer::new(0).unwrap();
    let n = 1 << 30;
    let data = input("weights", ltblock::DType::BF16, 0.0, n);
    let src = gpu.upload(&data).unwrap();
    let lossless = GpuEncode { dtype: ltblock::DType::BF16, lossy: false, group: 128, max_rel_l2: 0.01 };
    let mut copy = packer.pack(src.ptr, n, lossless, u64::MAX).unwrap().expect("packs");
    let out = gpu.alloc(n).unwrap();
    packer.time_kernels(true);
    let timed = |packer: &mut ltgpu::packer::Packer, copy: &ltgpu::packer::PackedCopy| {
        packer.restore(copy, out.ptr).unwrap(); // warm
        let before = packer.waits().decode_kernel_ns;
        for _ in 0..3 {
            packer.restore(copy, out.ptr).unwrap();
        }
        (packer.waits().decode_kernel_ns - before) as f64 / 3.0
    };
    let device_ns = timed(&mut packer, &copy);
    packer.move_to_host(&mut copy, u64::MAX, u64::MAX).unwrap();
    assert_eq!(copy.host_len(), copy.packed_len(), "the whole copy moved");
    let host_ns = timed(&mut packer, &copy);
    assert!(gpu.download(out.ptr, n).unwrap() == data, "the decode from host memory is not exact");
    let packed = copy.packed_len() as f64;
    println!(
        "decode of 1 GiB of bf16 weights ({:.1}% packed): from device memory {:.2} ms ({:.0} GB/s of output), from host memory {:.2} ms ({:.0} GB/s of output, {:.1} GB/s read over the bus)",
        100.0 * packed / n as f64,
        device_ns / 1e6,
        n as f64 / device_ns,
        host_ns / 1e6,
        n as f64 / host_ns,
        packed / host_ns
    );
    packer.discard(copy);
}
