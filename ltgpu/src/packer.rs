//! The codecs as the preload library's packing engine uses them: on one stream of its own,
//! from scratch memory allocated once, with packed copies that occupy their packed size.
//!
//! A buffer is packed in chunks of `CHUNK` bytes (each an LT-Block buffer of its own), so the
//! scratch the encoder writes into stays `max_packed_len(CHUNK)` whatever the buffer's size.
//! Each chunk is encoded into the scratch, its packed length read back, copied into an
//! allocation of exactly that length from a memory pool of ours (stream-ordered, so freeing a
//! copy never waits for the device), then decoded again into the scratch with every block's
//! checksum checked: a copy is handed out only once it is known to decode. Restores decode
//! every block of every chunk in one launch and check the blocks' statuses. `unchanged` asks
//! whether resident bytes still equal what a copy decodes to (one read, `ltb_unchanged`).
//!
//! A pack ends with the stream synchronized (the caller needs the length and the verdict before
//! it may release memory). A restore does not wait: `restore_async` queues the decode and
//! returns an event the program's streams wait on; the blocks' statuses land in pinned host
//! memory the kernel writes directly, and `poll` reads them once the event has completed
//! (the copy was checked when it was made, so a failure there is memory gone bad since, and
//! it is reported at the next poll rather than before the program's call). The caller makes
//! the stream wait for the program's streams before a pack (`stream()`).
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::{result as drv, sys};

use crate::{d, max_packed_len, DecodeDesc, DevBuf, EncodeParams, GpuEncode, GpuError, PackScratch};

/// Compiles the kernels for device `ordinal` into the on-disk cache if they are not there:
/// Some(arch) when it compiled, None when the cache had them (or there is no GPU).
pub fn warm_cache(ordinal: i32) -> Result<Option<String>, GpuError> {
    // SAFETY: only tries to dlopen candidate names of the driver library.
    if !unsafe { sys::is_culib_present() } {
        return Ok(None);
    }
    d("cuInit", drv::init())?;
    let dev = d("cuDeviceGet", drv::device::get(ordinal))?;
    // SAFETY: attribute queries on a valid device.
    let (major, minor) = unsafe {
        (
            d("cuDeviceGetAttribute", drv::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR))?,
            d("cuDeviceGetAttribute", drv::device::get_attribute(dev, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))?,
        )
    };
    let arch = format!("sm_{major}{minor}");
    let (_, source) = crate::cache::compile_cached(crate::cache::dir(), &arch, crate::compile)?;
    Ok((source == "compiled").then_some(arch))
}

/// Bytes of a buffer packed as one LT-Block buffer.
pub const CHUNK: usize = 64 << 20;

/// One chunk's packed bytes, in pool memory, or in pinned host memory once moved there
/// (`Packer::move_to_host`).
pub struct PackedChunk {
    /// Where the kernels read it: pool memory, or the device's mapping of the host memory.
    pub ptr: u64,
    /// The host address of its pinned memory; 0 while in pool memory.
    pub host: u64,
    /// The size of the pinned slab holding it (at least `len`); 0 while in pool memory.
    pub slab: usize,
    pub len: usize,
    /// Bytes of the buffer this chunk holds.
    pub original: usize,
    /// Each block's header offset, then the end.
    pub offsets: Vec<u64>,
    /// Input and packed bytes per codec id (0 raw, 1 zvc, 2 int8g, 3.. later codecs).
    pub by_codec: [(u64, u64); 8],
}

/// How `Packer::pack_bounded` ended.
#[derive(Debug)]
pub enum PackEnd {
    /// The copy holds all of the input.
    Whole,
    /// A chunk would have made the copy larger than its bound (or the bound said stop).
    OverBound,
    /// Our device work failed.
    Failed(GpuError),
}

/// A buffer's packed copy: its chunks from the buffer's start (all of them, or a prefix: the
/// chunks so far while a pack is under way, or what `Packer::truncate` left).
pub struct PackedCopy {
    pub chunks: Vec<PackedChunk>,
}

impl PackedCopy {
    /// `next`'s chunks, the bytes after this copy's, appended to it.
    pub fn append(&mut self, next: PackedCopy) {
        self.chunks.extend(next.chunks);
    }

    pub fn packed_len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len as u64).sum()
    }

    /// Its bytes in pinned host memory (the rest is in device memory).
    pub fn host_len(&self) -> u64 {
        self.chunks.iter().filter(|c| c.host != 0).map(|c| c.len as u64).sum()
    }

    /// The pinned memory its chunks in host memory hold: their slabs, a little more than
    /// `host_len`.
    pub fn host_pinned(&self) -> u64 {
        self.chunks.iter().map(|c| c.slab as u64).sum()
    }

    /// Bytes of the buffer it holds.
    pub fn original_len(&self) -> u64 {
        self.chunks.iter().map(|c| c.original as u64).sum()
    }
}

/// Block slots of the restores in flight: descriptors staged in pinned memory and copied to
/// the device, statuses written by the kernel straight into pinned memory. 2^18 slots hold
/// 16 GiB of restores of 64 KiB blocks before the ring wraps (and waits for them all).
const RING_SLOTS: usize = 1 << 18;
/// Restores in flight before the oldest is waited for.
const RING_EVENTS: usize = 512;

/// A restore queued and not yet checked.
struct InFlight {
    tag: u64,
    first: usize,
    count: usize,
    event: sys::CUevent,
}

/// Pinned host memory, mapped for the device; freed on drop.
struct Pinned {
    host: *mut u8,
    dev: u64,
    len: usize,
}

impl Pinned {
    fn new(len: usize) -> Result<Pinned, GpuError> {
        let refused = |call: &'static str, e: sys::CUresult| GpuError::PinnedRefused { call, error: format!("{e:?}") };
        // SAFETY: a plain pinned allocation, mapped into the device's address space.
        let host = unsafe { drv::malloc_host(len, sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE) }.map_err(|e| refused("cuMemHostAlloc", e.0))? as *mut u8;
        let mut dev = 0;
        // SAFETY: host was just allocated with DEVICEMAP.
        if let Err(e) = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host as *mut c_void, 0).result() } {
            // SAFETY: ours, freed once.
            let _ = unsafe { drv::free_host(host as *mut c_void) };
            return Err(refused("cuMemHostGetDevicePointer", e.0));
        }
        PINNED.add(len as u64);
        Ok(Pinned { host, dev, len })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemHostAlloc, freed once.
        let _ = unsafe { drv::free_host(self.host as *mut c_void) };
        PINNED.sub(self.len as u64);
    }
}

/// A count of pinned host bytes over every packer, now and at its peak.
struct PinnedBytes {
    now: AtomicU64,
    peak: AtomicU64,
}

impl PinnedBytes {
    fn add(&self, n: u64) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn sub(&self, n: u64) {
        let _ = self.now.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
    }
}

/// Pinned host memory held by every packer of the process (slabs of packed copies in host
/// memory, in use or kept for reuse, and the restore rings).
static PINNED: PinnedBytes = PinnedBytes { now: AtomicU64::new(0), peak: AtomicU64::new(0) };

/// Pinned host memory the packers hold now and held at most (bytes): the chunks of copies in
/// host memory rounded up to their slabs, the slabs kept for reuse, the restore rings.
pub fn pinned_host_bytes() -> (u64, u64) {
    (PINNED.now.load(Ordering::Relaxed), PINNED.peak.load(Ordering::Relaxed))
}

/// A slab for a chunk of `len` bytes comes in multiples of this: a sixteenth of the power of
/// two at or above it, at least 64 KiB (so that a chunk of about the same size finds one, and a
/// slab is less than an eighth larger than its first chunk, 64 KiB for the smallest, where a
/// fixed 2 MiB made a 220 KiB chunk's slab 9 times its size).
fn slab_round(len: usize) -> usize {
    (len.next_power_of_two() / 16).max(64 << 10)
}

/// The size of a new slab for a chunk of `len` bytes.
pub fn slab_for(len: usize) -> usize {
    len.div_ceil(slab_round(len)) * slab_round(len)
}

/// A slab of `cap` bytes may hold a chunk of `len`: no more than an eighth and a rounding over.
fn slab_fits(cap: usize, len: usize) -> bool {
    cap >= len && cap <= len + len / 8 + slab_round(len)
}

/// Spare slabs over every packer (bytes): pinned memory that holds no copy, which the engine
/// counts against `LTSHIM_HOST_COPIES` for every device but the packer's own (which reuses it).
static SPARE: PinnedBytes = PinnedBytes { now: AtomicU64::new(0), peak: AtomicU64::new(0) };

/// Bytes of spare slabs over every packer.
pub fn spare_host_total() -> u64 {
    SPARE.now.load(Ordering::Relaxed)
}

/// What `poll` found of the restores that completed.
#[derive(Debug, Default)]
pub struct Settled {
    /// The restores known done and checked: (tag, the event they ended with).
    pub done: Vec<(u64, u64)>,
    /// A restore's first failing block: (tag, block, status).
    pub failed: Vec<(u64, usize, u32)>,
}

pub struct Packer {
    gpu: crate::Gpu,
    ring_descs: Pinned,
    ring_status: Pinned,
    ring_dev_descs: DevBuf,
    ring_head: usize,
    in_flight: std::collections::VecDeque<InFlight>,
    spare_events: Vec<sys::CUevent>,
    /// Found by a wait of ours (a wrap of the ring) and not yet handed out by `poll`.
    unreported: Settled,
    unchanged: sys::CUfunction,
    pool: sys::CUmemoryPool,
    out: DevBuf,
    scratch: PackScratch,
    /// Decode descriptors and statuses of one restore; grown when a restore needs more.
    descs: DevBuf,
    status: DevBuf,
    flag: DevBuf,
    /// Host time of our synchronous work so far (nanoseconds): waiting for our stream, and the
    /// uploads, launches and readbacks around it; for the engine's debug lines.
    waits: Waits,
    /// Timing events around a synchronous decode's kernel, made when `time_kernels` asks.
    timing: Option<[sys::CUevent; 2]>,
    /// The pinned slabs of chunks in host memory, by the address the device reads them at.
    slabs: std::collections::HashMap<u64, Pinned>,
    /// Slabs of chunks freed, kept for the next moves: a pinned allocation and its free cost
    /// milliseconds a chunk (a move took 37 ms on the H200, docs/PERF.md P80) and a free must
    /// wait for our stream, where a slab reused is stream-ordered after our kernels that read
    /// it last (on our stream, as the copy that fills it again).
    spare_slabs: Vec<Pinned>,
}

/// Where the host time of the packer's synchronous calls went, so far (`Packer::waits`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Waits {
    /// In `cuStreamSynchronize` of our stream (the GPU work queued before, ours and what our
    /// stream was made to wait for).
    pub sync_ns: u64,
    /// Copies of descriptors in and of sizes, offsets and statuses out (and a synchronous
    /// decode's launch).
    pub transfer_ns: u64,
    /// Synchronizations.
    pub syncs: u64,
    /// GPU time of the decode kernels of synchronous decodes (timed by events around them).
    pub decode_kernel_ns: u64,
    /// In the pool's allocations and frees of copy chunks.
    pub pool_ns: u64,
}

// SAFETY: the handles are the driver's, usable from any thread in the context; the engine
// serialises every use behind its lock.
unsafe impl Send for Packer {}

impl Packer {
    /// Device `ordinal`: loads (or compiles) the kernels, creates the stream, the pool and the
    /// scratch. Run it off the program's threads: a first compile takes NVRTC seconds.
    pub fn new(ordinal: i32) -> Result<Packer, GpuError> {
        let gpu = crate::Gpu::new(ordinal)?;
        // SAFETY: the module is loaded; the name is an extern "C" entry point of resident.cu.
        let unchanged = d("cuModuleGetFunction", unsafe { drv::module::get_function(gpu.module, c"ltb_unchanged".into()) })?;
        let mut props: sys::CUmemPoolProps = unsafe_zeroed_props();
        props.allocType = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        props.handleTypes = sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE;
        props.location = sys::CUmemLocation { type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE, id: ordinal };
        // SAFETY: props is a valid, fully initialised pool description.
        let pool = d("cuMemPoolCreate", unsafe { drv::mem_pool::create(&props) })?;
        let descs_cap = 16 * CHUNK / ltblock::format::DEFAULT_BLOCK_SIZE;
        let desc = std::mem::size_of::<DecodeDesc>();
        Ok(Packer {
            ring_descs: Pinned::new(RING_SLOTS * desc)?,
            ring_status: Pinned::new(RING_SLOTS * 4)?,
            ring_dev_descs: gpu.alloc(RING_SLOTS * desc)?,
            ring_head: 0,
            in_flight: std::collections::VecDeque::new(),
            spare_events: Vec::new(),
            unreported: Settled::default(),
            out: gpu.alloc(max_packed_len(CHUNK))?,
            scratch: gpu.pack_scratch(CHUNK)?,
            descs: gpu.alloc(descs_cap * std::mem::size_of::<DecodeDesc>())?,
            status: gpu.alloc(descs_cap * 4)?,
            flag: gpu.alloc(16)?,
            waits: Waits::default(),
            timing: None,
            slabs: Default::default(),
            spare_slabs: Vec::new(),
            gpu,
            unchanged,
            pool,
        })
    }

    /// The library's stream: the caller makes it wait on the program's streams before `pack`.
    pub fn stream(&self) -> u64 {
        self.gpu.stream as u64
    }

    /// Device memory the packer holds for itself.
    pub fn scratch_bytes(&self) -> u64 {
        let s = &self.scratch;
        [&self.out, &s.state, &s.choices, &s.total, &self.descs, &self.status, &self.flag, &self.ring_dev_descs].iter().map(|b| b.len as u64).sum()
    }

    fn sync(&mut self) -> Result<(), GpuError> {
        let t0 = std::time::Instant::now();
        // SAFETY: our own stream.
        let r = d("cuStreamSynchronize", unsafe { drv::stream::synchronize(self.gpu.stream) });
        self.waits.sync_ns += t0.elapsed().as_nanos() as u64;
        self.waits.syncs += 1;
        r
    }

    fn read_u64s(&mut self, ptr: u64, n: usize) -> Result<Vec<u64>, GpuError> {
        let t0 = std::time::Instant::now();
        let mut v = vec![0u64; n];
        // SAFETY: the caller names n u64 of device memory; the stream was synchronized before.
        let r = d("cuMemcpyDtoH", unsafe { drv::memcpy_dtoh_sync(&mut v, ptr) });
        self.waits.transfer_ns += t0.elapsed().as_nanos() as u64;
        r.map(|_| v)
    }

    /// Times the kernels of synchronous decodes too (`Waits::decode_kernel_ns`): two event
    /// records a decode, for debug lines. Events that cannot be made leave them untimed.
    pub fn time_kernels(&mut self, on: bool) {
        match (on, self.timing) {
            (true, None) => self.timing = self.gpu.events().ok().map(|e| [e.0, e.1]),
            (false, Some(t)) => {
                self.timing = None;
                // SAFETY: our events; the stream is synchronized after every timed decode.
                t.iter().for_each(|&e| unsafe {
                    let _ = drv::event::destroy(e);
                });
            }
            _ => {}
        }
    }

    /// The host time of synchronous work so far (`Waits`).
    pub fn waits(&self) -> Waits {
        self.waits
    }

    /// Packs `len` bytes at `input` (16-byte aligned). None when the copy would exceed
    /// `max_len` bytes (not worth packing, or no room for it): checked before each chunk's
    /// memory is taken, so the copy never holds more than `max_len`. The copy decoded once,
    /// every block checked.
    pub fn pack(&mut self, input: u64, len: usize, opts: GpuEncode, max_len: u64) -> Result<Option<PackedCopy>, GpuError> {
        match self.pack_bounded(input, len, opts, &mut |_, _| Some(max_len)) {
            (copy, PackEnd::Whole) => Ok(Some(copy)),
            (copy, PackEnd::OverBound) => {
                self.discard(copy);
                Ok(None)
            }
            (copy, PackEnd::Failed(e)) => {
                self.discard(copy);
                Err(e)
            }
        }
    }

    /// Packs as `pack` does, chunk by chunk, asking `bound(done, copy_len)` before each
    /// chunk how large the whole copy may be once that chunk is in it (`done`: the bytes of
    /// the input the copy holds so far, each read for the last time: the caller may give
    /// their memory back then; None stops the pack). Returns the copy made so far, with how
    /// the pack ended: all of the input, or the chunks before the one that did not fit or
    /// failed, so that a caller that gave memory back can decode them into it again.
    pub fn pack_bounded(&mut self, input: u64, len: usize, opts: GpuEncode, bound: &mut dyn FnMut(u64, u64) -> Option<u64>) -> (PackedCopy, PackEnd) {
        let mut copy = PackedCopy { chunks: Vec::new() };
        let mut off = 0usize;
        while off < len {
            let n = CHUNK.min(len - off);
            let Some(max_len) = bound(off as u64, copy.packed_len()) else { return (copy, PackEnd::OverBound) };
            let room = max_len.saturating_sub(copy.packed_len());
            match self.pack_chunk(input + off as u64, n, opts, room) {
                Ok(Some(chunk)) => copy.chunks.push(chunk),
                Ok(None) => return (copy, PackEnd::OverBound),
                Err(e) => return (copy, PackEnd::Failed(e)),
            }
            off += n;
        }
        (copy, PackEnd::Whole)
    }

    /// One chunk into the copy; None when its packed bytes would pass `room`.
    fn pack_chunk(&mut self, input: u64, n: usize, opts: GpuEncode, room: u64) -> Result<Option<PackedChunk>, GpuError> {
        let mut params: EncodeParams = self.gpu.params(input, n, opts)?;
        self.gpu.pack_launch(&mut params, self.out.ptr, &self.scratch)?;
        self.sync()?;
        let packed_len = self.read_u64s(self.scratch.total.ptr, 1)?[0] as usize;
        if packed_len.max(16) as u64 > room {
            return Ok(None);
        }
        let count = n.div_ceil(ltblock::format::DEFAULT_BLOCK_SIZE);
        let offsets = self.read_u64s(self.out.ptr + ltblock::format::BUFFER_HEADER as u64, count + 1)?;
        let choices = self.read_u64s(self.scratch.choices.ptr, count * 2)?;
        let stream = self.gpu.stream;
        // SAFETY: our pool and stream; the memory is used on this stream only.
        let t0 = std::time::Instant::now();
        let ptr = d("cuMemAllocFromPoolAsync", unsafe { drv::mem_pool::alloc_async(self.pool, packed_len.max(16), stream) });
        self.waits.pool_ns += t0.elapsed().as_nanos() as u64;
        let ptr = ptr?;
        // SAFETY: both ranges hold packed_len bytes; stream-ordered after the encode.
        d("cuMemcpyDtoDAsync", unsafe { drv::memcpy_dtod_async(ptr, self.out.ptr, packed_len, stream) })?;
        let mut chunk = PackedChunk { ptr, host: 0, slab: 0, len: packed_len, original: n, offsets, by_codec: [(0, 0); 8] };
        // verify: decode the copy into the scratch, every block's checksum checked
        if let Err(e) = self.decode_chunks(std::slice::from_ref(&chunk), &[self.out.ptr]) {
            self.free_chunk(&chunk);
            return Err(e);
        }
        for b in 0..count {
            let (codec, payload) = (choices[2 * b] as u32, (choices[2 * b] >> 32) as u64);
            let original = (n - b * ltblock::format::DEFAULT_BLOCK_SIZE).min(ltblock::format::DEFAULT_BLOCK_SIZE) as u64;
            let slot = &mut chunk.by_codec[(codec as usize).min(7)];
            slot.0 += original;
            slot.1 += payload + 32;
        }
        Ok(Some(chunk))
    }

    /// Decodes `copy` into `out` (the buffer's own address), every block checked, and waits.
    pub fn restore(&mut self, copy: &PackedCopy, out: u64) -> Result<(), GpuError> {
        self.decode_chunks(&copy.chunks, &outs_of(copy, out))
    }

    /// Queues the decode of `copy` into `out` and returns the event it ends with (an event of
    /// ours, alive while the packer is: waiting on it after it was reused only waits longer).
    /// `tag` names the restore in `poll`'s answer.
    pub fn restore_async(&mut self, copy: &PackedCopy, out: u64, tag: u64) -> Result<u64, GpuError> {
        let descs = descs_of(&copy.chunks, &outs_of(copy, out));
        let count = descs.len() / 3;
        if count > RING_SLOTS {
            self.restore(copy, out)?;
            return self.record_event(tag, 0, 0);
        }
        if self.ring_head + count > RING_SLOTS {
            // every slot free again
            self.sync()?;
            self.check_completed();
            self.ring_head = 0;
        }
        let first = self.ring_head;
        let size = std::mem::size_of::<DecodeDesc>();
        // SAFETY: slots [first, first + count) are free (a wrap settles every restore first);
        // the staging memory is ours and holds RING_SLOTS descriptors; the statuses are zeroed
        // so that an unwritten status reads as a failure.
        unsafe {
            std::ptr::copy_nonoverlapping(descs.as_ptr() as *const u8, self.ring_descs.host.add(first * size), count * size);
            std::ptr::write_bytes(self.ring_status.host.add(first * 4), 0xff, count * 4);
        }
        let stream = self.gpu.stream;
        let dev_descs = self.ring_dev_descs.ptr + (first * size) as u64;
        // SAFETY: pinned source and device destination both hold count descriptors; the copy
        // is stream-ordered before the kernel that reads them.
        d("cuMemcpyHtoDAsync", unsafe { sys::cuMemcpyHtoDAsync_v2(dev_descs, self.ring_descs.host.add(first * size) as *const c_void, count * size, stream).result() })?;
        let (mut dptr, mut sptr) = (dev_descs, self.ring_status.dev + (first * 4) as u64);
        self.gpu.launch(self.gpu.decode, count as u32, 0, &mut [&mut dptr as *mut _ as *mut c_void, &mut sptr as *mut _ as *mut c_void])?;
        self.ring_head += count;
        self.record_event(tag, first, count)
    }

    fn record_event(&mut self, tag: u64, first: usize, count: usize) -> Result<u64, GpuError> {
        if self.spare_events.is_empty() && self.in_flight.len() >= RING_EVENTS {
            // as many in flight as we keep events for: wait for the oldest, and check it
            let oldest = self.in_flight.front().map(|f| f.event).expect("RING_EVENTS > 0");
            // SAFETY: the oldest restore's event, ours.
            d("cuEventSynchronize", unsafe { drv::event::synchronize(oldest) })?;
            self.check_completed();
        }
        let event = match self.spare_events.pop() {
            Some(e) => e,
            None => d("cuEventCreate", drv::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))?,
        };
        // SAFETY: our event and stream.
        if let Err(e) = d("cuEventRecord", unsafe { drv::event::record(event, self.gpu.stream) }) {
            self.spare_events.push(event);
            return Err(e);
        }
        self.in_flight.push_back(InFlight { tag, first, count, event });
        Ok(event as u64)
    }

    /// The restores that have completed since the last poll, checked.
    pub fn poll(&mut self) -> Settled {
        self.check_completed();
        std::mem::take(&mut self.unreported)
    }

    fn check_completed(&mut self) {
        let settled = &mut self.unreported;
        while let Some(f) = self.in_flight.front() {
            // SAFETY: our event.
            if unsafe { sys::cuEventQuery(f.event) } != sys::CUresult::CUDA_SUCCESS {
                break;
            }
            let f = self.in_flight.pop_front().expect("front exists");
            // SAFETY: the kernel that wrote these statuses has completed (its event has).
            let st = unsafe { std::slice::from_raw_parts(self.ring_status.host.add(f.first * 4) as *const u32, f.count) };
            if let Some(i) = st.iter().position(|&s| s != 0) {
                settled.failed.push((f.tag, i, st[i]));
            }
            settled.done.push((f.tag, f.event as u64));
            self.spare_events.push(f.event);
        }
    }

    /// The event of the latest restore in flight: waiting on it waits for every one (our
    /// stream runs them in order).
    pub fn latest_restore(&self) -> Option<u64> {
        self.in_flight.back().map(|f| f.event as u64)
    }

    fn decode_chunks(&mut self, chunks: &[PackedChunk], outs: &[u64]) -> Result<(), GpuError> {
        let descs = descs_of(chunks, outs);
        let count = descs.len() / 3;
        if count * std::mem::size_of::<DecodeDesc>() > self.descs.len {
            // both or neither: a larger descriptor buffer beside a small status one would let
            // the kernel write past the statuses
            let (descs, status) = (self.gpu.alloc(count * std::mem::size_of::<DecodeDesc>())?, self.gpu.alloc(count * 4)?);
            self.descs = descs;
            self.status = status;
        }
        let stream = self.gpu.stream;
        let t0 = std::time::Instant::now();
        // SAFETY: descs fits the device buffer (grown above); the host vector outlives the
        // copy because the stream is synchronized below before it is dropped.
        d("cuMemcpyHtoDAsync", unsafe { drv::memcpy_htod_async(self.descs.ptr, &descs, stream) })?;
        let (mut dptr, mut sptr) = (self.descs.ptr, self.status.ptr);
        // SAFETY: our events and stream (the timing is for debug lines: a failure is ignored).
        let timed = self.timing.is_some_and(|t| unsafe { drv::event::record(t[0], stream) }.is_ok());
        self.gpu.launch(self.gpu.decode, count as u32, 0, &mut [&mut dptr as *mut _ as *mut c_void, &mut sptr as *mut _ as *mut c_void])?;
        let timing = self.timing.filter(|_| timed);
        // SAFETY: as above.
        let timed = timing.is_some_and(|t| unsafe { drv::event::record(t[1], stream) }.is_ok());
        self.waits.transfer_ns += t0.elapsed().as_nanos() as u64;
        self.sync()?;
        if let Some(t) = timing.filter(|_| timed) {
            // SAFETY: both events recorded on our stream, which was just synchronized.
            if let Ok(ms) = unsafe { drv::event::elapsed(t[0], t[1]) } {
                self.waits.decode_kernel_ns += (ms as f64 * 1e6) as u64;
            }
        }
        let t1 = std::time::Instant::now();
        let mut st = vec![0u32; count];
        // SAFETY: count statuses were written by the kernel just synchronized.
        d("cuMemcpyDtoH", unsafe { drv::memcpy_dtoh_sync(&mut st, self.status.ptr) })?;
        self.waits.transfer_ns += t1.elapsed().as_nanos() as u64;
        match st.iter().position(|&s| s != 0) {
            Some(i) => Err(GpuError::Block { block: i, status: st[i] }),
            None => Ok(()),
        }
    }

    /// True when the `len` bytes at `data` still equal what `copy` decodes to.
    pub fn unchanged(&mut self, copy: &PackedCopy, data: u64) -> Result<bool, GpuError> {
        let stream = self.gpu.stream;
        // SAFETY: our flag word.
        d("cuMemsetD8Async", unsafe { sys::cuMemsetD8Async(self.flag.ptr, 0, 4, stream).result() })?;
        let mut off = 0u64;
        for c in &copy.chunks {
            let (mut packed, mut src, mut len, mut flag) = (c.ptr, data + off, c.original as u64, self.flag.ptr);
            let blocks = (c.offsets.len() - 1) as u32;
            self.gpu.launch(
                self.unchanged,
                blocks,
                0,
                &mut [&mut packed as *mut _ as *mut c_void, &mut src as *mut _ as *mut c_void, &mut len as *mut _ as *mut c_void, &mut flag as *mut _ as *mut c_void],
            )?;
            off += c.original as u64;
        }
        self.sync()?;
        Ok(self.read_u64s(self.flag.ptr, 1)?[0] as u32 == 0)
    }

    /// Moves `copy`'s chunks in device memory into pinned host memory, first chunk first (so
    /// that `truncate` still finds device chunks at its end), until `need` device bytes are
    /// given back or the next chunk's slab would pass `host_room` bytes of pinned memory (this
    /// packer's spare slabs count as room: they are reused first); the device bytes given
    /// back, which are the driver's again when this returns. A chunk in host memory decodes and
    /// checks as before: the kernels read it through its mapping, over the bus. An error leaves
    /// the chunks moved before it in host memory (`host_len` counts them).
    pub fn move_to_host(&mut self, copy: &mut PackedCopy, need: u64, host_room: u64) -> Result<u64, GpuError> {
        let (mut freed, mut taken) = (0u64, 0u64);
        let stream = self.gpu.stream;
        let (mut result, mut queued) = (Ok(()), false);
        for i in 0..copy.chunks.len() {
            let c = &copy.chunks[i];
            if c.host != 0 {
                continue;
            }
            if freed >= need || taken + c.len as u64 > host_room {
                break;
            }
            let pinned = match self.take_slab(c.len, host_room - taken) {
                Ok(Some(p)) => p,
                Ok(None) => break, // its slab would pass the room
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            // SAFETY: the pinned memory holds at least c.len bytes, as the chunk; the copy is
            // stream-ordered after our work that wrote the chunk and before its free (and after
            // our kernels that read the slab's last chunk, if it held one).
            if let Err(e) = d("cuMemcpyDtoHAsync", unsafe { sys::cuMemcpyDtoHAsync_v2(pinned.host as *mut c_void, c.ptr, c.len, stream).result() }) {
                self.put_spare(pinned);
                result = Err(e);
                break;
            }
            queued = true;
            let device = PackedChunk { ptr: c.ptr, host: 0, slab: 0, len: c.len, original: 0, offsets: Vec::new(), by_codec: [(0, 0); 8] };
            self.free_chunk(&device);
            let c = &mut copy.chunks[i];
            (c.ptr, c.host, c.slab) = (pinned.dev, pinned.host as u64, pinned.len);
            freed += c.len as u64;
            taken += pinned.len as u64;
            self.slabs.insert(pinned.dev, pinned); // until `free_chunk` gives it back
        }
        // (the copies done and the pool's memory back with the driver)
        if queued {
            self.sync()?;
        }
        result.map(|_| freed)
    }

    /// Pinned bytes kept for the next moves (slabs of chunks freed).
    pub fn spare_host_bytes(&self) -> u64 {
        self.spare_slabs.iter().map(|p| p.len as u64).sum()
    }

    fn put_spare(&mut self, p: Pinned) {
        SPARE.add(p.len as u64);
        self.spare_slabs.push(p);
    }

    fn take_spare(&mut self, i: usize) -> Pinned {
        let p = self.spare_slabs.swap_remove(i);
        SPARE.sub(p.len as u64);
        p
    }

    /// A pinned slab for a chunk of `len` bytes: a spare one that fits, or a new one within
    /// `room` beside the spares kept (those that cannot hold this chunk are freed first, then
    /// the others, until it fits); None when even with no spare left its slab would pass it.
    fn take_slab(&mut self, len: usize, room: u64) -> Result<Option<Pinned>, GpuError> {
        let best = self.spare_slabs.iter().enumerate().filter(|(_, p)| slab_fits(p.len, len)).min_by_key(|(_, p)| p.len).map(|(i, _)| i);
        if let Some(i) = best {
            return Ok(Some(self.take_spare(i)));
        }
        let cap = slab_for(len);
        if cap as u64 > room {
            return Ok(None);
        }
        if self.spare_host_bytes() > room - cap as u64 {
            // host memory is freed at once, not in stream order: our work reading it first
            self.sync()?;
            // (the ones too small for this chunk first: they fit fewer chunks to come)
            self.spare_slabs.sort_unstable_by_key(|p| std::cmp::Reverse((p.len >= len, p.len)));
            while self.spare_host_bytes() > room - cap as u64 {
                let last = self.spare_slabs.len() - 1;
                drop(self.take_spare(last));
            }
        }
        Pinned::new(cap).map(Some)
    }

    /// Frees every spare slab (host copies are off, or the engine drains): none waits for a
    /// next move that will not come.
    pub fn free_spare_slabs(&mut self) {
        if self.spare_slabs.is_empty() {
            return;
        }
        // host memory is freed at once, not in stream order: our work reading it first
        let _ = self.sync();
        while let Some(i) = self.spare_slabs.len().checked_sub(1) {
            drop(self.take_spare(i));
        }
    }

    fn free_chunk(&mut self, c: &PackedChunk) {
        if c.host != 0 {
            // kept for the next move (our kernels that read it are ahead of that move's copy
            // on our stream)
            if let Some(p) = self.slabs.remove(&c.ptr) {
                self.put_spare(p);
            }
            return;
        }
        let t0 = std::time::Instant::now();
        // SAFETY: pool memory of ours, freed once, in stream order after its last use.
        let _ = unsafe { drv::free_async(c.ptr, self.gpu.stream) };
        self.waits.pool_ns += t0.elapsed().as_nanos() as u64;
    }

    /// Gives the device memory of `copy`'s last chunks back until `need` bytes are (or every
    /// chunk in device memory is: chunks in host memory, its first ones, stay); the bytes given
    /// back. The chunks left still decode the buffer's first bytes.
    pub fn truncate(&mut self, copy: &mut PackedCopy, need: u64) -> u64 {
        let mut freed = 0u64;
        while freed < need && copy.chunks.last().is_some_and(|c| c.host == 0) {
            let Some(c) = copy.chunks.pop() else { break };
            self.free_chunk(&c);
            freed += c.len as u64;
        }
        let _ = self.sync();
        freed
    }

    /// Gives a copy's memory back (stream-ordered: after anything of ours that reads it).
    pub fn discard(&mut self, copy: PackedCopy) {
        for c in &copy.chunks {
            self.free_chunk(c);
        }
        let _ = self.sync();
    }
}

/// Where each chunk of a copy decodes to, for a buffer at `out`.
fn outs_of(copy: &PackedCopy, out: u64) -> Vec<u64> {
    let mut outs = Vec::with_capacity(copy.chunks.len());
    let mut off = 0u64;
    for c in &copy.chunks {
        outs.push(out + off);
        off += c.original as u64;
    }
    outs
}

/// Decode descriptors (block, out, extent) of every block of `chunks`, as u64 triples.
fn descs_of(chunks: &[PackedChunk], outs: &[u64]) -> Vec<u64> {
    let block = ltblock::format::DEFAULT_BLOCK_SIZE as u64;
    let mut descs: Vec<u64> = Vec::new();
    for (c, &out) in chunks.iter().zip(outs) {
        for (b, o) in c.offsets.windows(2).enumerate() {
            descs.extend_from_slice(&[c.ptr + o[0], out + b as u64 * block, o[1] - o[0]]);
        }
    }
    descs
}

fn unsafe_zeroed_props() -> sys::CUmemPoolProps {
    // SAFETY: a plain C struct of integers, enums whose zero is a valid value, and a pointer.
    unsafe { std::mem::zeroed() }
}

/// The pool's memory goes back to the driver on the next synchronize once unused: we keep no
/// release threshold (zero is the default), so a discarded copy stops counting at once.
impl Drop for Packer {
    fn drop(&mut self) {
        self.free_spare_slabs();
        let _ = self.sync();
        self.time_kernels(false);
        for e in self.spare_events.drain(..).chain(self.in_flight.drain(..).map(|f| f.event)) {
            // SAFETY: our events, nothing in flight after the sync.
            let _ = unsafe { drv::event::destroy(e) };
        }
        // SAFETY: the pool is ours; every allocation from it is freed by then or dies with it.
        let _ = unsafe { drv::mem_pool::destroy(self.pool) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_slab_takes_a_chunk_no_larger_and_not_much_smaller() {
        let mib = 1 << 20;
        assert!(slab_fits(64 * mib, 64 * mib));
        assert!(!slab_fits(64 * mib, 64 * mib + 1), "too small");
        assert!(slab_fits(64 * mib, 55 * mib), "within an eighth and a rounding");
        assert!(!slab_fits(64 * mib, 50 * mib), "a fifth of it would be idle");
        assert!(slab_fits(64 << 10, 1), "one rounding over a tiny chunk");
        assert!(!slab_fits(2 * mib, 220 << 10), "a small chunk does not take a 2 MiB slab");
    }

    #[test]
    fn a_new_slab_is_at_most_a_sixteenth_of_a_power_of_two_over_its_chunk() {
        for len in [1usize, 64 << 10, 220 << 10, (2 << 20) + 1, 43 << 20, 64 << 20] {
            let (r, cap) = (slab_round(len), slab_for(len));
            assert!(cap >= len && cap - len < r && (r == 64 << 10 || r * 16 == len.next_power_of_two()), "{len}: {cap}");
            assert!(slab_fits(cap, len), "{len}: its own slab fits it");
        }
    }
}
