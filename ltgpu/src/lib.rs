//! The LT-Block codecs on the GPU.
//!
//! `compile` turns `kernels/*.cu` into machine code for one architecture with NVRTC (a cubin,
//! never PTX, so a newer NVRTC than the driver cannot hand it code it cannot load); it needs
//! no GPU, so CI checks it; `cache` keeps the result on disk. `Gpu` loads the module and runs
//! the kernels: pack (one pass over the input: each block analysed, placed by a device-side
//! prefix sum of the sizes, encoded; then a one-CTA kernel writes the buffer header) and decode
//! (any blocks of any buffers, one launch, each bounded by its extent). Output is
//! byte-identical with the CPU reference in `ltblock`; `selfcheck` shows it, run by `ltshim
//! bench` and by `tests/gpu.rs`.
//!
//! A crate of its own (not a module of the preload library) because the CLI's bench needs it
//! and the CLI must not link the library, which exports the hook symbols. cudarc is loaded
//! dynamically: its loader panics when a library is missing, so presence is checked first and
//! every call here returns an error instead.
use std::ffi::{c_void, CString};

use cudarc::driver::{result as drv, sys};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

pub mod cache;
pub mod packer;
pub use packer::warm_cache;
pub mod selfcheck;

pub const COMMON: &str = include_str!("../../kernels/common.cuh");
pub const LTBLOCK: &str = include_str!("../../kernels/ltblock.cu");
pub const EXPF: &str = include_str!("../../kernels/expf.cuh");
/// The packing engine's kernel (`packer::Packer::unchanged`), in the same module.
pub const RESIDENT: &str = include_str!("../../kernels/resident.cu");
pub const THREADS: u32 = 256;
/// NVRTC options besides the architecture: no multiply-add contraction (the CPU reference has
/// none, and results must match it bit for bit).
pub const OPTIONS: [&str; 2] = ["--fmad=false", "--std=c++17"];

#[derive(Debug)]
pub enum GpuError {
    /// NVRTC or the driver library cannot be loaded on this machine.
    Missing(&'static str),
    /// NVRTC refused the source: its log and the options it was given.
    Compile { log: String, options: Vec<String> },
    Nvrtc(String),
    /// A driver call failed: which one, and its status.
    Driver { call: &'static str, error: String },
    /// A decoded block failed its checks on the GPU.
    Block { block: usize, status: u32 },
    /// Pinned host memory mapped for the device was refused (none left, or none such on this
    /// system): the driver call and its status. The caller may go on without it.
    PinnedRefused { call: &'static str, error: String },
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::Missing(what) => write!(f, "{what} cannot be loaded on this machine"),
            GpuError::Compile { log, options } => write!(f, "NVRTC failed with options {options:?}:\n{log}"),
            GpuError::Nvrtc(e) => write!(f, "NVRTC: {e}"),
            GpuError::Driver { call, error } => write!(f, "{call} failed: {error}"),
            GpuError::PinnedRefused { call, error } => write!(f, "pinned host memory was refused: {call} failed: {error}"),
            GpuError::Block { block, status } => write!(f, "block {block} failed on the GPU (status {status}: {})", status_name(*status)),
        }
    }
}

impl std::error::Error for GpuError {}

pub fn status_name(s: u32) -> &'static str {
    match s {
        0 => "ok",
        1 => "bad magic or version",
        2 => "unknown codec",
        3 => "payload length",
        4 => "checksum mismatch",
        5 => "unknown dtype",
        6 => "block or output not 16-byte aligned",
        _ => "unknown status",
    }
}

fn d<T>(call: &'static str, r: Result<T, drv::DriverError>) -> Result<T, GpuError> {
    r.map_err(|e| GpuError::Driver { call, error: format!("{e:?}") })
}

/// The kernels' source as one translation unit (NVRTC gets no include paths).
pub fn source() -> String {
    LTBLOCK.replace("#include \"common.cuh\"", COMMON).replace("#include \"expf.cuh\"", EXPF) + RESIDENT
}

/// Compiles the kernels to a cubin for `arch` (e.g. "sm_90"). Needs NVRTC, not a GPU.
pub fn compile(arch: &str) -> Result<Vec<u8>, GpuError> {
    // SAFETY: only tries to dlopen candidate names of the NVRTC library.
    if !unsafe { nvrtc_sys::is_culib_present() } {
        return Err(GpuError::Missing("NVRTC (libnvrtc.so)"));
    }
    let src = CString::new(source()).map_err(|e| GpuError::Nvrtc(e.to_string()))?;
    let prog = nvrtc::create_program(&src, Some(c"ltblock.cu")).map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?;
    let options: Vec<String> = std::iter::once(format!("--gpu-architecture={arch}")).chain(OPTIONS.iter().map(|o| o.to_string())).collect();
    // SAFETY: prog was just created and is destroyed below, once.
    let compiled = unsafe { nvrtc::compile_program(prog, &options) };
    let result = match compiled {
        Err(_) => {
            // SAFETY: prog is alive.
            let log = unsafe { nvrtc::get_program_log(prog) }.map(|l| l.iter().map(|&c| c as u8 as char).collect::<String>()).unwrap_or_default();
            Err(GpuError::Compile { log, options })
        }
        Ok(()) => {
            let mut size = 0usize;
            // SAFETY: prog compiled; the out-parameter is valid.
            let rc = unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) };
            let mut cubin = vec![0u8; size];
            // SAFETY: the buffer holds `size` bytes, as NVRTC asked.
            let rc2 = unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _) };
            if rc != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS || rc2 != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                Err(GpuError::Nvrtc(format!("no cubin for {arch} ({rc:?}, {rc2:?})")))
            } else {
                Ok(cubin)
            }
        }
    };
    // SAFETY: created above, not destroyed before.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    result
}

/// NVRTC's (major, minor) version; None when it cannot be loaded.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    // SAFETY: only tries to dlopen candidate names of the NVRTC library.
    if !unsafe { nvrtc_sys::is_culib_present() } {
        return None;
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded; both out-parameters are valid.
    let rc = unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) };
    (rc == nvrtc_sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// Options of a GPU encode, as in `ltblock::EncodeOptions` (no lossless prefix on the GPU).
#[derive(Clone, Copy, Debug)]
pub struct GpuEncode {
    pub dtype: ltblock::DType,
    pub lossy: bool,
    pub group: u32,
    pub max_rel_l2: f32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct EncodeParams {
    input: u64,
    len: u64,
    block_size: u32,
    dtype: i32,
    lossy: i32,
    group: u32,
    max_rel_l2: f32,
    max_groups: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct BlockChoice {
    pub codec: u32,
    pub payload_len: u32,
    pub rel_l2: f32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct PackState {
    /// The tickets taken (u32, padded to 8 bytes) then the look-back, a u64 a block: zeroed
    /// before each launch.
    ticket: u64,
    lookback: u64,
    choice: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct BufferHead {
    out: u64,
    total: u64,
    len: u64,
    count: u32,
    block_size: u32,
    dtype: i32,
    lossy: i32,
}

/// Dynamic shared memory of the pack kernel, laid out as its `pack_smem` does: the staged
/// block, the zvc mask words of a block, then the larger of zvc's prefix sums, int8g's three
/// words a group and (float dtypes) expf's tables. Less of it lets more CTAs share an SM
/// (three for bf16 at G = 128).
fn pack_shared_bytes(p: &EncodeParams) -> u32 {
    let width = ltblock::DType::from_id(p.dtype as u8).map_or(1, |d| d.width() as u32);
    let words = p.block_size / width / 32;
    let expf = if width >= 2 { EXPF_REGION_BYTES } else { 0 };
    p.block_size + 4 * words + (4 * words).max(12 * p.max_groups).max(expf)
}

/// expf's tables in the pack kernel's region (EXPF_REGION_WORDS in kernels/expf.cuh).
const EXPF_REGION_BYTES: u32 = 4096;

/// At least the most `pack_shared_bytes` asks for: a u8 block's mask words (one a 32 bytes)
/// and the int8g region for MAX_GROUPS groups.
const PACK_SHARED_MAX: u32 =
    (ltblock::format::DEFAULT_BLOCK_SIZE + ltblock::format::DEFAULT_BLOCK_SIZE / 32 * 4 + 12 * ltblock::codec::int8g::MAX_GROUPS) as u32;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DecodeDesc {
    /// The block's header (16-byte aligned).
    pub block: u64,
    /// Where its bytes go (16-byte aligned).
    pub out: u64,
    /// Bytes readable from `block` on (to the next block in the index): the kernel reads
    /// nothing past it, whatever the header says.
    pub extent: u64,
}

/// Device memory, freed on drop.
pub struct DevBuf {
    pub ptr: u64,
    pub len: usize,
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        if self.ptr != 0 {
            // SAFETY: ptr came from malloc_sync and is freed once.
            let _ = unsafe { drv::free_sync(self.ptr) };
        }
    }
}

/// A packed buffer on the device.
pub struct Packed {
    /// Allocated for the largest possible result (every block raw); `len` bytes are used.
    pub buf: DevBuf,
    pub len: usize,
    /// Offset of each block's header, and the end (the buffer's index, read back).
    pub offsets: Vec<u64>,
    pub choices: Vec<BlockChoice>,
    /// Milliseconds of the first encode (state reset, pack kernel, header kernel).
    pub encode_ms: f32,
}

pub struct Gpu {
    module: sys::CUmodule,
    stream: sys::CUstream,
    pack: sys::CUfunction,
    pack_head: sys::CUfunction,
    decode: sys::CUfunction,
    pub arch: String,
    pub name: String,
    /// Where the cubin came from: "compiled" or the cache file it was read from.
    pub cubin_source: String,
}

struct Events(sys::CUevent, sys::CUevent);

/// The pack kernel's working memory: its state (reset before each launch), the blocks'
/// choices and the packed length.
struct PackScratch {
    state: DevBuf,
    choices: DevBuf,
    total: DevBuf,
}

impl Gpu {
    /// Device `ordinal`, with the kernels compiled for its architecture.
    pub fn new(ordinal: i32) -> Result<Gpu, GpuError> {
        // SAFETY: only tries to dlopen candidate names of the driver library.
        if !unsafe { sys::is_culib_present() } {
            return Err(GpuError::Missing("the CUDA driver (libcuda.so.1)"));
        }
        d("cuInit", drv::init())?;
        let dev = d("cuDeviceGet", drv::device::get(ordinal))?;
        // SAFETY: dev is a valid device; the primary context is retained for the process.
        let ctx = d("cuDevicePrimaryCtxRetain", unsafe { drv::primary_ctx::retain(dev) })?;
        // SAFETY: ctx was just retained.
        d("cuCtxSetCurrent", unsafe { drv::ctx::set_current(ctx) })?;
        // SAFETY: attribute queries on a valid device.
        let (major, minor) = unsafe {
            (
                d("cuDeviceGetAttribute", drv::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR))?,
                d("cuDeviceGetAttribute", drv::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))?,
            )
        };
        let arch = format!("sm_{major}{minor}");
        let name = drv::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
        let (cubin, cubin_source) = cache::compile_cached(cache::dir(), &arch, compile)?;
        // SAFETY: cubin is a complete image for this device's architecture (NVRTC's output, or
        // a cache file that starts like one; a bad one makes this call fail, not crash).
        let module = match d("cuModuleLoadData", unsafe { drv::module::load_data(cubin.as_ptr() as *const c_void) }) {
            Ok(m) => m,
            Err(_) if cubin_source != "compiled" => {
                // a cache file the driver refuses: drop it, compile afresh (and store that)
                let _ = std::fs::remove_file(&cubin_source);
                let (fresh, _) = cache::compile_cached(cache::dir(), &arch, compile)?;
                // SAFETY: as above, straight from NVRTC.
                d("cuModuleLoadData", unsafe { drv::module::load_data(fresh.as_ptr() as *const c_void) })?
            }
            Err(e) => return Err(e),
        };
        // SAFETY: module is loaded; names are the kernels' extern "C" entry points.
        let f = |n: &str| d("cuModuleGetFunction", unsafe { drv::module::get_function(module, CString::new(n).unwrap()) });
        let stream = d("cuStreamCreate", drv::stream::create(drv::stream::StreamKind::NonBlocking))?;
        let pack = f("ltb_pack_blocks")?;
        // SAFETY: an attribute of a loaded function; 96 KiB is within every sm_80+ device's limit.
        d("cuFuncSetAttribute", unsafe {
            sys::cuFuncSetAttribute(pack, sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, PACK_SHARED_MAX as i32).result()
        })?;
        Ok(Gpu {
            module,
            stream,
            pack,
            pack_head: f("ltb_pack_head")?,
            decode: f("ltb_decode_blocks")?,
            arch,
            name,
            cubin_source,
        })
    }

    /// Registers per thread and local (spill) bytes of each kernel, for the report.
    pub fn kernel_resources(&self) -> Vec<(&'static str, i32, i32)> {
        let attr = |f: sys::CUfunction, a: sys::CUfunction_attribute| {
            // SAFETY: an attribute query on a loaded function.
            unsafe { drv::function::get_function_attribute(f, a) }.unwrap_or(-1)
        };
        [("pack", self.pack), ("decode", self.decode)]
            .into_iter()
            .map(|(n, f)| (n, attr(f, sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_NUM_REGS), attr(f, sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)))
            .collect()
    }

    pub fn alloc(&self, len: usize) -> Result<DevBuf, GpuError> {
        // SAFETY: a plain device allocation.
        let ptr = d("cuMemAlloc", unsafe { drv::malloc_sync(len.max(1)) })?;
        Ok(DevBuf { ptr, len })
    }

    pub fn upload(&self, host: &[u8]) -> Result<DevBuf, GpuError> {
        let b = self.alloc(host.len())?;
        // SAFETY: b holds host.len() bytes.
        d("cuMemcpyHtoD", unsafe { drv::memcpy_htod_sync(b.ptr, host) })?;
        Ok(b)
    }

    pub fn download(&self, ptr: u64, len: usize) -> Result<Vec<u8>, GpuError> {
        let mut v = vec![0u8; len];
        // SAFETY: the caller names `len` readable device bytes at ptr.
        d("cuMemcpyDtoH", unsafe { drv::memcpy_dtoh_sync(&mut v, ptr) })?;
        Ok(v)
    }

    fn events(&self) -> Result<Events, GpuError> {
        Ok(Events(d("cuEventCreate", drv::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT))?, d("cuEventCreate", drv::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT))?))
    }

    /// Runs `work` on the stream between two events; returns milliseconds.
    fn timed(&self, work: impl FnOnce() -> Result<(), GpuError>) -> Result<f32, GpuError> {
        let ev = self.events()?;
        // SAFETY: events and stream are ours and alive.
        unsafe {
            d("cuEventRecord", drv::event::record(ev.0, self.stream))?;
            work()?;
            d("cuEventRecord", drv::event::record(ev.1, self.stream))?;
            d("cuEventSynchronize", drv::event::synchronize(ev.1))?;
            let ms = d("cuEventElapsedTime", drv::event::elapsed(ev.0, ev.1))?;
            let _ = drv::event::destroy(ev.0);
            let _ = drv::event::destroy(ev.1);
            Ok(ms)
        }
    }

    fn launch(&self, f: sys::CUfunction, grid: u32, shared: u32, params: &mut [*mut c_void]) -> Result<(), GpuError> {
        if grid == 0 {
            return Ok(());
        }
        // SAFETY: params point to values laid out as the kernel's parameters (repr(C) mirrors).
        d("cuLaunchKernel", unsafe { drv::launch_kernel(f, (grid, 1, 1), (THREADS, 1, 1), shared, self.stream, params) })
    }

    /// Device-to-device copy of `len` bytes, timed (the bandwidth baseline).
    pub fn copy_ms(&self, dst: &DevBuf, src: &DevBuf, len: usize) -> Result<f32, GpuError> {
        self.timed(|| {
            // SAFETY: both buffers hold at least len bytes.
            d("cuMemcpyDtoDAsync", unsafe { sys::cuMemcpyDtoDAsync_v2(dst.ptr, src.ptr, len, self.stream).result() })
        })
    }

    /// The pack kernel's parameters.
    fn params(&self, input: u64, len: usize, opts: GpuEncode) -> Result<EncodeParams, GpuError> {
        if !input.is_multiple_of(16) {
            return Err(GpuError::Driver { call: "encode", error: format!("input {input:#x} is not 16-byte aligned") });
        }
        let block = ltblock::format::DEFAULT_BLOCK_SIZE;
        // a block with more groups than MAX_GROUPS is never int8g, but a short last block may be
        let max_groups = if opts.lossy && opts.group > 0 && opts.dtype.width() >= 2 {
            (block / opts.dtype.width()).div_ceil(opts.group as usize).min(ltblock::codec::int8g::MAX_GROUPS)
        } else {
            0
        };
        Ok(EncodeParams {
            input,
            len: len as u64,
            block_size: block as u32,
            dtype: opts.dtype.id() as i32,
            lossy: opts.lossy as i32,
            group: opts.group,
            max_rel_l2: opts.max_rel_l2,
            max_groups: max_groups as u32,
        })
    }

    /// Resets the pack kernel's state and launches it, then the kernel that writes the buffer
    /// header: the whole encode, in stream order with no host round trip.
    fn pack_launch(&self, params: &mut EncodeParams, out: u64, scratch: &PackScratch) -> Result<(), GpuError> {
        let count = params.len.div_ceil(params.block_size as u64) as u32;
        // SAFETY: scratch.state is state.len bytes of device memory allocated by this Gpu.
        d("cuMemsetD8Async", unsafe { sys::cuMemsetD8Async(scratch.state.ptr, 0, scratch.state.len, self.stream).result() })?;
        let mut state = PackState { ticket: scratch.state.ptr, lookback: scratch.state.ptr + 8, choice: scratch.choices.ptr };
        let mut head =
            BufferHead { out, total: scratch.total.ptr, len: params.len, count, block_size: params.block_size, dtype: params.dtype, lossy: params.lossy };
        self.launch(self.pack, count, pack_shared_bytes(params), &mut [params as *mut _ as *mut c_void, &mut state as *mut _ as *mut c_void, &mut head as *mut _ as *mut c_void])?;
        self.launch(self.pack_head, 1, 0, &mut [&mut state as *mut _ as *mut c_void, &mut head as *mut _ as *mut c_void])
    }

    fn pack_scratch(&self, len: usize) -> Result<PackScratch, GpuError> {
        let count = len.div_ceil(ltblock::format::DEFAULT_BLOCK_SIZE);
        Ok(PackScratch { state: self.alloc(8 + 8 * count)?, choices: self.alloc(count * std::mem::size_of::<BlockChoice>())?, total: self.alloc(8)? })
    }

    /// Encodes `len` bytes at `input` (16-byte aligned) into LT-Blocks on the GPU.
    pub fn encode(&self, input: u64, len: usize, opts: GpuEncode) -> Result<Packed, GpuError> {
        let count = len.div_ceil(ltblock::format::DEFAULT_BLOCK_SIZE);
        let mut params = self.params(input, len, opts)?;
        let scratch = self.pack_scratch(len)?;
        let out = self.alloc(max_packed_len(len))?;
        let encode_ms = self.timed(|| self.pack_launch(&mut params, out.ptr, &scratch))?;
        let packed_len = u64::from_le_bytes(self.download(scratch.total.ptr, 8)?.try_into().unwrap()) as usize;
        let index = self.download(out.ptr + ltblock::format::BUFFER_HEADER as u64, 8 * (count + 1))?;
        let offsets = index.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let raw = self.download(scratch.choices.ptr, count * 16)?;
        let choices = raw
            .chunks_exact(16)
            .map(|c| BlockChoice {
                codec: u32::from_le_bytes(c[0..4].try_into().unwrap()),
                payload_len: u32::from_le_bytes(c[4..8].try_into().unwrap()),
                rel_l2: f32::from_le_bytes(c[8..12].try_into().unwrap()),
                pad: 0,
            })
            .collect();
        Ok(Packed { buf: out, len: packed_len, offsets, choices, encode_ms })
    }

    /// The encode again into `packed`'s buffer (for timing), in milliseconds.
    pub fn reencode_ms(&self, input: u64, len: usize, opts: GpuEncode, packed: &Packed) -> Result<f32, GpuError> {
        let mut params = self.params(input, len, opts)?;
        let scratch = self.pack_scratch(len)?;
        self.timed(|| self.pack_launch(&mut params, packed.buf.ptr, &scratch))
    }

    /// Decodes the blocks the descriptors name, in one launch; checks every block's status.
    pub fn decode(&self, descs: &[DecodeDesc]) -> Result<f32, GpuError> {
        let bytes: Vec<u8> = descs.iter().flat_map(|x| [x.block, x.out, x.extent]).flat_map(u64::to_le_bytes).collect();
        let descs_dev = self.upload(&bytes)?;
        let status = self.alloc(descs.len() * 4)?;
        let (mut dptr, mut sptr) = (descs_dev.ptr, status.ptr);
        let ms = self.timed(|| self.launch(self.decode, descs.len() as u32, 0, &mut [&mut dptr as *mut _ as *mut c_void, &mut sptr as *mut _ as *mut c_void]))?;
        let st = self.download(status.ptr, descs.len() * 4)?;
        for (i, s) in st.chunks_exact(4).enumerate() {
            let s = u32::from_le_bytes(s.try_into().unwrap());
            if s != 0 {
                return Err(GpuError::Block { block: i, status: s });
            }
        }
        Ok(ms)
    }
}

/// Descriptors that decode every block of `packed` into `out` (block b at b * block size).
pub fn descs_for(packed: &Packed, out: u64) -> Vec<DecodeDesc> {
    let block = ltblock::format::DEFAULT_BLOCK_SIZE as u64;
    packed
        .offsets
        .windows(2)
        .enumerate()
        .map(|(b, o)| DecodeDesc { block: packed.buf.ptr + o[0], out: out + b as u64 * block, extent: o[1] - o[0] })
        .collect()
}

/// The largest packed size of `len` bytes: the header and index, then every block raw.
pub fn max_packed_len(len: usize) -> usize {
    let block = ltblock::format::DEFAULT_BLOCK_SIZE;
    let count = len.div_ceil(block);
    let head = (ltblock::format::BUFFER_HEADER + 8 * (count + 1)).div_ceil(16) * 16;
    head + count * 32 + (len / block) * block + (len % block).div_ceil(16) * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI installs NVRTC from the package registry; without it this test says so loudly.
    #[test]
    fn kernels_compile_with_nvrtc_for_sm80_and_sm90() {
        for arch in ["sm_80", "sm_90"] {
            match compile(arch) {
                Ok(cubin) => assert!(cubin.len() > 1000 && cubin.starts_with(b"\x7fELF"), "{arch}: not a cubin"),
                Err(GpuError::Missing(what)) if std::env::var_os("LTGPU_REQUIRE_NVRTC").is_none() => {
                    eprintln!("SKIPPED (loudly): {what}; set LTGPU_REQUIRE_NVRTC=1 to make this a failure");
                    return;
                }
                Err(e) => panic!("{arch}: {e}"),
            }
        }
    }

    /// The pack kernel finds an element's int8g group as __umulhi(i, ceil(2^32 / G)) (struct
    /// Groups in kernels/ltblock.cu). Both sides are non-decreasing in i, so they agree for
    /// every i < 2^16 when they agree on each side of every multiple of G: checked for every G.
    #[test]
    fn the_kernels_group_index_without_division_is_exact() {
        for g in 2u64..=65535 {
            let m = (1u64 << 32).div_ceil(g);
            assert!(m <= u32::MAX as u64);
            let mut k = g;
            while k <= 1 << 16 {
                for i in [k - 1, k] {
                    if i < 1 << 16 {
                        assert_eq!((i * m) >> 32, i / g, "i {i} G {g}");
                    }
                }
                k += g;
            }
        }
    }

    /// The kernels' `div127` (kernels/common.cuh): x * RN(1/127), then one FMA correction.
    fn div127(x: f32) -> f32 {
        let y = 1.0f32 / 127.0;
        let q0 = x * y;
        (-q0).mul_add(127.0, x).mul_add(y, q0)
    }

    fn div127_mismatches(step: usize) -> Vec<u32> {
        (1u32..0x7f80_0000).step_by(step).filter(|&b| div127(f32::from_bits(b)).to_bits() != (f32::from_bits(b) / 127.0).to_bits()).collect()
    }

    /// int8g's scale amax / 127 without a division must equal the IEEE quotient: a sample of
    /// positive finite floats here (every 97th), all of them with `--ignored` (11 s in release).
    #[test]
    fn the_kernels_scale_without_division_is_exact() {
        assert_eq!(div127_mismatches(97), Vec::<u32>::new());
    }

    #[test]
    #[ignore]
    fn the_kernels_scale_without_division_is_exact_for_every_float() {
        assert_eq!(div127_mismatches(1), Vec::<u32>::new());
    }
}
