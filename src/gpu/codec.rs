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

pub enum PackedCopy {
    Host { bytes: Vec<u8>, by_codec: ByCodec },
    Device(ltgpu::packer::PackedCopy),
}

impl PackedCopy {
    pub fn packed_len(&self) -> u64 {
        match self {
            PackedCopy::Host { bytes, .. } => bytes.len() as u64,
            PackedCopy::Device(c) => c.packed_len(),
        }
    }

    /// True when some block is lossy (int8g): what it decodes to is not the original.
    pub fn is_lossy(&self) -> bool {
        self.by_codec()[ltblock::Codec::Int8g.id() as usize].0 > 0
    }

    pub fn by_codec(&self) -> ByCodec {
        match self {
            PackedCopy::Host { by_codec, .. } => *by_codec,
            PackedCopy::Device(c) => c.by_codec,
        }
    }
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

    /// Packs the `len` resident bytes at `start`; None when the copy would be larger than
    /// `max_len`. The caller has waited for every use of the buffer.
    pub fn pack(&mut self, start: u64, len: u64, opts: PackOptions, max_len: u64) -> Result<Option<PackedCopy>, CodecFailure> {
        match self {
            Backend::Cpu => {
                // SAFETY: on the CUDA double a resident buffer is `len` bytes of mapped host
                // memory, and no work of the program's uses it while the engine holds it.
                let data = unsafe { std::slice::from_raw_parts(start as *const u8, len as usize) };
                let eo = ltblock::EncodeOptions {
                    dtype: opts.dtype,
                    mode: if opts.lossy { ltblock::Mode::Lossy } else { ltblock::Mode::Lossless },
                    group: opts.group as usize,
                    max_rel_l2: opts.max_rel_l2,
                    ..ltblock::EncodeOptions::default()
                };
                let bytes = ltblock::encode(data, &eo);
                if bytes.len() as u64 > max_len {
                    return Ok(None);
                }
                ltblock::decode(&bytes).map_err(cpu_failure)?;
                let mut by_codec: ByCodec = [(0, 0); 8];
                for b in ltblock::inspect(&bytes).map_err(cpu_failure)?.blocks {
                    let slot = &mut by_codec[(b.codec.id() as usize).min(7)];
                    slot.0 += b.original_len as u64;
                    slot.1 += b.payload_len as u64 + 32;
                }
                Ok(Some(PackedCopy::Host { bytes, by_codec }))
            }
            Backend::Gpu(p) => {
                let go = ltgpu::GpuEncode { dtype: opts.dtype, lossy: opts.lossy, group: opts.group, max_rel_l2: opts.max_rel_l2 };
                Ok(p.pack(start, len as usize, go, max_len).map_err(gpu_failure)?.map(PackedCopy::Device))
            }
        }
    }

    /// Decodes `copy` into the freshly mapped range at `out`.
    /// Decodes `copy` into the freshly mapped range at `out`: Ok(None) when done (the CPU),
    /// Ok(Some(event)) when queued on our stream and ending with that event (the GPU; its
    /// checksums are read by `settled` once it ran). `tag` names it there.
    pub fn restore(&mut self, copy: &PackedCopy, out: u64, len: u64, tag: u64) -> Result<Option<u64>, CodecFailure> {
        match (self, copy) {
            (Backend::Cpu, PackedCopy::Host { bytes, .. }) => {
                let data = ltblock::decode(bytes).map_err(cpu_failure)?;
                if data.len() as u64 != len {
                    return Err(CodecFailure::Corrupt { block: 0, detail: format!("decodes to {} bytes, the buffer has {len}", data.len()) });
                }
                // SAFETY: on the double `out` is `len` bytes of mapped host memory, ours until
                // the restore returns.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out as *mut u8, data.len()) };
                Ok(None)
            }
            (Backend::Gpu(p), PackedCopy::Device(c)) => p.restore_async(c, out, tag).map(Some).map_err(gpu_failure),
            _ => Err(CodecFailure::Device("a packed copy of the other backend".into())),
        }
    }

    /// True when the resident bytes still equal what `copy` decodes to.
    pub fn unchanged(&mut self, copy: &PackedCopy, start: u64, len: u64) -> Result<bool, CodecFailure> {
        match (self, copy) {
            (Backend::Cpu, PackedCopy::Host { bytes, .. }) => {
                let decoded = ltblock::decode(bytes).map_err(cpu_failure)?;
                // SAFETY: as in `pack`.
                let data = unsafe { std::slice::from_raw_parts(start as *const u8, len as usize) };
                Ok(decoded == data)
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
            (_, PackedCopy::Host { .. }) | (Backend::Cpu, _) => {}
        }
    }
}
