//! The codec backend of the packing engine: the GPU kernels (`ltgpu::packer`) on a real GPU,
//! the CPU reference (`ltblock`) on the CUDA double, where device memory is host memory. Both
//! hand out a copy only after it decoded once with every block's checksum checked, and both
//! report a block that fails at restore by its index: the CPU at once, the GPU when the
//! restore's decode has run (`settled`).
use ltblock::DType;

/// What a pack may use.
#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    /// The element type blocks are read as: the GEMM hint, else bf16 (zvc's 16-bit elements;
    /// lossless codecs are exact whatever it is).
    pub dtype: DType,
    pub lossy: bool,
    pub group: u32,
    pub max_rel_l2: f32,
}

/// Input and packed bytes per codec id (0 raw, 1 zvc, 2 int8g, later codecs after).
pub type ByCodec = [(u64, u64); 8];

/// Bytes of a buffer the CPU reference packs as one LT-Block buffer (the GPU's chunk is
/// `ltgpu::packer::CHUNK`): smaller than the GPU's, so that the CUDA double's buffers of a few
/// MiB are packed in several chunks and backed in several pieces, as large buffers are there.
pub const CPU_CHUNK: u64 = 1 << 20;

/// One chunk of a copy made by the CPU reference.
pub struct HostChunk {
    /// Its LT-Block buffer.
    pub bytes: Vec<u8>,
    /// Bytes of the buffer it holds.
    pub original: u64,
    pub by_codec: ByCodec,
    /// Counted as moved to host memory (`Backend::move_to_host`): on the double device memory
    /// is host memory, so only the count moves, as the GPU's chunk does.
    pub in_host: bool,
}

/// A packed copy: LT-Block buffers of consecutive chunks of the buffer, from its start (all
/// of them, or a prefix: a pack that stopped part way, or a kept copy `Backend::truncate`
/// shortened for room).
pub enum PackedCopy {
    Host(Vec<HostChunk>),
    Device(ltgpu::packer::PackedCopy),
}

impl PackedCopy {
    pub fn packed_len(&self) -> u64 {
        match self {
            PackedCopy::Host(chunks) => chunks.iter().map(|c| c.bytes.len() as u64).sum(),
            PackedCopy::Device(c) => c.packed_len(),
        }
    }

    /// Its bytes in host memory (`Backend::move_to_host`).
    pub fn host_len(&self) -> u64 {
        match self {
            PackedCopy::Host(chunks) => chunks.iter().filter(|c| c.in_host).map(|c| c.bytes.len() as u64).sum(),
            PackedCopy::Device(c) => c.host_len(),
        }
    }

    /// The host memory its chunks there hold (on the GPU their pinned slabs, a little more
    /// than `host_len`): what `LTSHIM_HOST_COPIES` bounds.
    pub fn host_held(&self) -> u64 {
        match self {
            PackedCopy::Host(_) => self.host_len(),
            PackedCopy::Device(c) => c.host_pinned(),
        }
    }

    /// Its bytes in device memory: what the budget counts.
    pub fn device_len(&self) -> u64 {
        self.packed_len() - self.host_len()
    }

    /// Bytes of the buffer it holds, from its start.
    pub fn original_len(&self) -> u64 {
        match self {
            PackedCopy::Host(chunks) => chunks.iter().map(|c| c.original).sum(),
            PackedCopy::Device(c) => c.original_len(),
        }
    }

    /// `next`, the copy of the bytes that follow this one's, appended to it.
    pub fn append(&mut self, next: PackedCopy) {
        match (self, next) {
            (PackedCopy::Host(a), PackedCopy::Host(b)) => a.extend(b),
            (PackedCopy::Device(a), PackedCopy::Device(b)) => a.append(b),
            _ => unreachable!("one backend makes every copy"),
        }
    }

    /// Its last chunk, taken off it as a copy of its own (None when empty): what is left
    /// still decodes the buffer's first bytes.
    pub fn pop_last(&mut self) -> Option<PackedCopy> {
        match self {
            PackedCopy::Host(chunks) => chunks.pop().map(|c| PackedCopy::Host(vec![c])),
            PackedCopy::Device(c) => c.chunks.pop().map(|c| PackedCopy::Device(ltgpu::packer::PackedCopy { chunks: vec![c] })),
        }
    }

    /// The bytes of the buffer each chunk holds, in order.
    pub fn chunk_lens(&self) -> Vec<u64> {
        match self {
            PackedCopy::Host(chunks) => chunks.iter().map(|c| c.original).collect(),
            PackedCopy::Device(c) => c.chunks.iter().map(|c| c.original as u64).collect(),
        }
    }

    /// True when some block is lossy (int8g): what it decodes to is not the original.
    pub fn is_lossy(&self) -> bool {
        self.by_codec()[ltblock::Codec::Int8g.id() as usize].0 > 0
    }

    /// Input and packed bytes per codec id, over its chunks.
    pub fn by_codec(&self) -> ByCodec {
        fn sum<'a>(each: impl Iterator<Item = &'a ByCodec>) -> ByCodec {
            let mut all: ByCodec = [(0, 0); 8];
            for by in each {
                for (a, b) in all.iter_mut().zip(by) {
                    a.0 += b.0;
                    a.1 += b.1;
                }
            }
            all
        }
        match self {
            PackedCopy::Host(chunks) => sum(chunks.iter().map(|c| &c.by_codec)),
            PackedCopy::Device(c) => sum(c.chunks.iter().map(|c| &c.by_codec)),
        }
    }
}

/// How `Backend::pack` ended.
pub enum PackEnd {
    /// The copy holds the whole buffer.
    Whole,
    /// A chunk would have made the copy larger than its bound: the copy holds the chunks before.
    OverBound,
    /// The copy holds the chunks before the failure.
    Failed(CodecFailure),
}

/// Why the backend failed.
#[derive(Debug)]
pub enum CodecFailure {
    /// A packed block failed its checks: its data must not be handed over.
    Corrupt { block: usize, detail: String },
    /// Our own device work failed (a kernel, a copy, an allocation).
    Device(String),
    /// No device memory for the packed copy (or the restore's scratch).
    OutOfMemory,
}

impl std::fmt::Display for CodecFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecFailure::Corrupt { block, detail } => write!(f, "block {block} is corrupt ({detail})"),
            CodecFailure::Device(e) => write!(f, "{e}"),
            CodecFailure::OutOfMemory => write!(f, "out of device memory"),
        }
    }
}

fn cpu_failure(e: ltblock::CodecError) -> CodecFailure {
    use ltblock::CodecError as E;
    let block = match &e {
        E::Truncated { block, .. } | E::BadMagic { block } | E::UnsupportedVersion { block, .. } | E::UnknownDType { block, .. } | E::Inconsistent { block, .. } => {
            block.unwrap_or(0)
        }
        E::UnknownCodec { block, .. } | E::Checksum { block } | E::NoSuchBlock { block, .. } => *block,
    };
    CodecFailure::Corrupt { block: block as usize, detail: e.to_string() }
}

/// A CPU chunk's block index as the buffer's (chunks of `CPU_CHUNK`, blocks of 64 KiB).
fn in_chunk(e: CodecFailure, chunk: usize) -> CodecFailure {
    match e {
        CodecFailure::Corrupt { block, detail } => {
            CodecFailure::Corrupt { block: block + chunk * (CPU_CHUNK as usize / ltblock::format::DEFAULT_BLOCK_SIZE), detail }
        }
        other => other,
    }
}

fn gpu_failure(e: ltgpu::GpuError) -> CodecFailure {
    match e {
        ltgpu::GpuError::Block { block, status } => CodecFailure::Corrupt { block, detail: ltgpu::status_name(status).into() },
        ltgpu::GpuError::Driver { error, .. } if error.contains("OUT_OF_MEMORY") => CodecFailure::OutOfMemory,
        other => CodecFailure::Device(other.to_string()),
    }
}

pub enum Backend {
    /// The CUDA double: buffers are host memory.
    Cpu,
    Gpu(Box<ltgpu::packer::Packer>),
}

impl Backend {
    pub fn scratch_bytes(&self) -> u64 {
        match self {
            Backend::Cpu => 0,
            Backend::Gpu(p) => p.scratch_bytes(),
        }
    }

    /// The host time the GPU packer has spent in synchronous work so far (None on the CPU).
    pub fn waits(&self) -> Option<ltgpu::packer::Waits> {
        match self {
            Backend::Cpu => None,
            Backend::Gpu(p) => Some(p.waits()),
        }
    }

    /// The chunk size copies are made in: a piece of a buffer's memory whose bytes are in the
    /// copy may go back to the driver while the rest is packed (engine, `vmm::pieces`).
    pub fn chunk_bytes(on_cuda_double: bool) -> u64 {
        if on_cuda_double {
            CPU_CHUNK
        } else {
            ltgpu::packer::CHUNK as u64
        }
    }

    /// Packs the `len` resident bytes at `start` chunk by chunk, asking `bound(done,
    /// copy_len)` before each chunk how large the whole copy may be once it is in (`done`:
    /// the bytes the copy holds so far, read for the last time; None stops). The copy made so
    /// far comes back however it ended: a caller that gave memory back decodes it there again.
    /// Each chunk decoded once, every block checked, before the next is asked for. The caller
    /// has waited for every use of the buffer.
    pub fn pack(&mut self, start: u64, len: u64, opts: PackOptions, bound: &mut dyn FnMut(u64, u64) -> Option<u64>) -> (PackedCopy, PackEnd) {
        match self {
            Backend::Cpu => {
                let eo = ltblock::EncodeOptions {
                    dtype: opts.dtype,
                    mode: if opts.lossy { ltblock::Mode::Lossy } else { ltblock::Mode::Lossless },
                    group: opts.group as usize,
                    max_rel_l2: opts.max_rel_l2,
                    ..ltblock::EncodeOptions::default()
                };
                let mut chunks: Vec<HostChunk> = Vec::new();
                let mut done = 0u64;
                while done < len {
                    let n = CPU_CHUNK.min(len - done);
                    let copy_len: u64 = chunks.iter().map(|c| c.bytes.len() as u64).sum();
                    let end = match bound(done, copy_len) {
                        None => Some(PackEnd::OverBound),
                        Some(max_len) => {
                            // SAFETY: on the CUDA double a resident buffer is `len` bytes of
                            // mapped host memory, and no work of the program's uses it while the
                            // engine holds it; pieces before `done` may be gone, this one is not.
                            let data = unsafe { std::slice::from_raw_parts((start + done) as *const u8, n as usize) };
                            let bytes = ltblock::encode(data, &eo);
                            if copy_len + bytes.len() as u64 > max_len {
                                Some(PackEnd::OverBound)
                            } else {
                                match ltblock::decode(&bytes).and_then(|_| ltblock::inspect(&bytes)) {
                                    Err(e) => Some(PackEnd::Failed(in_chunk(cpu_failure(e), chunks.len()))),
                                    Ok(info) => {
                                        let mut by_codec: ByCodec = [(0, 0); 8];
                                        for b in info.blocks {
                                            let slot = &mut by_codec[(b.codec.id() as usize).min(7)];
                                            slot.0 += b.original_len as u64;
                                            slot.1 += b.payload_len as u64 + 32;
                                        }
                                        chunks.push(HostChunk { bytes, original: n, by_codec, in_host: false });
                                        None
                                    }
                                }
                            }
                        }
                    };
                    if let Some(end) = end {
                        return (PackedCopy::Host(chunks), end);
                    }
                    done += n;
                }
                (PackedCopy::Host(chunks), PackEnd::Whole)
            }
            Backend::Gpu(p) => {
                let go = ltgpu::GpuEncode { dtype: opts.dtype, lossy: opts.lossy, group: opts.group, max_rel_l2: opts.max_rel_l2 };
                let (copy, end) = p.pack_bounded(start, len as usize, go, bound);
                let end = match end {
                    ltgpu::packer::PackEnd::Whole => PackEnd::Whole,
                    ltgpu::packer::PackEnd::OverBound => PackEnd::OverBound,
                    ltgpu::packer::PackEnd::Failed(e) => PackEnd::Failed(gpu_failure(e)),
                };
                (PackedCopy::Device(copy), end)
            }
        }
    }

    /// Decodes `copy` into `out` and waits for it, every block checked (a pack that stopped
    /// part way puts back what it had taken).
    pub fn restore_now(&mut self, copy: &PackedCopy, out: u64) -> Result<(), CodecFailure> {
        match (self, copy) {
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.restore(c, out).map_err(gpu_failure),
            (b, c) => b.restore(c, out, c.original_len(), 0).map(|_| ()),
        }
    }

    /// Decodes `copy` into the freshly mapped range at `out`: Ok(None) when done (the CPU),
    /// Ok(Some(event)) when queued on our stream and ending with that event (the GPU; its
    /// checksums are read by `settled` once it ran). `tag` names it there.
    pub fn restore(&mut self, copy: &PackedCopy, out: u64, len: u64, tag: u64) -> Result<Option<u64>, CodecFailure> {
        match (self, copy) {
            (Backend::Cpu, PackedCopy::Host(chunks)) => {
                let mut off = 0u64;
                for (i, c) in chunks.iter().enumerate() {
                    let (data, n) = (ltblock::decode(&c.bytes).map_err(cpu_failure).map_err(|e| in_chunk(e, i))?, c.original);
                    if data.len() as u64 != n || off + n > len {
                        let detail = format!("chunk {i} decodes to {} bytes, of a buffer of {len}", data.len());
                        return Err(in_chunk(CodecFailure::Corrupt { block: 0, detail }, i));
                    }
                    // SAFETY: on the double `out` is `len` bytes of mapped host memory, ours
                    // until the restore returns; the chunk ends within it (checked above).
                    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (out + off) as *mut u8, data.len()) };
                    off += n;
                }
                Ok(None)
            }
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.restore_async(c, out, tag).map(Some).map_err(gpu_failure),
            _ => Err(CodecFailure::Device("a packed copy of the other backend".into())),
        }
    }

    /// True when the resident bytes still equal what `copy` decodes to.
    pub fn unchanged(&mut self, copy: &PackedCopy, start: u64, len: u64) -> Result<bool, CodecFailure> {
        match (self, copy) {
            (Backend::Cpu, PackedCopy::Host(chunks)) => {
                let mut off = 0u64;
                for (i, c) in chunks.iter().enumerate() {
                    let (decoded, n) = (ltblock::decode(&c.bytes).map_err(cpu_failure).map_err(|e| in_chunk(e, i))?, c.original);
                    if off + n > len {
                        return Ok(false);
                    }
                    // SAFETY: as in `pack`; the chunk ends within the buffer (checked above).
                    let data = unsafe { std::slice::from_raw_parts((start + off) as *const u8, n as usize) };
                    if decoded != data {
                        return Ok(false);
                    }
                    off += n;
                }
                Ok(true)
            }
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.unchanged(c, start).map_err(gpu_failure),
            _ => Err(CodecFailure::Device("a packed copy of the other backend".into())),
        }
    }

    /// The queued restores that have run since the last call, checked (nothing on the CPU).
    pub fn settled(&mut self) -> ltgpu::packer::Settled {
        match self {
            Backend::Gpu(p) => p.poll(),
            Backend::Cpu => Default::default(),
        }
    }

    /// The event the latest queued restore ends with.
    pub fn latest_restore(&self) -> Option<u64> {
        match self {
            Backend::Gpu(p) => p.latest_restore(),
            Backend::Cpu => None,
        }
    }

    pub fn discard(&mut self, copy: PackedCopy) {
        match (self, copy) {
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.discard(c),
            (_, PackedCopy::Host(_)) | (Backend::Cpu, _) => {}
        }
    }

    /// Gives the device memory of `copy`'s last chunks back until `need` bytes are (or all
    /// of it: chunks moved to host memory, its first ones, stay); the bytes given back. What
    /// is left still decodes the buffer's first bytes.
    pub fn truncate(&mut self, copy: &mut PackedCopy, need: u64) -> u64 {
        match (self, copy) {
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.truncate(c, need),
            (_, PackedCopy::Host(chunks)) => {
                let mut freed = 0u64;
                while freed < need && chunks.last().is_some_and(|c| !c.in_host) {
                    let Some(c) = chunks.pop() else { break };
                    freed += c.bytes.len() as u64;
                }
                freed
            }
            (Backend::Cpu, PackedCopy::Device(_)) => 0,
        }
    }

    /// Pinned memory kept for the next moves (spare slabs; none on the CPU reference).
    pub fn spare_host_bytes(&self) -> u64 {
        match self {
            Backend::Gpu(p) => p.spare_host_bytes(),
            Backend::Cpu => 0,
        }
    }

    /// Frees the spare slabs (no more moves will use them).
    pub fn free_spare_slabs(&mut self) {
        if let Backend::Gpu(p) = self {
            p.free_spare_slabs();
        }
    }

    /// Moves `copy`'s chunks in device memory to host memory, first chunk first, until `need`
    /// device bytes are given back or the next would pass `host_room` bytes; the device bytes
    /// given back. They decode as before, slower on a GPU (read over the bus).
    pub fn move_to_host(&mut self, copy: &mut PackedCopy, need: u64, host_room: u64) -> Result<u64, CodecFailure> {
        match (self, copy) {
            // (pinned memory refused, for lack of it or of mapped pinned memory at all, is the
            // caller's OutOfMemory: it stops moving, where our other failures drain)
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.move_to_host(c, need, host_room).map_err(|e| match e {
                ltgpu::GpuError::PinnedRefused { .. } => CodecFailure::OutOfMemory,
                other => gpu_failure(other),
            }),
            (_, PackedCopy::Host(chunks)) => {
                let mut freed = 0u64;
                for c in chunks.iter_mut().filter(|c| !c.in_host) {
                    if freed >= need || freed + c.bytes.len() as u64 > host_room {
                        break;
                    }
                    c.in_host = true;
                    freed += c.bytes.len() as u64;
                }
                Ok(freed)
            }
            (Backend::Cpu, PackedCopy::Device(_)) => Ok(0),
        }
    }
}
