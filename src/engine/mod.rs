//! The packing engine: VMM-backed allocations, pack, restore, drain (docs/ARCHITECTURE.md,
//! "The packing engine", says the states, the locks and the ordering).
//!
//! One lock (`Engine::inner`) serialises every change of a buffer's residency and every use
//! of our stream and scratch; it is held across our own driver calls (VMM, our stream) but
//! never across a call of the program's (a hook's real function), and no hook runs while it
//! is held on this thread (the thread guard is BUSY, so nested hooks pass straight through).
//! Hooks read a buffer's state without it (an atomic) and count themselves as its users
//! between their residency check and the return of their real call; the packer takes only
//! buffers whose user count is zero after it set their state to PACKING (both SeqCst, so a
//! hook either sees PACKING and waits for the lock, or the packer sees its count). The one
//! exception: a drop of the packing-ahead thread (`ahead`) does its waits and VMM calls
//! between two holds of the lock, its buffer PACKING meanwhile, and `Engine::lock` waits for
//! it to end, so no other holder of the lock sees it half done.
mod ahead;
pub mod budget;
mod idle;

use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use parking_lot::Mutex;

use crate::config::{Config, Limit, Mode};
use crate::cuda_abi::*;
use crate::gpu::codec::{Backend, CodecFailure, PackEnd, PackOptions, PackedCopy};
use crate::gpu::driver::{self, WorkScope};
use crate::gpu::vmm;
use crate::registry::{flag, state, Backing, Buffer, Origin, REGISTRY};
use crate::stats::CodecWork;
use budget::{Budget, Part, BUDGETS};

/// Flags that keep a buffer resident (docs/SAFETY.md).
pub const KEEP_RESIDENT: u32 =
    flag::OPAQUE | flag::POINTED_FROM_DEVICE | flag::GRAPH | flag::EXPORTED | flag::PINNED | flag::USER_MAPPED | flag::CAPTURED;

/// What the engine keeps of a buffer it allocated.
struct Entry {
    buf: Arc<Buffer>,
    reserved: u64,
    /// The length of the pieces its physical memory comes in (`vmm::pieces`): `reserved` for
    /// one piece, the codec's chunk for a large buffer (`Inner::piece_for`).
    piece: u64,
    /// The handles of its mapped pieces, in address order: all of them while it is resident,
    /// none while packed, and while a pack gives them back one by one, the last ones.
    phys: Vec<u64>,
    /// The packed copy: the buffer's bytes while packed, kept after a restore so that
    /// re-packing an unchanged buffer costs one checksum pass.
    copy: Option<PackedCopy>,
    /// Packs that did not shrink it enough, and the run of uses of the last one.
    refused: u8,
    /// The last use before the last refusal (tried again once used since).
    refused_at: u64,
    /// The last check found its bytes changed since its kept copy was made (an activation):
    /// such copies are thrown away first when room is needed, and that clears it, so the copy
    /// made next is checked before it can be thrown away unread again. A buffer that calls
    /// named as possibly written but that never changed (an embedding table a lookup kernel
    /// reads, a weight a launch reads) keeps its copy, and its next pack costs a check instead
    /// of an encode. (It once stayed set for good: the 3B model's weights, changed once while
    /// the model was built, were encoded again at every decode step.)
    seen_changed: bool,
    /// The kept copy was made by an encode that allowed loss. If no block of it went lossy
    /// (the data was not worth int8g, or failed its error bound), encoding it again would make
    /// the same lossless copy: it is kept, not made again at every pack (`copy_goes_lossy`).
    copy_tried_lossy: bool,
    /// The use sequence number (`residency::seq_now`) at which it was last made resident: its
    /// restore, or for a buffer never packed its allocation (such a buffer has no copy, and the
    /// restore that follows its first pack sets this again). See `survivor`.
    resident_since: u64,
    /// Why its next encode is needed, while it has no copy (counted in the stats).
    next_encode: EncodeCause,
    /// Its bytes came, at some point, from a lossy copy (a restore decoded int8g blocks).
    decoded_lossy: bool,
    /// Such bytes were then written (a training step updated a quantized weight): from then on
    /// it packs lossless only. Quantizing it again would add a new error to the one already in
    /// it, every step, beyond the bound `LTSHIM_INT8_MAX_ERR` measured once: on the H200 a
    /// training run in lossy mode ended with a NaN loss that way (docs/PERF.md P29).
    lossy_barred: bool,
    /// Its last whole copy's size over its own (0 until one is made): what packing it again
    /// is likely to free (`move_far_copies_to_host`).
    shrinks_to: f32,
}

impl Entry {
    /// Its kept copy is lossless and its next pack makes it again, lossy, once: the mode allows
    /// loss, a GEMM named it as floats, it is clean (only read: a weight), and the copy came
    /// from a lossless encode. A drop that reuses such a copy would keep every weight at its
    /// lossless size for good; one that came from a lossy encode already had its chance.
    fn copy_goes_lossy(&self, opts: &PackOptions) -> bool {
        let b = &self.buf;
        opts.lossy
            && !self.lossy_barred
            && b.floats_read_whole().is_some()
            && b.is_clean()
            && !self.copy_tried_lossy
            && self.copy.as_ref().is_some_and(|c| !c.is_lossy())
    }

    /// Its kept copy is likely to serve its next pack as it is (no encode): there is one, it is
    /// not to be made again lossy, and it is not a written buffer's that a check found changed
    /// before.
    fn copy_serves(&self, opts: &PackOptions) -> bool {
        self.copy_whole() && !self.copy_goes_lossy(opts) && (!self.seen_changed || self.buf.is_clean())
    }

    /// It has a kept copy of all of its bytes (not one `discard_kept_copy` shortened).
    fn copy_whole(&self) -> bool {
        self.copy.as_ref().is_some_and(|c| c.original_len() >= self.buf.size)
    }

    /// `copy`, of the bytes after those its kept copy holds (all of them if none), becomes
    /// part of that copy.
    fn extend_copy(&mut self, copy: PackedCopy) {
        match self.copy.as_mut() {
            Some(kept) => kept.append(copy),
            None => self.copy = Some(copy),
        }
    }

    /// Remembers what its copy, now whole, shrank it to.
    fn note_shrink(&mut self) {
        if let Some(c) = self.copy.as_ref().filter(|_| self.copy_whole()) {
            self.shrinks_to = c.packed_len() as f32 / self.buf.size.max(1) as f32;
        }
    }

    /// It stayed resident through a reuse period since it was last made resident: used again
    /// at least half a period after that (`last_seq >= resident_since + period / 2`). The call
    /// that needed the restore is its use at `resident_since - 1`, and the uses of the same burst
    /// follow it closely, so a buffer that cycles (restored for a use, packed before the next)
    /// never qualifies; the next use a period on does, with half a period of slack for periods
    /// that jitter (the period follows the longest recent gaps, so the next gap is often a bit
    /// shorter). A buffer restored ahead is restored a small part of a period before its use
    /// (the window holds twice the headroom), so that use does not qualify it either. The
    /// policy keeps such buffers resident step after step (policy.rs), so their kept copies are
    /// memory that buys nothing: `make_room` and the thread that works ahead throw them away
    /// before they pack or drop any victim (`Kept::OfSurvivor`). Never for a buffer used once
    /// (period 0).
    fn survivor(&self) -> bool {
        let period = self.buf.period.load(Ordering::Relaxed);
        period > 0 && self.buf.last_seq.load(Ordering::Relaxed) >= self.resident_since + period / 2
    }

    /// May be packed now: resident, mapped, unflagged, unused, and not refused as
    /// incompressible (three times, or with no use since the last refusal).
    fn eligible(&self) -> bool {
        let b = &self.buf;
        !self.phys.is_empty()
            && b.state() == state::RESIDENT
            && !b.has_flag(KEEP_RESIDENT)
            && b.users.load(Ordering::SeqCst) == 0
            && (self.refused == 0 || (self.refused < 3 && b.last_seq.load(Ordering::Relaxed) != self.refused_at))
    }
}

struct Inner {
    dev: c_int,
    /// This device's held bytes against its limit (`BUDGETS[dev]`, kept as a field so that it
    /// can be borrowed beside the entries and the backend).
    budget: &'static Budget,
    /// The devices our mappings let read and write: `dev`, then each peer the program enabled
    /// access to `dev` from (`hooks::peer`).
    access: Vec<c_int>,
    ctx: Handle,
    granularity: u64,
    /// The codec's chunk (`Backend::chunk_bytes`): buffers of two or more are backed in
    /// pieces of it.
    piece: u64,
    backend: Option<Backend>,
    entries: HashMap<u64, Entry>,
    opts: PackOptions,
    min_saving: f64,
    /// Restores queued on our stream and not yet checked: tag -> buffer address.
    in_flight: HashMap<u64, u64>,
    next_tag: u64,
    /// While a restore makes room: the size it maps, and the physical memory of a victim of
    /// exactly that size, handed over instead of released and created again (the H200
    /// measured cuMemCreate + cuMemRelease at 26-440 us a buffer).
    wanted: u64,
    handoff: Option<u64>,
    /// A drop of `ahead` is between its phases (its buffer PACKING, its memory going).
    dropping: bool,
    /// Buffers `ahead` restored that no call has named since: (address, its `last_seq`
    /// then). They are not dropped ahead again, and they fill its window.
    ahead_unused: Vec<(u64, u64)>,
    /// `LTSHIM_HOST_COPIES` in bytes: the most host memory copies may move to, over every
    /// device (`move_copies_to_host`).
    host_copies: u64,
}

impl Inner {
    /// The piece length of a buffer of `reserved` bytes: the codec's chunk when it holds two
    /// or more, so that a pack gives each piece back once its chunk is in the copy; else one
    /// piece (each piece costs its own VMM calls at every pack and restore).
    fn piece_for(&self, reserved: u64) -> u64 {
        if reserved >= 2 * self.piece {
            self.piece
        } else {
            reserved
        }
    }
}

// SAFETY: the context handle is the driver's (usable from any thread); the engine is only
// used behind its mutex.
unsafe impl Send for Inner {}

pub struct Engine {
    inner: Mutex<Inner>,
    dev: c_int,
    /// The same as `Inner::budget`, read without the lock (`cudaMemGetInfo`, the stats).
    pub budget: &'static Budget,
    /// Set once packing is off for good (an internal failure): buffers stay where they are,
    /// frees still come here.
    drained: AtomicBool,
    /// The thread of `ahead` runs.
    ahead: AtomicBool,
}

/// The most devices packed (ordinals from 0); buffers of a device past them pass through.
pub const MAX_DEVICES: usize = 16;

/// One engine a device, each started on the first call in a packing mode that allocates there
/// (issue 13: each device of a process packs its own buffers under its own limit).
static ENGINES: [OnceCell<Option<Engine>>; MAX_DEVICES] = [const { OnceCell::new() }; MAX_DEVICES];
/// Signalled when a drop of `ahead` ends, one a device. (Each condvar here is waited on with
/// one device's mutex only: parking_lot panics when one condvar meets two mutexes, which a
/// shared condvar did as soon as two engines had threads waiting.)
static DROPPED: [parking_lot::Condvar; MAX_DEVICES] = [const { parking_lot::Condvar::new() }; MAX_DEVICES];
/// The backend a background thread makes for each device (the GPU kernels), installed by the
/// next locker of that device's engine.
static KERNELS: [Mutex<Kernels>; MAX_DEVICES] = [const { Mutex::new(Kernels::NotStarted) }; MAX_DEVICES];
static KERNELS_DONE: [parking_lot::Condvar; MAX_DEVICES] = [const { parking_lot::Condvar::new() }; MAX_DEVICES];

enum Kernels {
    NotStarted,
    Loading,
    Ready(Backend),
    Taken,
    Failed,
}

/// How long an allocation that needs packing waits for the kernels (a first NVRTC compile on
/// a machine takes ~25 s; later runs load the cached cubin in about a second).
const KERNEL_WAIT: std::time::Duration = std::time::Duration::from_secs(120);
/// Streams that ran a launch whose buffers we could not read: every pack waits for them.
static OPAQUE_STREAMS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Calls under way that may touch any buffer (`OpaqueCall`): nothing is packed meanwhile.
static OPAQUE_CALLS: AtomicUsize = AtomicUsize::new(0);
/// Last time (coarse ns) the program made a call that names buffers: idle packing's clock.
pub static LAST_CALL_NS: AtomicU64 = AtomicU64::new(0);

/// The engine of the calling thread's current device, started on the first call in a packing
/// mode that finds a current context there; None in the other modes, without a context, on a
/// device past `MAX_DEVICES`, or when it cannot start.
pub fn get() -> Option<&'static Engine> {
    let config = crate::state::config()?;
    if !config.mode.packs() {
        return None;
    }
    let dev = driver::current_device()?;
    let cell = ENGINES.get(usize::try_from(dev).ok()?)?;
    if let Some(e) = cell.get() {
        return e.as_ref();
    }
    let mut started = false;
    let e = cell
        .get_or_init(|| {
            started = true;
            Engine::start(config, dev)
        })
        .as_ref();
    if let (true, Some(e)) = (started, e) {
        if e.inner.lock().backend.is_none() {
            start_kernels(dev);
        }
        // a peer enabled while it started (after it read the grants) gets in too
        for peer in crate::hooks::peer::accessors_of(dev) {
            e.peer_access(peer);
        }
        if e.budget.explicit.load(Ordering::Relaxed) {
            e.start_ahead();
        }
        if config.idle_ms > 0 {
            idle::start(config.idle_ms, config.cold_ms);
        }
    }
    e
}

/// The engine of device `dev` if it already runs (never starts it).
pub fn on_device(dev: c_int) -> Option<&'static Engine> {
    ENGINES.get(usize::try_from(dev).ok()?)?.get()?.as_ref()
}

/// The engine of the calling thread's current device if it already runs.
pub fn current() -> Option<&'static Engine> {
    on_device(driver::current_device()?)
}

/// Every engine that runs, in device order.
pub fn all() -> impl Iterator<Item = &'static Engine> {
    ENGINES.iter().filter_map(|c| c.get().and_then(|e| e.as_ref()))
}

/// Some engine runs.
pub fn any_running() -> bool {
    all().next().is_some()
}

/// The engine that allocated `buf` (a VMM buffer knows its device).
pub fn of_buffer(buf: &Buffer) -> Option<&'static Engine> {
    on_device(buf.device.load(Ordering::Relaxed))
}

/// How far down the policy's order a victim of the size a restore needs is preferred.
const SAME_SIZE_LOOKAHEAD: usize = 4;

/// How many victims `Pass::InRoom` encodes before it gives up.
const IN_ROOM_TRIES: usize = 4;

/// Which victims `pack_one` may take.
#[derive(Clone, Copy)]
enum Pass {
    /// In the policy's order, only one whose new copy (at its largest) fits beside it under
    /// the limit: a copy exists before the buffer's memory goes back.
    Fitting,
    /// Any, the smallest first, if its copy turns out to fit in the room left (the encode
    /// stops as soon as it would not): the limit is never passed, even for a moment.
    InRoom,
    /// Any, the smallest first, its copy unbounded: the limit is passed for a moment, by that
    /// copy (a buffer whose copy is larger than all the room there is; counted, said once).
    OverLimit,
    /// Any, in the policy's order (the card itself is full: the limit is not the question).
    Any,
}

/// Where a restore's room comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Other buffers may be packed for it (a call of the program needs it).
    Evict,
    /// Only kept copies may go, and past that it comes back over the limit (a call that may
    /// touch any buffer is coming, so none may be packed).
    OverLimit,
    /// Only what is free now, or it stays packed (a restore ahead of need).
    Free,
}

/// Held by an engine while it weighs and fills the host memory for packed copies, which is
/// bounded over every device (`LTSHIM_HOST_COPIES`): taken under an engine's lock, and no engine
/// lock is taken under it.
static HOST_ROOM: Mutex<()> = Mutex::new(());

/// Why packed copies move to host memory (`Engine::move_copies_to_host`).
#[derive(Clone, Copy, Debug)]
enum ToHost {
    /// Nothing else gives room: the coldest first (the least recently used), host memory
    /// held beside resident buffers freed for them.
    LastRoom,
    /// Instead of encoding a victim needed within `beyond` uses' time
    /// (`Engine::move_far_copies_to_host`): those predicted to be needed later, the furthest
    /// first.
    Far { beyond: u64 },
}

/// Which kept copies `discard_kept_copy` may take (also why one went, in the stats).
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Kept {
    /// Of buffers written since their restore that a check once found changed (likely stale).
    OfWritten,
    /// Of survivors (`Entry::survivor`): buffers the policy keeps resident, which their copy
    /// does not serve.
    OfSurvivor,
    /// Lossless ones.
    Lossless,
    Any,
    /// Any holding host memory, the largest there first, whole: room in host memory for the
    /// copies of packed buffers (`move_copies_to_host`), which hold those buffers' only bytes.
    ForHostRoom,
}

impl Kept {
    /// The names the stats report them by (`copies_discarded`).
    pub const ALL: [(Kept, &'static str); 5] = [(Kept::OfWritten, "of_written"), (Kept::OfSurvivor, "of_survivor"), (Kept::Lossless, "lossless"), (Kept::Any, "any"), (Kept::ForHostRoom, "for_host_room")];
}

/// Why a pack encoded: what left the buffer without a copy that could serve (the stats count
/// encodes by it, so that a run says what re-encodes).
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum EncodeCause {
    /// Never packed before.
    First,
    /// Its bytes changed since its copy was made: a check found the kept copy changed, or that
    /// copy was thrown away as `Kept::OfWritten` (written since, and found changed before).
    Changed,
    /// Its copy was thrown away for room (`discard_kept_copy`, any other reason).
    Discarded,
    /// Its lossless copy was made again, lossy (`Entry::copy_goes_lossy`).
    ToLossy,
}

impl EncodeCause {
    /// The names the stats report them by (`encodes_by_cause`).
    pub const ALL: [(EncodeCause, &'static str); 4] =
        [(EncodeCause::First, "first"), (EncodeCause::Changed, "changed"), (EncodeCause::Discarded, "discarded"), (EncodeCause::ToLossy, "to_lossy")];

    pub fn name(self) -> &'static str {
        EncodeCause::ALL[self as usize].1
    }
}

/// Outcome of one pack.
enum Packed {
    /// The buffer's memory was given back.
    Done,
    /// Not packed, nothing changed (busy, flagged, not worth it).
    Skipped,
}

impl Engine {
    fn start(config: &Config, dev: c_int) -> Option<Engine> {
        let ctx = match driver::primary_context(dev) {
            Ok(c) => c,
            Err(e) => {
                crate::warn_once!("packing is off: {e}");
                return None;
            }
        };
        let granularity = match vmm::granularity(dev) {
            Ok(g) => g,
            Err(e) => {
                crate::warn_once!("packing is off: this device has no VMM ({e})");
                return None;
            }
        };
        let total = driver::total_memory(dev).unwrap_or(u64::MAX);
        let (limit, explicit) = match config.device_limit {
            Limit::Card => (total, false),
            Limit::Bytes(b) => (b.min(total), true),
            Limit::Fraction(f) => ((total as f64 * f) as u64, true),
        };
        let budget = &BUDGETS[dev as usize];
        budget.limit.store(limit, Ordering::Relaxed);
        budget.explicit.store(explicit, Ordering::Relaxed);
        let on_double = driver::on_cuda_double();
        let piece = Backend::chunk_bytes(on_double);
        // room for a victim's copy whenever memory is needed (budget.rs): under a limit its
        // headroom; on the card, two chunks (the copy of a buffer of one piece, or the first
        // chunk of one in pieces, whose piece then goes back): without it a full card had no
        // memory for any copy, and a program that outgrew it ran out of memory with nothing
        // packed (docs/PERF.md P64)
        budget.reserve.store(if explicit { ahead::headroom(limit) } else { 2 * piece }, Ordering::Relaxed);
        if !explicit {
            fit_card(budget, ctx);
        }
        // (the GPU kernels are made on a thread of ours once the engine exists: `get`; they
        // count as loading from now, so an allocation that needs room meanwhile waits for them)
        let backend = on_double.then_some(Backend::Cpu);
        if backend.is_none() {
            *KERNELS[dev as usize].lock() = Kernels::Loading;
        }
        if let Some(b) = &backend {
            budget.take(Part::Scratch, b.scratch_bytes());
        }
        tracing::info!("packing engine started on device {dev}: limit {limit} bytes, granularity {granularity}");
        let opts = PackOptions {
            dtype: ltblock::DType::BF16,
            lossy: config.mode == Mode::Lossy,
            group: config.int8_group,
            max_rel_l2: config.int8_max_err,
        };
        Some(Engine {
            dev,
            budget,
            inner: Mutex::new(Inner {
                dev,
                budget,
                access: crate::hooks::peer::accessors_of(dev),
                ctx,
                granularity,
                piece,
                backend,
                entries: HashMap::new(),
                opts,
                min_saving: config.min_saving,
                in_flight: HashMap::new(),
                next_tag: 1,
                wanted: 0,
                handoff: None,
                dropping: false,
                ahead_unused: Vec::new(),
                host_copies: config.host_copies.bytes(),
            }),
            drained: AtomicBool::new(false),
            ahead: AtomicBool::new(false),
        })
    }

    /// True while the engine may pack (kernels ready, not drained, no capture under way).
    fn may_pack(&self, inner: &Inner) -> bool {
        inner.backend.is_some()
            && !self.drained.load(Ordering::Acquire)
            && !crate::hooks::graph::capture_under_way()
            && !crate::hooks::nccl::group_under_way()
            && OPAQUE_CALLS.load(Ordering::SeqCst) == 0
    }

    /// The engine's lock, once no drop of `ahead` is under way. A program thread's wait for
    /// it is counted (`program_lock_wait_host_ns`: the packing-ahead thread holds the lock
    /// through each of its restores, and a drop of its keeps others waiting between phases).
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        let mut t0 = None;
        let mut inner = self.inner.try_lock().unwrap_or_else(|| {
            t0 = Some(crate::clock::precise_ns());
            self.inner.lock()
        });
        // (a child of fork has no such thread: a drop its parent had under way never ends)
        while inner.dropping && !crate::init::forked() {
            t0.get_or_insert_with(crate::clock::precise_ns);
            DROPPED[self.dev as usize].wait(&mut inner);
        }
        if let Some(t0) = t0.filter(|_| !ahead::on_its_thread()) {
            crate::stats::add(&crate::stats::C.program_lock_wait_ns, crate::clock::precise_ns() - t0);
        }
        if inner.backend.is_none() {
            install_kernels(&mut inner, None);
        }
        self.settle_restores(&mut inner);
        inner
    }

    /// Checks the queued restores that have run: a buffer whose decode found a bad block is
    /// lost (every later call naming it fails), and one whose decode is done needs no wait.
    fn settle_restores(&self, inner: &mut Inner) {
        if inner.in_flight.is_empty() {
            return;
        }
        let Some(backend) = inner.backend.as_mut() else { return };
        let settled = {
            let _scope = WorkScope::enter(inner.ctx);
            backend.settled()
        };
        for (tag, block, status) in settled.failed {
            let Some(addr) = inner.in_flight.get(&tag).copied() else { continue };
            let detail = ltgpu::status_name(status);
            if let Some(entry) = inner.entries.get_mut(&addr) {
                entry.buf.state.store(state::RESTORING, Ordering::SeqCst); // never RESIDENT again
                if let (Some(copy), Some(b)) = (entry.copy.take(), inner.backend.as_mut()) {
                    discard_copy(inner.budget, b, copy);
                }
                crate::stats::add(&crate::stats::C.restores_corrupt, 1);
                tracing::error!(
                    "the packed copy of the buffer at {addr:#x} ({} bytes) was corrupt: block {block}, {detail}, found after its restore ran; its data is lost, and every later call that names it fails with error {CUDA_ERROR_DATA_CORRUPT}",
                    entry.buf.size
                );
            }
        }
        for (tag, event) in settled.done {
            if let Some(addr) = inner.in_flight.remove(&tag) {
                if let Some(e) = inner.entries.get(&addr) {
                    // a later restore's event stays
                    let _ = e.buf.ready_event.compare_exchange(event, 0, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
        }
    }

    /// Makes `stream` wait for every restore queued so far (a call that names no buffer we
    /// can see, after every packed buffer was restored for it).
    pub fn order_after_restores(&self, stream: u64) {
        let inner = self.lock();
        if let Some(ev) = inner.backend.as_ref().and_then(|b| b.latest_restore()) {
            let _scope = WorkScope::enter(inner.ctx);
            driver::stream_wait_event(stream, ev);
        }
    }

    /// Waits on the host until the restore of `buf` has run (a buffer that from now on may be
    /// reached through pointers no hook sees).
    pub fn wait_restored(&self, buf: &Buffer) {
        let inner = self.lock();
        let ev = buf.ready_event.load(Ordering::SeqCst);
        if ev != 0 {
            let _scope = WorkScope::enter(inner.ctx);
            let _ = driver::wait_event(ev);
        }
    }

    /// A VMM-backed allocation of `size` bytes. Err(OOM) when it cannot fit under the limit
    /// even after packing; None when our path failed otherwise (the caller then allocates
    /// with the real function, so the program never fails because of us).
    pub fn allocate(&'static self, size: u64) -> Option<Result<u64, c_int>> {
        if self.drained.load(Ordering::Acquire) {
            return None;
        }
        let t0 = crate::clock::precise_ns();
        let mut inner = self.lock();
        let reserved = size.div_ceil(inner.granularity) * inner.granularity;
        if !self.make_room(&mut inner, reserved, Part::Resident) {
            crate::stats::add(&crate::stats::C.packing_oom, 1);
            // (the program's own message reports free = limit - held, part of which is the
            // reserve that allocations cannot take: say where the memory is)
            let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
            let b = inner.budget;
            crate::warn_once!(
                "an allocation of {:.1} MiB did not fit under LTSHIM_DEVICE_LIMIT ({:.1} MiB): held {:.1} MiB ({:.1} resident, {:.1} packed copies, {:.1} passed through, {:.1} our scratch), {:.1} MiB kept free for packed copies, and no other buffer could be packed (in use, flagged, or named by the last calls); the program gets the out-of-memory code (counted in out_of_memory_returned)",
                mib(reserved), mib(b.limit()), mib(b.held()), mib(b.resident.load(Ordering::Relaxed)), mib(b.packed.load(Ordering::Relaxed)),
                mib(b.passthrough.load(Ordering::Relaxed)), mib(b.scratch.load(Ordering::Relaxed)), mib(b.reserve.load(Ordering::Relaxed))
            );
            return Some(Err(CUDA_ERROR_OUT_OF_MEMORY));
        }
        let _scope = WorkScope::enter(inner.ctx);
        let piece = inner.piece_for(reserved);
        let mut oom_retries = 0;
        loop {
            match vmm::allocate(reserved, piece, &inner.access) {
                Ok((va, phys)) => {
                    let b = Buffer::new(va, size, Origin::Runtime, Backing::Vmm { reserved }, 0);
                    b.device.store(self.dev, Ordering::Relaxed);
                    let Some(buf) = REGISTRY.insert_buffer(b) else {
                        // an address we already know: never hand it out twice
                        unback_all(va, reserved, piece, phys);
                        let _ = vmm::free_range(va, reserved);
                        inner.budget.give(Part::Resident, reserved);
                        return None;
                    };
                    crate::stats::allocated(size);
                    crate::stats::add(&crate::stats::C.vmm_buffers, 1);
                    inner.entries.insert(
                        va,
                        Entry {
                            buf,
                            reserved,
                            piece,
                            phys,
                            copy: None,
                            refused: 0,
                            refused_at: 0,
                            seen_changed: false,
                            copy_tried_lossy: false,
                            resident_since: crate::residency::seq_now(),
                            next_encode: EncodeCause::First,
                            decoded_lossy: false,
                            lossy_barred: false,
                            shrinks_to: 0.0,
                        },
                    );
                    self.keep_room_ahead();
                    crate::stats::add(&crate::stats::C.alloc_host_ns, crate::clock::precise_ns() - t0);
                    return Some(Ok(va));
                }
                Err(e) if e.is_out_of_memory() => {
                    // the card itself is full (other processes, the context, more than the
                    // budget knew of): the budget learns the card's room, packs for this
                    // allocation under it, and retries; a pack past it is the last resort
                    oom_retries += 1;
                    if oom_retries <= CARD_RETRIES && !inner.budget.explicit.load(Ordering::Relaxed) {
                        inner.budget.give(Part::Resident, reserved);
                        fit_card(inner.budget, inner.ctx);
                        if self.make_room(&mut inner, reserved, Part::Resident) {
                            continue;
                        }
                        inner.budget.take(Part::Resident, reserved);
                    }
                    if !self.pack_one(&mut inner, Pass::Any) {
                        inner.budget.give(Part::Resident, reserved);
                        crate::stats::add(&crate::stats::C.packing_oom, 1);
                        return Some(Err(CUDA_ERROR_OUT_OF_MEMORY));
                    }
                }
                Err(e) => {
                    inner.budget.give(Part::Resident, reserved);
                    crate::warn_once!("a VMM allocation failed ({e}): such buffers are allocated by the real call instead");
                    return None;
                }
            }
        }
    }

    /// Frees a buffer the engine allocated: Some(status) when `addr` is one, None otherwise.
    /// Like the runtime's own free, it waits for the device's work first.
    pub fn free(&self, addr: u64) -> Option<c_int> {
        let mut inner = self.lock();
        let entry = inner.entries.remove(&addr)?;
        REGISTRY.remove(addr);
        // a restore of it still unchecked must not name a later buffer at the same address
        inner.in_flight.retain(|_, a| *a != addr);
        let _scope = WorkScope::enter(inner.ctx);
        let _ = driver::synchronize_context();
        inner.budget.give(Part::Resident, unback_all(addr, entry.reserved, entry.piece, entry.phys));
        if let Some(copy) = entry.copy {
            if entry.buf.state() == state::PACKED {
                inner.budget.give_original(entry.buf.size);
            }
            let budget = inner.budget;
            match inner.backend.as_mut() {
                Some(b) => discard_copy(budget, b, copy),
                None => budget.give_copy(copy.device_len(), copy.host_held()),
            }
        }
        let _ = vmm::free_range(addr, entry.reserved);
        crate::stats::freed(entry.buf.size);
        Some(CUDA_SUCCESS)
    }

    /// Room for `bytes` more in `part` under the limit, packing victims as needed; the bytes
    /// are taken when this returns true.
    /// The order: copies kept beside buffers written since that were found changed before
    /// (likely stale: a re-pack would check and re-encode them anyway); copies kept beside
    /// survivors, the buffers that stayed resident through a reuse period since their restore
    /// (`Entry::survivor`: the policy keeps them, so the copy is memory that serves nothing,
    /// and it turns into room for buffers that would otherwise cycle); victims whose copy fits
    /// beside them under the limit (a clean victim with its copy costs nothing to drop); a
    /// victim whose new copy turns out to fit in the room left, the smallest first; copies of
    /// clean buffers, lossless before lossy (in lossy mode a weight's lossless copy is made
    /// again, lossy, at its next pack anyway); and only then a pack whose copy passes the limit
    /// for a moment (a buffer larger than the reserve whose copy fits nowhere else). The copies
    /// of buffers that cycle are kept: each cycle is then a decode, not an encode and a decode.
    /// Tried and undone: discarding clean copies before passing the limit threw away the copies
    /// of the buffers just restored, which the last-calls rule keeps from being victims, so
    /// every later cycle of them re-encoded (a survivor has been resident a period, not just
    /// restored). Before the survivors' pass a clean victim with a copy was almost always there
    /// to drop for free, so the copies beside the buffers the policy keeps resident stayed for
    /// good and took the room of buffers that then cycled (the CUDA double's loop of 24
    /// buffers: 19 restores a step, 13 with the pass; the H200's 3B decode: docs/PERF.md).
    fn make_room(&self, inner: &mut Inner, bytes: u64, part: Part) -> bool {
        let mut fitted = false;
        loop {
            if inner.budget.try_take(part, bytes) {
                return true;
            }
            if !fitted && !inner.budget.explicit.load(Ordering::Relaxed) {
                // short of room on the card: what the others hold may have changed; and from
                // now on buffers cycle, so the thread that works ahead starts
                fitted = true;
                fit_card(inner.budget, inner.ctx);
                self.start_ahead();
                continue;
            }
            if inner.backend.is_none() {
                // memory is needed now: rather than failing the program's call, wait for the
                // kernels (once a machine: later runs load them from the cache)
                install_kernels(inner, Some(KERNEL_WAIT));
            }
            let need = bytes.saturating_sub(inner.budget.room(part));
            if !self.discard_kept_copy(inner, Kept::OfWritten, need)
                && !self.discard_kept_copy(inner, Kept::OfSurvivor, need)
                && !self.move_far_copies_to_host(inner, need)
                && !self.pack_one(inner, Pass::Fitting)
                && !self.pack_one(inner, Pass::InRoom)
                && !self.discard_kept_copy(inner, Kept::Lossless, need)
                && !self.discard_kept_copy(inner, Kept::Any, need)
                && !self.move_copies_to_host(inner, need, ToHost::LastRoom)
                && !self.pack_one(inner, Pass::OverLimit)
            {
                return false;
            }
        }
    }

    /// Room for a pass-through allocation of `bytes` (taken on success).
    pub fn charge_passthrough(&self, bytes: u64) -> bool {
        let mut inner = self.lock();
        self.make_room(&mut inner, bytes, Part::Passthrough)
    }

    /// Packs one victim because the card itself ran out of memory (a real allocation failed).
    pub fn pack_for_card(&self) -> bool {
        let mut inner = self.lock();
        self.pack_one(&mut inner, Pass::Any)
    }

    /// Packs one victim of `pass`; false when none could be packed.
    fn pack_one(&self, inner: &mut Inner, pass: Pass) -> bool {
        if !self.may_pack(inner) {
            return false;
        }
        let mut victims = self.victims_for_room(inner);
        if let Pass::InRoom | Pass::OverLimit = pass {
            victims.sort_by_key(|a| inner.entries.get(a).map_or(u64::MAX, |e| e.buf.size));
        }
        // (an encode that finds no room is work thrown away: a few tries, not every buffer)
        let tries = if let Pass::InRoom = pass { IN_ROOM_TRIES } else { usize::MAX };
        for &victim in victims.iter().take(tries) {
            if let Packed::Done = self.pack(inner, victim, pass) {
                tracing::trace!("packed {victim:#x} at use {}", crate::residency::seq_now());
                return true;
            }
        }
        false
    }

    /// The buffers that may be packed now, in the policy's order.
    fn victims(&self, inner: &Inner) -> Vec<u64> {
        crate::policy::victims(self.candidates(inner), crate::residency::seq_now()).into_iter().map(|c| c.id).collect()
    }

    /// `victims`, but for one among the first few whose memory the restore under way can take
    /// as it is, which goes first.
    fn victims_for_room(&self, inner: &Inner) -> Vec<u64> {
        let mut victims = self.victims(inner);
        if inner.wanted != 0 {
            let near = victims.len().min(SAME_SIZE_LOOKAHEAD);
            if let Some(i) = victims[..near].iter().position(|a| inner.entries.get(a).is_some_and(|e| e.reserved == inner.wanted)) {
                let v = victims.remove(i);
                victims.insert(0, v);
            }
        }
        victims
    }

    /// What the policy knows of each buffer that may be packed now.
    fn candidates(&self, inner: &Inner) -> Vec<crate::policy::Candidate> {
        inner
            .entries
            .values()
            .filter(|e| e.eligible())
            .map(|e| crate::policy::Candidate {
                id: e.buf.start,
                size: e.buf.size,
                last_seq: e.buf.last_seq.load(Ordering::Relaxed),
                period: e.buf.period.load(Ordering::Relaxed),
                gaps: e.buf.gaps(),
                kept: e.copy_serves(&inner.opts),
            })
            .collect()
    }

    /// Frees the largest packed copy of `which` kept beside a resident buffer; false when
    /// there is none. A copy that may still serve (`Kept::Lossless`, `Kept::Any`) loses only
    /// its last chunks, as many as make `need` bytes: the next pack of its buffer checks or
    /// reuses the chunks left and encodes only the rest. (Before, the 3B decode threw the
    /// embedding table's whole 528 MB copy away for a few tens of MB of room and encoded all
    /// of its 788 MB again at the next pack: 55 GB of such encodes a run, P33.) Copies that
    /// serve nothing (likely stale, or a survivor's) go whole.
    ///
    /// A copy of lossy (int8g) blocks leaves the buffer holding what they decoded to, and
    /// its next pack encodes those bytes again: lossy when it is clean (a weight: `pack` allows
    /// loss only then), lossless when it was written since. Lossy is the rule, not lossless:
    /// int8g of its own output gives the same groups the same scales and codes, so the bytes
    /// come back as they are and the error does not grow (`ltblock`'s
    /// `reencoding_what_int8g_decoded_gives_it_back` checks it); a lossless copy would be ~30%
    /// larger, and `copy_goes_lossy` would make it lossy at the next pack anyway, an extra
    /// encode to the same bytes.
    fn discard_kept_copy(&self, inner: &mut Inner, which: Kept, need: u64) -> bool {
        let room_of = |c: &PackedCopy| if let Kept::ForHostRoom = which { c.host_held() } else { c.device_len() };
        let Some(addr) = inner
            .entries
            .values()
            .filter(|e| !e.phys.is_empty() && e.buf.state() == state::RESIDENT)
            // (the room sought: device memory, but for `ForHostRoom`)
            .filter(|e| {
                e.copy.as_ref().filter(|c| room_of(c) > 0).is_some_and(|c| match which {
                    Kept::OfWritten => !e.buf.is_clean() && e.seen_changed,
                    Kept::OfSurvivor => e.survivor(),
                    Kept::Lossless => !c.is_lossy(),
                    Kept::Any | Kept::ForHostRoom => true,
                })
            })
            .max_by_key(|e| e.copy.as_ref().map_or(0, room_of))
            .map(|e| e.buf.start)
        else {
            return false;
        };
        let need = need.max(1);
        let Some(entry) = inner.entries.get_mut(&addr) else { return false };
        if let Kept::OfWritten = which {
            entry.next_encode = EncodeCause::Changed;
            // thrown away on suspicion: the copy made next is checked at the pack after, not
            // thrown away unread again (a buffer that launches name, which may write, stays
            // dirty while only read: the 3B model's weights in decode were encoded again every
            // step)
            entry.seen_changed = false;
        } else {
            entry.next_encode = EncodeCause::Discarded;
        }
        let copy = entry.copy.take();
        if let (Some(mut copy), Some(b)) = (copy, inner.backend.as_mut()) {
            // (a copy with chunks in host memory keeps them: they hold no device memory)
            if matches!(which, Kept::Lossless | Kept::Any) && (need < copy.device_len() || copy.host_len() > 0) {
                let freed = crate::stats::timed_codec(CodecWork::Discard, || b.truncate(&mut copy, need));
                inner.budget.give(Part::Packed, freed);
                crate::stats::copy_discarded(which, freed);
                // (every chunk may have gone: the empty copy is no copy)
                if copy.original_len() > 0 {
                    entry.copy = Some(copy);
                }
                return true;
            }
            crate::stats::copy_discarded(which, copy.packed_len());
            discard_copy(inner.budget, b, copy);
        }
        true
    }

    /// Before a buffer needed soon is encoded to make room: the copies of packed buffers whose
    /// next uses are predicted `policy::FAR` times further off than that victim's go to host
    /// memory instead, the furthest first; false when none moved. A training step's optimizer
    /// states are used once a step, and its fp32 buffers pack to ~84%: with their copies in
    /// device memory, the step's activations and gradients, written between each use, were
    /// encoded again and again for a sixth of their size each (docs/PERF.md P61, P76: 45 GB of
    /// encodes a step at 80% of the native peak). A victim whose kept copy serves costs no
    /// encode (a weight dropped again), a clean one's encode makes a copy that serves from then
    /// on (a weight whose copy goes lossy, or was shortened), and a cold one is the best there
    /// is: none of them moves anything here, so read-mostly workloads keep their copies in
    /// device memory; nor does one
    /// whose last copy was under `policy::FAR_SHRINKS_TO` of it (or that has had none yet): its
    /// pack frees more than half of it for GPU work, where a move costs a round trip over the
    /// bus (sparse activations: zvc packs them to ~11%).
    fn move_far_copies_to_host(&self, inner: &mut Inner, need: u64) -> bool {
        if inner.host_copies == 0 || !self.may_pack(inner) {
            return false;
        }
        let now = crate::residency::seq_now();
        // (the victim `pack_one` would take first)
        let Some(v) = self.victims_for_room(inner).first().and_then(|a| inner.entries.get(a)) else { return false };
        let Some(beyond) = crate::policy::far_beyond(v.copy_serves(&inner.opts), v.buf.is_clean(), v.buf.ahead(now), v.shrinks_to) else { return false };
        self.move_copies_to_host(inner, need, ToHost::Far { beyond })
    }

    /// Moves the copies of packed buffers `how` picks into pinned host memory until `need`
    /// bytes of device memory are free of them, within `LTSHIM_HOST_COPIES` over every device;
    /// false when none moved. Such a buffer decodes from host memory at its restore, over the
    /// bus (its copy is then kept there, beside it: a later pack of it, unchanged, costs no
    /// device memory). Only copies of PACKED buffers move: no restore of ours reads them.
    fn move_copies_to_host(&self, inner: &mut Inner, need: u64, how: ToHost) -> bool {
        let need = need.max(1);
        // (the pinned memory of copies in host memory, over every device, and the spare slabs
        // of the others: this device's own are reused by its moves first)
        let host_room = |inner: &Inner| {
            let own = inner.backend.as_ref().map_or(0, |b| b.spare_host_bytes());
            let others = ltgpu::packer::spare_host_total().saturating_sub(own);
            inner.host_copies.saturating_sub(budget::in_host_total() + others)
        };
        if inner.host_copies == 0 || inner.backend.is_none() {
            return false;
        }
        let now = crate::residency::seq_now();
        // (the order to move them in, smaller first)
        let order = |b: &Buffer| match how {
            ToHost::LastRoom => Some(b.last_seq.load(Ordering::Relaxed)),
            ToHost::Far { beyond } => {
                let ahead = b.ahead(now);
                (ahead > beyond).then_some(u64::MAX - ahead)
            }
        };
        let mut cold: Vec<(u64, u64, u64)> = inner
            .entries
            .values()
            .filter_map(|e| Some((e, e.copy.as_ref()?.device_len())))
            .filter(|&(e, device)| e.buf.state() == state::PACKED && device > 0)
            .filter_map(|(e, device)| Some((order(&e.buf)?, e.buf.start, device)))
            .collect();
        cold.sort_unstable();
        // (what moving every one of them could give)
        let want = need.min(cold.iter().map(|c| c.2).sum());
        if want == 0 {
            return false;
        }
        // (the room is over every device: one engine at a time weighs it and moves)
        let host = HOST_ROOM.lock();
        // host memory held by copies beside resident buffers is room for these: each of those
        // costs its buffer an encode at its next pack, where a packed buffer's copy is its
        // bytes (when nothing else gives room: a move instead of an encode is not worth one)
        if let ToHost::LastRoom = how {
            while host_room(inner) < want && self.discard_kept_copy(inner, Kept::ForHostRoom, want) {}
        }
        let room = host_room(inner);
        if room == 0 {
            return false;
        }
        let (t0, mut moved, mut held) = (crate::clock::precise_ns(), 0u64, 0u64);
        let _scope = WorkScope::enter(inner.ctx);
        for (_, addr, _) in cold {
            if moved >= need || held >= room {
                break;
            }
            let (Some(entry), Some(backend)) = (inner.entries.get_mut(&addr), inner.backend.as_mut()) else { break };
            let Some(copy) = entry.copy.as_mut() else { continue };
            let (before, held_before) = (copy.device_len(), copy.host_held());
            let result = backend.move_to_host(copy, need - moved, room - held);
            // (counted from the copy itself: a move that failed part way moved its first chunks)
            let n = before.saturating_sub(copy.device_len());
            if n > 0 {
                let h = copy.host_held().saturating_sub(held_before);
                inner.budget.moved_to_host(n, h);
                held += h;
                crate::stats::add(&crate::stats::C.copies_moved_to_host, 1);
                if let ToHost::Far { .. } = how {
                    crate::stats::add(&crate::stats::C.copies_moved_far, 1);
                }
                moved += n;
            }
            match result {
                // (none moved when its first chunk in device memory is larger than the host room
                // left: the next copy's may be smaller)
                Ok(_) => {}
                Err(CodecFailure::OutOfMemory) => {
                    crate::warn_once!("pinned host memory for a packed copy was refused: copies stay in device memory from now on (LTSHIM_HOST_COPIES)");
                    inner.host_copies = 0;
                    backend.free_spare_slabs();
                    break;
                }
                Err(e) => {
                    // (the drain's restores come here again: with no host room, and the lock free)
                    inner.host_copies = 0;
                    drop(host);
                    self.fail(inner, &format!("moving a packed copy to host memory: {e}"));
                    return moved > 0;
                }
            }
        }
        if moved > 0 {
            match how {
                ToHost::LastRoom => crate::warn_once!(
                    "device memory ran out of other room: packed copies moved to host memory (LTSHIM_HOST_COPIES; their buffers decode from there, slower; host_copies_bytes in the stats)"
                ),
                ToHost::Far { .. } => crate::warn_once!(
                    "packed copies of buffers not needed for a while moved to host memory rather than encoding buffers needed sooner (LTSHIM_HOST_COPIES; host_copies_bytes in the stats)"
                ),
            }
            crate::stats::add(&crate::stats::C.host_move_ns, crate::clock::precise_ns() - t0);
        }
        moved > 0
    }

    /// Packs the buffer at `addr` if it may be packed now, its new copy bounded as `pass`
    /// says (`Fitting`: at its largest it fits under the limit beside the buffer; `InRoom`:
    /// it fits in the room left; `OverLimit` and `Any`: the card's memory is the only bound).
    /// A buffer backed in pieces gives each piece back once its bytes are in the new copy, so
    /// the bound (the room, and the margin of `LTSHIM_MIN_SAVING`) is on its first chunk's
    /// copy, and each piece given back is room for the next chunk's; once one is gone the pack
    /// finishes whatever the rest packs to (nothing is put back on a guess), and a copy that
    /// then ends larger than the margin allows is counted (`packs_past_margin`).
    fn pack(&self, inner: &mut Inner, addr: u64, pass: Pass) -> Packed {
        let (t0, started) = (crate::clock::precise_ns(), debug_start(inner));
        if self.drained.load(Ordering::Acquire) {
            return Packed::Skipped;
        }
        let Some(entry) = inner.entries.get(&addr) else { return Packed::Skipped };
        let buf = entry.buf.clone();
        let (reserved, piece) = (entry.reserved, entry.piece);
        let min_saving = inner.min_saving;
        let worst = |bytes: u64| (bytes as f64 * (1.0 - min_saving)) as u64;
        if let Pass::Fitting = pass {
            let rest = buf.size - entry.copy.as_ref().map_or(0, |c| c.original_len());
            if rest > 0 && worst(rest.min(piece)) > inner.budget.room(Part::Packed) {
                return Packed::Skipped;
            }
        }
        let bounded = matches!(pass, Pass::Fitting | Pass::InRoom);
        if !claim(&buf) {
            return Packed::Skipped;
        }
        let _scope = WorkScope::enter(inner.ctx);
        // every use of the buffer so far has finished, and so has a restore still decoding
        // into it (never used since)
        let (streams, many) = streams_to_wait_for(&buf);
        let restoring = buf.ready_event.load(Ordering::SeqCst);
        let waited = driver::wait_for_streams(&streams, many).and_then(|_| if restoring != 0 { driver::wait_event(restoring) } else { Ok(()) });
        if let Err(e) = waited {
            buf.state.store(state::RESIDENT, Ordering::SeqCst);
            self.fail(inner, &format!("waiting for a buffer's streams: {e}"));
            return Packed::Skipped;
        }
        if FAIL_NEXT_PACK.compare_exchange(FAIL_AT_START, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            buf.state.store(state::RESIDENT, Ordering::SeqCst);
            self.fail(inner, "an injected failure (ltshim_debug_fail_next_pack)");
            return Packed::Skipped;
        }
        let mut opts = inner.opts;
        // lossy only as the type a GEMM read all of it as since it was last written (read with
        // that state in one load: an older tensor's type says nothing of the bytes there now);
        // for the lossless codecs the last type seen is only a guess at the element type
        let whole = buf.floats_read_whole();
        let hint = whole.unwrap_or_else(|| buf.float_hint.load(Ordering::Relaxed));
        match hint.checked_sub(1).and_then(ltblock::DType::from_id) {
            Some(dt) => opts.dtype = dt,
            None => opts.lossy = false,
        }
        opts.lossy &= whole.is_some();
        // nothing wrote it since it was decoded from its copy
        let clean = buf.is_clean();
        let backend = inner.backend.as_mut().expect("may_pack checked the backend");
        let entry = inner.entries.get_mut(&addr).expect("looked up above");
        if entry.decoded_lossy && !clean && !entry.lossy_barred {
            entry.lossy_barred = true;
            crate::stats::add(&crate::stats::C.lossy_barred, 1);
        }
        // and lossy only for data that is only read (weights): never for a buffer being
        // written (activations; a segment of them may hold masks or indices beside the floats),
        // nor ever again for lossy-decoded bytes that were written since (`Entry::lossy_barred`)
        opts.lossy &= clean && !entry.lossy_barred;
        // a kept copy of unchanged bytes serves as it is; a lossless one of a clean buffer that
        // may go lossy is made again, lossy, once
        let mut reused = false;
        if opts.lossy && entry.copy_goes_lossy(&inner.opts) {
            entry.next_encode = EncodeCause::ToLossy;
            discard_copy(inner.budget, backend, entry.copy.take().expect("checked"));
        }
        if let Some(copy) = entry.copy.as_ref() {
            if clean {
                crate::stats::add(&crate::stats::C.packs_clean, 1);
            }
            let same = if clean {
                Ok(true)
            } else {
                crate::stats::add(&crate::stats::C.checks, 1);
                crate::stats::timed_codec(CodecWork::Check, || backend.unchanged(copy, addr, buf.size))
            };
            match same {
                Ok(true) => {
                    reused = true;
                    entry.seen_changed = false;
                }
                Ok(false) => {
                    crate::stats::add(&crate::stats::C.checks_changed, 1);
                    entry.seen_changed = true;
                    entry.next_encode = EncodeCause::Changed;
                    discard_copy(inner.budget, backend, entry.copy.take().expect("checked"));
                }
                Err(e) => {
                    buf.state.store(state::RESIDENT, Ordering::SeqCst);
                    self.fail(inner, &format!("checking a kept copy: {e}"));
                    return Packed::Skipped;
                }
            }
        }
        let parts = vmm::pieces(reserved, piece);
        // a kept copy shortened for room (`discard_kept_copy`) serves its first bytes; the
        // rest is encoded and appended to it
        let from = entry.copy.as_ref().map_or(0, |c| c.original_len());
        reused &= from >= buf.size;
        if !reused {
            let len = buf.size - from;
            let worst_len = worst(len);
            // before each chunk: its copy so far is held, the pieces wholly in the copies go
            // back, and the bound for the next one is the margin and, in the bounded passes
            // while no piece is gone, the room there is
            let (mut taken, mut given, mut room_bound, mut passed) = (0u64, 0usize, false, false);
            let budget = inner.budget;
            // (past the limit by this pack's own copy, not by a restore over it before)
            let bar = budget.held().max(budget.limit());
            let mut unback_failed: Option<String> = None;
            let phys = &mut entry.phys;
            let mut bound = |done: u64, copy_len: u64| -> Option<u64> {
                budget.take(Part::Packed, copy_len - taken);
                taken = copy_len;
                passed |= budget.held() > bar;
                if let Err(e) = give_back_covered(addr, &parts, &mut given, phys, budget, from + done) {
                    unback_failed = Some(format!("unmapping a piece of a buffer being packed: {e}"));
                    return None;
                }
                if given > 0 && FAIL_NEXT_PACK.compare_exchange(FAIL_MIDWAY, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    unback_failed = Some("an injected failure after a piece was given back (ltshim_debug_fail_next_pack)".into());
                    return None;
                }
                if given > 0 {
                    return Some(u64::MAX);
                }
                // (the first chunk of a buffer in pieces must save the margin itself: its piece
                // goes once it is in, and the rest is packed whatever it packs to)
                let margin = if parts.len() > 1 { worst((done + piece).min(len)) } else { worst_len };
                let room = if bounded { copy_len.saturating_add(budget.room(Part::Packed)) } else { u64::MAX };
                room_bound = room < margin;
                Some(room.min(margin))
            };
            let (copy, end) = crate::stats::timed_codec(CodecWork::Encode, || backend.pack(addr + from, len, opts, &mut bound));
            budget.take(Part::Packed, copy.packed_len() - taken);
            passed |= budget.held() > bar;
            let end = match (end, unback_failed) {
                (_, Some(e)) => PackEnd::Failed(CodecFailure::Device(e)),
                (end, None) => end,
            };
            if let PackEnd::Whole = end {
                count_codec_bytes(&copy);
                if copy.packed_len() > worst_len {
                    crate::stats::add(&crate::stats::C.packs_past_margin, 1);
                }
                if passed {
                    // (the last resort, `Pass::OverLimit`; or a buffer in pieces whose chunks
                    // after the first did not shrink: each such copy is a block header a 64 KiB
                    // block larger than its piece, ~40 KiB a 64 MiB chunk)
                    crate::warn_once!("a pack passed LTSHIM_DEVICE_LIMIT for a moment: a buffer's copy was larger than the room left (counted in packs_over_limit)");
                    crate::stats::add(&crate::stats::C.packs_over_limit, 1);
                }
                crate::stats::encoded(entry.next_encode, len);
                entry.extend_copy(copy);
                entry.note_shrink();
                entry.copy_tried_lossy = opts.lossy;
            } else {
                // not packed: pieces that went back come back with the bytes the copies hold
                // (and both stay: they are this buffer's bytes as they are); it stays PACKING,
                // so no call reaches it, until they are back
                if given > 0 {
                    entry.extend_copy(copy);
                    if put_back(inner.budget, backend, entry, &parts[..given], &inner.access) {
                        buf.state.store(state::RESIDENT, Ordering::SeqCst);
                    }
                } else {
                    buf.state.store(state::RESIDENT, Ordering::SeqCst);
                    discard_copy(inner.budget, backend, copy);
                }
                match end {
                    PackEnd::OverBound if room_bound => {
                        // the room was the bound, not the data: it may fit another time
                        crate::stats::add(&crate::stats::C.packs_no_room, 1);
                    }
                    PackEnd::OverBound => {
                        entry.refused = entry.refused.saturating_add(1);
                        entry.refused_at = buf.last_seq.load(Ordering::Relaxed);
                        crate::stats::add(&crate::stats::C.packs_refused, 1);
                    }
                    // no room for the copy itself: this buffer stays, another may go
                    PackEnd::Failed(CodecFailure::OutOfMemory) => {}
                    PackEnd::Failed(e) => {
                        crate::stats::fallback(crate::stats::Fallback::PackCheckFailed);
                        self.fail(inner, &format!("packing a buffer: {e}"));
                    }
                    PackEnd::Whole => unreachable!("handled above"),
                }
                return Packed::Skipped;
            }
        }
        // the pieces still mapped go back (all of them for a kept copy); one piece of the size
        // the restore under way wants is handed to it instead
        let entry = inner.entries.get_mut(&addr).expect("looked up above");
        while let Some(&h) = entry.phys.first() {
            let gone = parts.len() - entry.phys.len();
            let (off, len) = parts[gone];
            let hand_over = parts.len() == 1 && inner.wanted == reserved && inner.handoff.is_none();
            let unmapped = if hand_over { vmm::unmap(addr + off, len) } else { vmm::unback(addr + off, len, h) };
            if let Err(e) = unmapped {
                // it stays resident, its copy kept: the pieces gone come back from it first
                let back = gone == 0 || {
                    let backend = inner.backend.as_mut().expect("may_pack checked the backend");
                    put_back(inner.budget, backend, entry, &parts[..gone], &inner.access)
                };
                if back {
                    buf.state.store(state::RESIDENT, Ordering::SeqCst);
                }
                self.fail(inner, &format!("unmapping a packed buffer: {e}"));
                return Packed::Skipped;
            }
            if hand_over {
                inner.handoff = Some(h); // the restore under way maps it
            }
            entry.phys.remove(0);
            inner.budget.give(Part::Resident, len);
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let split = debug_split(inner, started);
            log_pack(&inner.entries[&addr], hint, reused, clean, opts.lossy, t0, &split);
        }
        now_packed(inner.budget, &buf, reused, t0);
        Packed::Done
    }

    /// Makes every buffer of `bufs` resident (their users are counted by the caller, so none
    /// of them is taken to make room for another). Err: the status the program's call gets.
    pub fn make_resident(&self, bufs: &[Arc<Buffer>]) -> Result<(), c_int> {
        let mut inner = self.lock();
        for b in bufs {
            self.restore(&mut inner, b, Room::Evict)?;
        }
        Ok(())
    }

    /// Maps `buf` back and decodes it, its room found as `room` says.
    fn restore(&self, inner: &mut Inner, buf: &Arc<Buffer>, room: Room) -> Result<(), c_int> {
        match buf.state() {
            state::RESIDENT => return Ok(()),
            state::PACKED => {}
            _ => return Err(CUDA_ERROR_DATA_CORRUPT), // a buffer lost to corruption stays failed
        }
        let (t0, started) = (crate::clock::precise_ns(), debug_start(inner));
        let Some((reserved, piece)) = inner.entries.get(&buf.start).map(|e| (e.reserved, e.piece)) else { return Err(CUDA_ERROR_INVALID_VALUE) };
        let parts = vmm::pieces(reserved, piece);
        buf.state.store(state::RESTORING, Ordering::SeqCst);
        let evict = room == Room::Evict;
        let found = match room {
            Room::Evict => {
                // (a victim's memory is handed over as it is to a buffer of one piece)
                inner.wanted = if parts.len() == 1 { reserved } else { 0 };
                let found = self.make_room(inner, reserved, Part::Resident);
                inner.wanted = 0;
                found
            }
            // no buffer may be packed now; copies kept beside resident buffers may go
            Room::OverLimit => loop {
                if inner.budget.try_take(Part::Resident, reserved) {
                    break true;
                }
                let need = reserved.saturating_sub(inner.budget.room(Part::Resident));
                if !self.discard_kept_copy(inner, Kept::Any, need) && !self.move_copies_to_host(inner, need, ToHost::LastRoom) {
                    break false;
                }
            },
            Room::Free => inner.budget.try_take(Part::Resident, reserved),
        };
        if !found && room == Room::Free {
            buf.state.store(state::PACKED, Ordering::SeqCst);
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        if !found && room != Room::Free {
            // a buffer in pieces whose copy has a chunk a piece comes back from its end, a
            // piece at a time, each chunk's copy given back once decoded: it needs room for one
            // piece, not for itself beside its whole copy (the 3B model's LM head, restored
            // beside every other weight's copy, went 0.14 GiB over the limit that way)
            let aligned = inner.entries.get(&buf.start).and_then(|e| e.copy.as_ref()).is_some_and(|c| {
                c.original_len() >= buf.size && c.chunk_lens().iter().copied().eq(parts.iter().map(|&(_, len)| len))
            });
            if parts.len() > 1 && aligned && inner.handoff.is_none() {
                return self.restore_in_pieces(inner, buf, &parts, evict, (t0, started));
            }
        }
        if !found {
            // everything else is in use: the program's call needs this buffer, so it comes
            // back whatever the limit; said once and counted when it passes the limit itself
            // (one that fits into the reserve for packed copies passes nothing)
            if inner.budget.take_as_last_resort(Part::Resident, reserved) {
                restored_over_limit();
            }
        }
        let _scope = WorkScope::enter(inner.ctx);
        let va = buf.start;
        let access = inner.access.clone();
        let mapped = match inner.handoff.take() {
            Some(h) => vmm::map(va, reserved, h, &access).map(|_| vec![h]).inspect(|_| crate::stats::add(&crate::stats::C.restores_handed_memory, 1)).inspect_err(|_| {
                let _ = vmm::release(h);
            }),
            None => loop {
                match vmm::back(va, &parts, &access) {
                    Err(e) if e.is_out_of_memory() && evict && self.pack_one(inner, Pass::Any) => continue,
                    other => break other,
                }
            },
        };
        let handles = match mapped {
            Ok(h) => h,
            Err(e) => {
                inner.budget.give(Part::Resident, reserved);
                buf.state.store(state::PACKED, Ordering::SeqCst);
                if e.is_out_of_memory() {
                    tracing::warn!("cannot restore the buffer at {va:#x} ({} bytes): {e}", buf.size);
                    return Err(CUDA_ERROR_OUT_OF_MEMORY);
                }
                self.fail(inner, &format!("mapping a buffer back: {e}"));
                return Err(e.code);
            }
        };
        let backend = inner.backend.as_mut().expect("a packed buffer implies a backend");
        let entry = inner.entries.get_mut(&va).expect("looked up above");
        entry.phys = handles;
        let copy = entry.copy.as_ref().expect("a packed buffer has its copy");
        entry.decoded_lossy |= copy.is_lossy();
        let tag = inner.next_tag;
        inner.next_tag += 1;
        match crate::stats::timed_codec(CodecWork::Decode, || backend.restore(copy, va, buf.size, tag)) {
            Ok(None) => {}
            Ok(Some(event)) => {
                inner.in_flight.insert(tag, va);
                buf.ready_event.store(event, Ordering::SeqCst);
            }
            Err(CodecFailure::Corrupt { block, detail }) => {
                buf.state.store(state::RESTORING, Ordering::SeqCst); // never RESIDENT again
                crate::stats::add(&crate::stats::C.restores_corrupt, 1);
                tracing::error!(
                    "the packed copy of the buffer at {va:#x} ({} bytes) is corrupt: block {block}, {detail}; its data is lost, and every call that names it fails with error {CUDA_ERROR_DATA_CORRUPT}",
                    buf.size
                );
                return Err(CUDA_ERROR_DATA_CORRUPT);
            }
            Err(failure) => {
                // back to packed as it was: its copy is intact, its new memory goes again
                if let Some(e) = inner.entries.get_mut(&va) {
                    unback_all(va, reserved, piece, std::mem::take(&mut e.phys));
                }
                inner.budget.give(Part::Resident, reserved);
                buf.state.store(state::PACKED, Ordering::SeqCst);
                if let CodecFailure::Device(e) = failure {
                    self.fail(inner, &format!("restoring a buffer: {e}"));
                }
                return Err(CUDA_ERROR_OUT_OF_MEMORY);
            }
        }
        self.now_resident(inner, buf, t0);
        // back over the limit: kept copies (its own too) go until it holds again
        while inner.budget.held() > inner.budget.limit() && self.discard_kept_copy(inner, Kept::Any, inner.budget.held() - inner.budget.limit()) {}
        tracing::debug!(
            "restore {va:#x} ({} B) at use {}, {} us{} ({})",
            buf.size,
            crate::residency::seq_now(),
            crate::clock::precise_ns().saturating_sub(t0) / 1000,
            if room == Room::Free { ", ahead" } else { "" },
            debug_split(inner, started)
        );
        Ok(())
    }

    /// `buf`'s memory is mapped and its bytes decoded (a restore that began at `t0`): the
    /// budget, its state and the stats say so.
    fn now_resident(&self, inner: &mut Inner, buf: &Buffer, t0: u64) {
        inner.budget.give_original(buf.size);
        self.keep_room_ahead();
        // (its streams were forgotten when it was packed; the caller's are recorded again)
        buf.made_clean();
        if let Some(e) = inner.entries.get_mut(&buf.start) {
            e.resident_since = crate::residency::seq_now();
        }
        buf.state.store(state::RESIDENT, Ordering::SeqCst);
        crate::stats::restored(crate::clock::precise_ns() - t0);
    }

    /// `restore` of a buffer backed in pieces (`parts`) when there is no room for all of it:
    /// from its last piece to its first, room for the piece (kept copies of other buffers go
    /// first; past them the piece comes back over the limit, counted), the piece mapped, its
    /// chunk decoded into it and checked, and that chunk's copy given back. Its kept copy is
    /// gone afterwards: its next pack encodes it again. A piece that cannot be mapped halfway
    /// leaves the buffer packed as it was: the pieces already back are encoded again (lossless:
    /// they hold what the copy decoded to) and join what is left of the copy.
    fn restore_in_pieces(&self, inner: &mut Inner, buf: &Arc<Buffer>, parts: &[(u64, u64)], evict: bool, (t0, started): (u64, Option<DebugStart>)) -> Result<(), c_int> {
        let va = buf.start;
        let _scope = WorkScope::enter(inner.ctx);
        let access = inner.access.clone();
        let mut over = false;
        for k in (0..parts.len()).rev() {
            let (off, len) = parts[k];
            while !inner.budget.try_take(Part::Resident, len) {
                let need = len.saturating_sub(inner.budget.room(Part::Resident));
                if !self.discard_kept_copy(inner, Kept::Any, need) && !self.move_copies_to_host(inner, need, ToHost::LastRoom) {
                    over |= inner.budget.take_as_last_resort(Part::Resident, len);
                    break;
                }
            }
            let injected = k + 2 == parts.len() && FAIL_NEXT_PACK.compare_exchange(FAIL_RESTORE_MIDWAY, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok();
            let mapped = match injected {
                true => Err(driver::DriverError { call: "cuMemCreate (an injected failure)", code: CUDA_ERROR_OUT_OF_MEMORY }),
                false => match vmm::back(va + off, &[(0, len)], &access) {
                    Err(e) if e.is_out_of_memory() && evict && self.pack_one(inner, Pass::Any) => vmm::back(va + off, &[(0, len)], &access),
                    other => other,
                },
            };
            let handle = match mapped {
                Ok(h) => h[0],
                Err(e) => {
                    inner.budget.give(Part::Resident, len);
                    let rc = if e.is_out_of_memory() { CUDA_ERROR_OUT_OF_MEMORY } else { e.code };
                    tracing::warn!("cannot restore the buffer at {va:#x} ({} bytes): {e}", buf.size);
                    let back = self.repack_restored_pieces(inner, buf, &parts[k + 1..]);
                    if !e.is_out_of_memory() {
                        self.fail(inner, &format!("mapping a buffer back: {e}"));
                    }
                    return back.and(Err(rc));
                }
            };
            let backend = inner.backend.as_mut().expect("a packed buffer implies a backend");
            let entry = inner.entries.get_mut(&va).expect("looked up by the caller");
            entry.phys.insert(0, handle);
            let copy = entry.copy.as_mut().expect("a packed buffer has its copy");
            entry.decoded_lossy |= copy.is_lossy();
            let chunk = copy.pop_last().expect("one chunk a piece (checked by the caller)");
            match crate::stats::timed_codec(CodecWork::Decode, || backend.restore_now(&chunk, va + off)) {
                Ok(()) => {
                    if copy.original_len() == 0 {
                        entry.copy = None;
                        entry.next_encode = EncodeCause::Discarded;
                    }
                    discard_copy(inner.budget, backend, chunk);
                }
                Err(CodecFailure::Corrupt { block, detail }) => {
                    crate::stats::add(&crate::stats::C.restores_corrupt, 1);
                    tracing::error!(
                        "the packed copy of the buffer at {va:#x} ({} bytes) is corrupt: chunk {k}, block {block}, {detail}; its data is lost, and every call that names it fails with error {CUDA_ERROR_DATA_CORRUPT}",
                        buf.size
                    );
                    return Err(CUDA_ERROR_DATA_CORRUPT); // (it stays RESTORING: never resident again)
                }
                Err(failure) => {
                    // our own work failed, the chunk is intact: it goes back on the copy, its
                    // piece goes, and the pieces already back are put into the copy again
                    copy.append(chunk);
                    let h = entry.phys.remove(0);
                    let _ = vmm::unback(va + off, len, h);
                    inner.budget.give(Part::Resident, len);
                    let back = self.repack_restored_pieces(inner, buf, &parts[k + 1..]);
                    if let CodecFailure::Device(e) = failure {
                        self.fail(inner, &format!("restoring a buffer: {e}"));
                    }
                    return back.and(Err(CUDA_ERROR_OUT_OF_MEMORY));
                }
            }
        }
        if over {
            restored_over_limit();
        }
        crate::stats::add(&crate::stats::C.restores_in_pieces, 1);
        self.now_resident(inner, buf, t0);
        tracing::debug!(
            "restore {va:#x} ({} B) at use {}, {} us, in {} pieces ({})",
            buf.size,
            crate::residency::seq_now(),
            crate::clock::precise_ns().saturating_sub(t0) / 1000,
            parts.len(),
            debug_split(inner, started)
        );
        Ok(())
    }

    /// A piece-wise restore stopped: the pieces of `back` (the buffer's last ones, mapped and
    /// decoded) are encoded again, lossless (they hold what the copy decoded to; quantizing
    /// them again would add an error), onto what is left of its copy, each piece given back as
    /// soon as its chunk is in, so the buffer is PACKED as before. Err when that encode fails
    /// too: the buffer is then lost (a double failure, as for `put_back`).
    fn repack_restored_pieces(&self, inner: &mut Inner, buf: &Arc<Buffer>, back: &[(u64, u64)]) -> Result<(), c_int> {
        let va = buf.start;
        let mut lost = None;
        if let Some(&(from, _)) = back.first() {
            let opts = PackOptions { lossy: false, ..inner.opts };
            let budget = inner.budget;
            let backend = inner.backend.as_mut().expect("a packed buffer implies a backend");
            let entry = inner.entries.get_mut(&va).expect("looked up by the caller");
            let (phys, mut taken, mut given) = (&mut entry.phys, 0u64, 0usize);
            let mut bound = |done: u64, copy_len: u64| -> Option<u64> {
                budget.take(Part::Packed, copy_len - taken);
                taken = copy_len;
                give_back_covered(va, back, &mut given, phys, budget, from + done).ok().map(|_| u64::MAX)
            };
            let (copy, end) = crate::stats::timed_codec(CodecWork::Encode, || backend.pack(va + from, buf.size - from, opts, &mut bound));
            budget.take(Part::Packed, copy.packed_len() - taken);
            // (the bound runs before each chunk: the pieces of the last one go now)
            let unmapped = !matches!(end, PackEnd::Whole) || give_back_covered(va, back, &mut given, &mut entry.phys, budget, u64::MAX).is_ok();
            match end {
                PackEnd::Whole if unmapped => {
                    count_codec_bytes(&copy);
                    crate::stats::encoded(EncodeCause::Discarded, buf.size - from);
                    entry.extend_copy(copy);
                    entry.note_shrink();
                    entry.copy_tried_lossy = false;
                }
                end => {
                    lost = Some(match end {
                        PackEnd::Failed(e) => e.to_string(),
                        _ => "its encode stopped".to_string(),
                    });
                    discard_copy(budget, backend, copy);
                }
            }
        }
        match lost {
            None => {
                buf.state.store(state::PACKED, Ordering::SeqCst);
                Ok(())
            }
            Some(e) => {
                crate::stats::add(&crate::stats::C.restores_corrupt, 1);
                tracing::error!(
                    "the buffer at {va:#x} ({} bytes) is lost: its restore in pieces stopped and its last pieces could not be packed again ({e}); every later call that names it fails with error {CUDA_ERROR_DATA_CORRUPT}",
                    buf.size
                );
                Err(CUDA_ERROR_DATA_CORRUPT)
            }
        }
    }

    /// Packs every buffer that may be packed now (the control API); how many were.
    pub fn pack_cold(&self) -> i64 {
        let mut inner = self.lock();
        if !self.may_pack(&inner) {
            return -1;
        }
        let all: Vec<u64> = inner.entries.keys().copied().collect();
        all.into_iter().filter(|&a| matches!(self.pack(&mut inner, a, Pass::InRoom), Packed::Done)).count() as i64
    }

    /// Packs buffers unused for `cold_ns` (idle packing); how many were.
    pub fn pack_idle(&self, cold_ns: u64) -> usize {
        let mut inner = self.lock();
        if !self.may_pack(&inner) {
            return 0;
        }
        let now = crate::clock::now_ns();
        let cold: Vec<u64> = inner
            .entries
            .values()
            .filter(|e| e.eligible() && now.saturating_sub(e.buf.last_use_ns.load(Ordering::Relaxed)) >= cold_ns)
            .map(|e| e.buf.start)
            .collect();
        let n = cold.into_iter().filter(|&a| matches!(self.pack(&mut inner, a, Pass::InRoom), Packed::Done)).count();
        crate::stats::add(&crate::stats::C.idle_packs, n as u64);
        n
    }

    /// Restores every packed buffer, packing none to make room (the caller is about to run
    /// something that may touch any of them); how many, or the first failure's status.
    pub fn restore_all(&self) -> Result<usize, c_int> {
        let mut inner = self.lock();
        let packed: Vec<Arc<Buffer>> = inner.entries.values().filter(|e| e.buf.state() == state::PACKED).map(|e| e.buf.clone()).collect();
        // every one is tried (collected, not short-circuited): a failure must not leave the
        // others packed
        let failures: Vec<c_int> = packed.iter().filter_map(|b| self.restore(&mut inner, b, Room::OverLimit).err()).collect();
        match failures.first() {
            Some(&rc) => Err(rc),
            None => Ok(packed.len()),
        }
    }

    /// Our own device work failed: restore what can be restored, log once, pack no more.
    fn fail(&self, inner: &mut Inner, what: &str) {
        crate::warn_once!("the packing engine's own GPU work failed ({what}): restoring every packed buffer and packing no more");
        crate::stats::fallback(crate::stats::Fallback::EngineFailure);
        self.drain_locked(inner);
    }

    fn drain_locked(&self, inner: &mut Inner) {
        if self.drained.swap(true, Ordering::AcqRel) {
            return;
        }
        let packed: Vec<Arc<Buffer>> = inner.entries.values().filter(|e| e.buf.state() == state::PACKED).map(|e| e.buf.clone()).collect();
        for b in packed {
            if self.restore(inner, &b, Room::OverLimit).is_err() {
                tracing::error!("the buffer at {:#x} could not be restored while draining", b.start);
            }
        }
        if let Some(backend) = inner.backend.as_mut() {
            backend.free_spare_slabs(); // (no more moves)
        }
    }

    /// Packing off for good (a panic elsewhere in the library): every buffer made resident.
    pub fn drain(&self) {
        let mut inner = self.lock();
        self.drain_locked(&mut inner);
    }

    /// Under an explicit limit, wakes the thread that works ahead (a restore or an allocation
    /// took room, or a restore on demand means the thread's restores are behind).
    /// Starts the thread that works ahead, once (`LTSHIM_PACK_AHEAD`, `LTSHIM_RESTORE_AHEAD`):
    /// under a set limit with the engine; without one when memory first runs short on the
    /// card, so that a program that fits never has it.
    fn start_ahead(&self) {
        let Some(config) = crate::state::config() else { return };
        let (drops, restores) = (config.pack_ahead, config.restore_ahead);
        if !(drops || restores) || self.ahead.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(e) = on_device(self.dev) {
            ahead::start(e, drops, restores);
        }
    }

    fn keep_room_ahead(&self) {
        if self.ahead.load(Ordering::Relaxed) {
            ahead::poke(self.dev);
        }
    }

    /// The device whose buffers the engine allocates.
    pub fn device(&self) -> c_int {
        self.dev
    }

    /// The program enabled access to this device's memory from `peer`: every buffer mapped
    /// now lets `peer` read and write it, and so does every mapping made later (a packed
    /// buffer gets it at its restore). A grant the driver refuses is said in one line: that
    /// peer's kernels would fault on the buffer, which stays as it is.
    pub fn peer_access(&self, peer: c_int) {
        let mut inner = self.lock();
        if inner.access.contains(&peer) {
            return;
        }
        inner.access.push(peer);
        let _scope = WorkScope::enter(inner.ctx);
        for e in inner.entries.values().filter(|e| !e.phys.is_empty()) {
            if let Err(err) = vmm::grant(e.buf.start, e.reserved, &[peer]) {
                tracing::error!("device {peer} could not be given access to the buffer at {:#x} ({} bytes): {err}; its kernels would fault there", e.buf.start, e.buf.size);
            }
        }
        tracing::info!("device {peer} may now access the memory of device {}: our mappings let it in", inner.dev);
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }
}

/// Fault injection for tests (`ltshim_debug_*`): the next pack fails as our own GPU work would.
static FAIL_NEXT_PACK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
/// `FAIL_NEXT_PACK`: the next pack fails before it encodes.
const FAIL_AT_START: u8 = 1;
/// The next pack of a buffer backed in pieces fails once its first piece is gone.
const FAIL_MIDWAY: u8 = 2;
/// The next restore in pieces cannot map its second piece.
const FAIL_RESTORE_MIDWAY: u8 = 3;

impl Engine {
    /// Tests: flips one bit in the middle of the packed copy of the packed buffer at `addr`
    /// (CPU backend only). False when there is no such copy.
    pub fn corrupt_copy(&self, addr: u64) -> bool {
        let mut inner = self.lock();
        match inner.entries.get_mut(&addr).and_then(|e| e.copy.as_mut()) {
            Some(PackedCopy::Host(chunks)) if chunks.iter().any(|c| !c.bytes.is_empty()) => {
                let n = chunks.len();
                let bytes = &mut chunks[n / 2].bytes;
                let mid = bytes.len() / 2 + 8;
                let i = mid.min(bytes.len() - 1);
                bytes[i] ^= 0x10;
                true
            }
            _ => false,
        }
    }

}

/// Tests: the next pack (on any device) fails as if our GPU work had: before it encodes, or
/// (`midway`) the next pack of a buffer backed in pieces, once its first piece was given back.
pub fn fail_next_pack(midway: bool) {
    FAIL_NEXT_PACK.store(if midway { FAIL_MIDWAY } else { FAIL_AT_START }, Ordering::SeqCst);
}

/// Tests: the next restore in pieces finds no memory for its second piece.
pub fn fail_next_restore_in_pieces() {
    FAIL_NEXT_PACK.store(FAIL_RESTORE_MIDWAY, Ordering::SeqCst);
}

/// A call that may touch any buffer (arguments we cannot read), from before its real call
/// until it has returned: every packed buffer is made resident first, nothing is packed
/// meanwhile, and every later pack waits for its stream.
pub struct OpaqueCall {
    restored: Result<(), c_int>,
}

impl OpaqueCall {
    /// Ok when every packed buffer came back; else the status the call must get instead.
    pub fn restored(&self) -> Result<(), c_int> {
        self.restored
    }

    pub fn begin(stream: u64) -> OpaqueCall {
        OPAQUE_CALLS.fetch_add(1, Ordering::SeqCst);
        {
            let mut s = OPAQUE_STREAMS.lock();
            if !s.contains(&stream) {
                s.push(stream);
            }
        }
        let mut restored = Ok(());
        for e in all() {
            if let Err(rc) = e.restore_all() {
                tracing::error!("a call whose buffers we cannot see came while a packed buffer could not be restored: it fails with error {rc}");
                restored = Err(rc);
            }
        }
        for e in all() {
            e.order_after_restores(stream);
        }
        // whatever is resident now may be written by this call
        crate::registry::anything_may_be_written();
        OpaqueCall { restored }
    }
}

impl Drop for OpaqueCall {
    fn drop(&mut self) {
        // (its writes were queued while it ran: a GEMM elsewhere may have read a buffer whole
        // since `begin`)
        crate::registry::anything_may_be_written();
        OPAQUE_CALLS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets `buf` PACKING if it is resident, unflagged and no hook is between its residency check
/// and its real call (the hook/packer protocol: both sides SeqCst, so a hook either sees
/// PACKING or the packer sees its count); false, with nothing changed, otherwise.
fn claim(buf: &Buffer) -> bool {
    if buf.has_flag(KEEP_RESIDENT) || buf.state.compare_exchange(state::RESIDENT, state::PACKING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return false;
    }
    if buf.users.load(Ordering::SeqCst) != 0 || buf.flags.load(Ordering::SeqCst) & KEEP_RESIDENT != 0 {
        buf.state.store(state::RESIDENT, Ordering::SeqCst);
        return false;
    }
    true
}

/// The streams whose work a pack of `buf` waits for (those that used it, and those that ran a
/// call we could not read), and whether to wait for the whole context instead.
fn streams_to_wait_for(buf: &Buffer) -> (Vec<u64>, bool) {
    let (mut streams, many) = buf.used_streams();
    streams.extend(OPAQUE_STREAMS.lock().iter().copied());
    let many = many || streams.iter().any(|&s| crate::hooks::graph::is_retired(s));
    (streams, many)
}

/// The debug line of a pack that just took `entry`'s memory (`LTSHIM_LOG=debug`).
fn log_pack(entry: &Entry, hint: u8, reused: bool, clean: bool, lossy: bool, t0: u64, split: &str) {
    let buf = &entry.buf;
    let how = match (reused, clean) {
        (true, true) => "its clean copy".to_string(),
        (true, false) => "its copy, checked unchanged".to_string(),
        (false, _) => format!("encoded ({}){}", entry.next_encode.name(), if lossy { ", lossy allowed" } else { "" }),
    };
    let codecs: Vec<String> = entry
        .copy
        .as_ref()
        .map(|c| c.by_codec())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| *i > 0)
        .map(|(id, (i, o))| format!("{} {i} -> {o}", crate::stats::codec_name(id)))
        .collect();
    tracing::debug!(
        "pack {:#x} ({} B, hint {hint}) at use {}, {} us{}: {how}, copy {} B [{}]; idle {} period {} next gap {} uses ({split})",
        buf.start,
        buf.size,
        crate::residency::seq_now(),
        crate::clock::precise_ns().saturating_sub(t0) / 1000,
        if ahead::on_its_thread() { " on the ahead thread" } else { "" },
        entry.copy.as_ref().map_or(0, |c| c.packed_len()),
        codecs.join(", "),
        crate::residency::seq_now().saturating_sub(buf.last_seq.load(Ordering::Relaxed)),
        buf.period.load(Ordering::Relaxed),
        buf.next_gap()
    );
}

/// Where the host time had gone when an operation began, for its debug line: the library's
/// counters (`stats::host_split`) and the GPU packer's synchronous work. None with debug lines
/// off, so that nothing is read then.
#[derive(Clone, Copy)]
struct DebugStart {
    split: [u64; 7],
    waits: Option<ltgpu::packer::Waits>,
}

fn debug_start(inner: &Inner) -> Option<DebugStart> {
    tracing::enabled!(tracing::Level::DEBUG).then(|| DebugStart { split: crate::stats::host_split(), waits: inner.backend.as_ref().and_then(|b| b.waits()) })
}

/// "vmm A us, codec B us (...), wait C us; gpu sync D us in N, ..." since `start` (a pack made
/// inside a restore, for its room, counts in the restore's too; so does another thread's
/// work meanwhile).
fn debug_split(inner: &Inner, start: Option<DebugStart>) -> String {
    let Some(start) = start else { return String::new() };
    let mut line = crate::stats::split_since(start.split);
    if let (Some(a), Some(b)) = (start.waits, inner.backend.as_ref().and_then(|b| b.waits())) {
        let us = |x: u64, y: u64| y.saturating_sub(x) / 1000;
        line += &format!(
            "; gpu sync {} us in {}, transfers {} us, decode kernels {} us, pool {} us",
            us(a.sync_ns, b.sync_ns),
            b.syncs.saturating_sub(a.syncs),
            us(a.transfer_ns, b.transfer_ns),
            us(a.decode_kernel_ns, b.decode_kernel_ns),
            us(a.pool_ns, b.pool_ns)
        );
    }
    line
}

/// Unmaps and releases the mapped pieces of the buffer at `va` whose handles are `handles`
/// (the last pieces of its range); the bytes they held.
fn unback_all(va: u64, reserved: u64, piece: u64, handles: Vec<u64>) -> u64 {
    let parts = vmm::pieces(reserved, piece);
    let mapped = &parts[parts.len() - handles.len()..];
    for (&(off, len), h) in mapped.iter().zip(handles) {
        let _ = vmm::unback(va + off, len, h);
    }
    mapped.iter().map(|&(_, len)| len).sum()
}

/// Maps fresh memory for `parts`, the first pieces of `entry`'s buffer (given back by a pack
/// that then stopped), and decodes its copy, which holds at least their bytes, into the
/// buffer, waiting for it (pieces still mapped get the bytes they hold). The buffer is PACKING
/// meanwhile (no call reaches it): true when it may be made RESIDENT again (by the caller, once
/// done with it); on failure (or with no copy) it is lost (RESTORING for good, every later
/// call that names it failing), and says so.
fn put_back(budget: &Budget, backend: &mut Backend, entry: &mut Entry, parts: &[(u64, u64)], access: &[c_int]) -> bool {
    let addr = entry.buf.start;
    let copy = entry.copy.take();
    let done = match &copy {
        None => Err("it has no copy".to_string()),
        Some(copy) => vmm::back(addr, parts, access).map_err(|e| e.to_string()).and_then(|handles| {
            budget.take(Part::Resident, parts.iter().map(|&(_, len)| len).sum());
            entry.phys.splice(0..0, handles);
            backend.restore_now(copy, addr).map_err(|e| e.to_string())
        }),
    };
    entry.decoded_lossy |= done.is_ok() && copy.as_ref().is_some_and(|c| c.is_lossy());
    entry.copy = copy;
    let Err(e) = done else { return true };
    entry.buf.state.store(state::RESTORING, Ordering::SeqCst);
    crate::stats::add(&crate::stats::C.restores_corrupt, 1);
    tracing::error!(
        "the buffer at {addr:#x} ({} bytes) lost its first {} pieces: its pack stopped after they were given back, and putting them back failed ({e}); every later call that names it fails with error {CUDA_ERROR_DATA_CORRUPT}",
        entry.buf.size,
        parts.len()
    );
    false
}

/// `buf`'s memory is gone (given back to the budget by the caller, piece by piece) and its
/// copy holds it: the budget, its state and the stats say so (a pack that began at `t0`;
/// `reused`: with a kept copy).
fn now_packed(budget: &Budget, buf: &Buffer, reused: bool, t0: u64) {
    budget.take_original(buf.size);
    buf.forget_streams();
    buf.state.store(state::PACKED, Ordering::SeqCst);
    crate::stats::packed(reused, crate::clock::precise_ns() - t0);
}

/// A restore passed the limit (every other buffer in use, or an opaque call): said once, counted.
/// How often an allocation the card refused learns the card's room again and packs for it
/// before it packs past the budget (`Engine::allocate`).
const CARD_RETRIES: u32 = 4;

/// Without a limit the card is the limit, less what the library does not hold (the context,
/// the modules libraries load as they go, other processes, the rounding of the pool that holds
/// packed copies): the bytes held plus the driver's free memory, at most the card. Taken at
/// start and again whenever memory runs short.
fn fit_card(budget: &Budget, ctx: Handle) {
    let _scope = WorkScope::enter(ctx);
    if let Ok((free, total)) = driver::memory_info() {
        budget.limit.store((budget.held() + free).min(total), Ordering::Relaxed);
    }
}

fn restored_over_limit() {
    crate::warn_once!("a buffer had to be restored over LTSHIM_DEVICE_LIMIT: every other buffer was in use");
    crate::stats::add(&crate::stats::C.restores_over_limit, 1);
}

/// Unmaps and releases the pieces of `parts` from the `given`-th on that end at or before the
/// offset `covered` (their bytes are in a copy now), their bytes given back to the budget;
/// `phys` holds the handles of the pieces not yet given back, in order.
fn give_back_covered(va: u64, parts: &[(u64, u64)], given: &mut usize, phys: &mut Vec<u64>, budget: &Budget, covered: u64) -> driver::Result<()> {
    while *given < parts.len() && parts[*given].0 + parts[*given].1 <= covered {
        let (off, len) = parts[*given];
        vmm::unback(va + off, len, phys[0])?;
        phys.remove(0);
        budget.give(Part::Resident, len);
        *given += 1;
    }
    Ok(())
}

/// Counts a new copy's input and packed bytes by codec in the stats.
fn count_codec_bytes(copy: &PackedCopy) {
    for (id, (i, o)) in copy.by_codec().iter().enumerate() {
        crate::stats::codec_bytes(id, *i, *o);
    }
}

/// Gives a packed copy's memory back, and its bytes to the budget.
fn discard_copy(budget: &Budget, backend: &mut Backend, copy: PackedCopy) {
    budget.give_copy(copy.device_len(), copy.host_held());
    crate::stats::timed_codec(CodecWork::Discard, || backend.discard(copy));
}

/// Installs the kernels into `inner` if they are ready; `wait`: wait that long for them first.
fn install_kernels(inner: &mut Inner, wait: Option<std::time::Duration>) {
    let mut k = KERNELS[inner.dev as usize].lock();
    if let (Some(d), Kernels::Loading) = (wait, &*k) {
        tracing::info!("waiting for the packing kernels: memory is needed before they were ready");
        KERNELS_DONE[inner.dev as usize].wait_for(&mut k, d);
    }
    if matches!(*k, Kernels::Ready(_)) {
        if let Kernels::Ready(b) = std::mem::replace(&mut *k, Kernels::Taken) {
            inner.budget.take(Part::Scratch, b.scratch_bytes());
            inner.backend = Some(b);
        }
    }
}

/// A call named a buffer the packing-ahead thread of `buf`'s engine restored: it may restore
/// the next.
pub fn restored_ahead_used(buf: &Buffer) {
    if let Some(e) = of_buffer(buf) {
        ahead::poke(e.dev);
    }
}

/// At exit: the packing-ahead threads stop, and a drop one has under way ends first.
pub fn stop_packing_ahead() {
    ahead::stop();
    for e in all() {
        drop(e.lock());
    }
}

/// At exit: a compile still under way finishes first (NVRTC torn down under a running
/// compile would crash the exiting program).
pub fn wait_for_kernels_at_exit() {
    for (k, done) in KERNELS.iter().zip(&KERNELS_DONE) {
        let mut k = k.lock();
        if matches!(*k, Kernels::Loading) {
            done.wait_for(&mut k, KERNEL_WAIT);
        }
    }
}

/// Compiles or loads the kernels for `dev` on a thread of ours (never on a hook's critical
/// path); until they are ready nothing is packed there (`Engine::start` marked them loading).
/// One device at a time: the first compiles into the on-disk cache, the others load from it.
fn start_kernels(dev: c_int) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let slot = &KERNELS[dev as usize];
    let spawned = std::thread::Builder::new().name("ltshim-kernels".into()).spawn(move || {
        crate::state::mark_internal_thread();
        let made = {
            let _one = ONE_AT_A_TIME.lock();
            ltgpu::packer::Packer::new(dev)
        };
        let mut k = slot.lock();
        *k = match made {
            Ok(mut p) => {
                tracing::info!("packing kernels ready on device {dev}");
                // (the debug lines say how long the decode kernels ran)
                p.time_kernels(tracing::enabled!(tracing::Level::DEBUG));
                Kernels::Ready(Backend::Gpu(Box::new(p)))
            }
            Err(e) => {
                crate::warn_once!("packing is off: the kernels could not be loaded ({e})");
                Kernels::Failed
            }
        };
        KERNELS_DONE[dev as usize].notify_all();
    });
    if let Err(e) = spawned {
        crate::warn_once!("packing is off: no thread for the kernels ({e})");
        *slot.lock() = Kernels::Failed;
    }
}
