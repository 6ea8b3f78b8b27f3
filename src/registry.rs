//! The table of live device buffers: address-range lookup and what we know of each buffer.
//!
//! A buffer is one allocation the program made (for PyTorch, a caching-allocator segment that
//! holds many tensors). Lookups happen on every launch, so the map sits behind a read-mostly
//! lock and each buffer's counters are atomics updated under the read lock; `lo..hi` bounds
//! all live buffers so that most scanned words are rejected without taking the lock at all.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use once_cell::sync::Lazy;
use parking_lot::{RwLock, RwLockReadGuard};

/// How a reference to a buffer reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Path {
    RuntimeLaunch,
    DriverLaunch,
    Graph,
    Cublas,
    Cudnn,
    Copy,
    Set,
    Nccl,
    /// A pointer query (`cuPointerGetAttribute` & co).
    Query,
}

pub const PATHS: [Path; 9] = [Path::RuntimeLaunch, Path::DriverLaunch, Path::Graph, Path::Cublas, Path::Cudnn, Path::Copy, Path::Set, Path::Nccl, Path::Query];

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::RuntimeLaunch => "runtime_launch",
            Path::DriverLaunch => "driver_launch",
            Path::Graph => "graph",
            Path::Cublas => "cublas",
            Path::Cudnn => "cudnn",
            Path::Copy => "copy",
            Path::Set => "set",
            Path::Nccl => "nccl",
            Path::Query => "pointer_query",
        }
    }
}

/// Facts that keep a buffer resident (see docs/SAFETY.md).
pub mod flag {
    /// Passed to a call whose pointers we cannot all see.
    pub const OPAQUE: u32 = 1;
    /// Its address was written into device memory by a host-to-device copy.
    pub const POINTED_FROM_DEVICE: u32 = 2;
    /// Referenced by an instantiated CUDA graph that is still alive.
    pub const GRAPH: u32 = 4;
    /// Exported through IPC or a shareable handle.
    pub const EXPORTED: u32 = 8;
    /// Pinned resident by the control API.
    pub const PINNED: u32 = 16;
    /// Memory the program mapped itself (cuMemMap): never ours to remap.
    pub const USER_MAPPED: u32 = 32;
    /// Used on a stream while it was being captured into a graph.
    pub const CAPTURED: u32 = 64;
    /// Not a reason to stay resident: a pass-through allocation counted against the limit.
    pub const CHARGED: u32 = 128;

    pub const ALL: [(u32, &str); 7] = [
        (OPAQUE, "opaque"),
        (POINTED_FROM_DEVICE, "pointed_from_device"),
        (GRAPH, "graph"),
        (EXPORTED, "exported"),
        (PINNED, "pinned"),
        (USER_MAPPED, "user_mapped"),
        (CAPTURED, "captured"),
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    // (named in the report's live_by_origin)
    Runtime,
    Driver,
    StreamOrdered,
    UserMapped,
}

impl Origin {
    pub const ALL: [(Origin, &'static str); 4] =
        [(Origin::Runtime, "runtime"), (Origin::Driver, "driver"), (Origin::StreamOrdered, "stream_ordered"), (Origin::UserMapped, "user_mapped")];
}

/// Where a buffer's physical memory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Allocated by the real CUDA call: the library never remaps it.
    Foreign,
    /// A VMM range the library reserved and maps itself (packing modes): `reserved` bytes of
    /// address space, backed while resident by one physical allocation, or by one a codec
    /// chunk for a buffer of several chunks (`gpu::vmm::pieces`).
    Vmm { reserved: u64 },
}

/// Residency of a buffer. Changed only by the engine, under its lock; read by every hook.
pub mod state {
    pub const RESIDENT: u8 = 0;
    /// The engine is packing it (its users counted zero when this was set).
    pub const PACKING: u8 = 1;
    /// Its physical memory is released; the packed copy holds its bytes.
    pub const PACKED: u8 = 2;
    /// The engine is mapping and decoding it.
    pub const RESTORING: u8 = 3;
}

/// Streams a buffer was used on since it was last made resident: a few slots filled lock-free,
/// then `STREAMS_MANY` (the packer then waits on every stream it knows).
pub const STREAM_SLOTS: usize = 4;
pub const STREAM_NONE: u64 = u64::MAX;

pub struct Buffer {
    pub start: u64,
    pub size: u64,
    pub origin: Origin,
    pub backing: Backing,
    pub last_use_ns: AtomicU64,
    pub flags: AtomicU32,
    /// `state::*`.
    pub state: AtomicU8,
    /// Hooks between their residency check and the return of their real call: the packer
    /// never takes a buffer whose count is not zero.
    pub users: AtomicU32,
    pub streams: [AtomicU64; STREAM_SLOTS],
    pub streams_overflow: AtomicBool,
    /// Use sequence numbers (`crate::residency::seq_now`): the last use, and the reuse period
    /// the policy predicts the next use from (`crate::policy::next_period`), and the last
    /// gaps between uses (`crate::policy::Gaps`, as its two words).
    pub last_seq: AtomicU64,
    pub period: AtomicU64,
    gaps: [AtomicU64; 2],
    /// The float type GEMM calls named it with (`ltblock::DType::id() + 1`, 0 = unknown): the
    /// codecs' element type for it.
    pub float_hint: AtomicU8,
    /// A GEMM read all of it as floats since anything last wrote it, so the bytes in it now are
    /// that one tensor's: only then may int8 take them. A write clears it (the caching
    /// allocator puts other tensors, integers or masks into a freed segment), and a call that
    /// may touch anything outdates it (the write epoch moves on). `(epoch + 1) << 8 | type` at
    /// the read (0: none), in one word so that a pack reads the type and whether it still
    /// holds at once.
    read_whole: AtomicU64,
    /// Since it was last made resident: a call that may write it named it (`Uses::add`; a
    /// read-only operand does not), or a call that may touch anything ran (`write_epoch`).
    /// A clean buffer equals its kept copy, so dropping it again costs no check.
    pub written: AtomicBool,
    pub clean_epoch: AtomicU64,
    /// The event a restore's decode on the library's stream ends with, 0 once known done:
    /// a call on any stream waits for it before it uses the buffer.
    pub ready_event: AtomicU64,
    /// The device whose engine allocated it or whose limit it is charged to (-1: neither).
    pub device: std::sync::atomic::AtomicI32,
    /// Restored by the packing-ahead thread before any call named it: its first use wakes the
    /// thread to restore the next one (`engine::ahead`).
    pub restored_ahead: AtomicBool,
}

/// Counts calls that may write any buffer (opaque calls): a buffer made resident before the
/// latest of them may have been written by it.
static WRITE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// A call that may write any buffer is about to run, or has just returned (a GEMM on another
/// thread may read a buffer whole in between, before the writes are queued).
pub fn anything_may_be_written() {
    WRITE_EPOCH.fetch_add(1, Ordering::SeqCst);
}

impl Buffer {
    pub fn new(start: u64, size: u64, origin: Origin, backing: Backing, flags: u32) -> Buffer {
        let now = crate::clock::now_ns();
        Buffer {
            start,
            size,
            origin,
            backing,
            last_use_ns: AtomicU64::new(now),
            flags: AtomicU32::new(flags),
            state: AtomicU8::new(state::RESIDENT),
            users: AtomicU32::new(0),
            streams: [const { AtomicU64::new(STREAM_NONE) }; STREAM_SLOTS],
            streams_overflow: AtomicBool::new(false),
            last_seq: AtomicU64::new(0),
            period: AtomicU64::new(0),
            gaps: [AtomicU64::new(0), AtomicU64::new(0)],
            float_hint: AtomicU8::new(0),
            read_whole: AtomicU64::new(0),
            written: AtomicBool::new(true),
            clean_epoch: AtomicU64::new(0),
            ready_event: AtomicU64::new(0),
            device: std::sync::atomic::AtomicI32::new(-1),
            restored_ahead: AtomicBool::new(false),
        }
    }

    /// Made resident from its packed copy: it equals the copy until something writes it.
    pub fn made_clean(&self) {
        self.written.store(false, Ordering::SeqCst);
        self.clean_epoch.store(WRITE_EPOCH.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// A GEMM read all of it as floats of type `hint`.
    pub fn read_whole_as_floats(&self, hint: u8) {
        self.float_hint.store(hint, Ordering::SeqCst);
        self.read_whole.store((WRITE_EPOCH.load(Ordering::SeqCst) + 1) << 8 | hint as u64, Ordering::SeqCst);
    }

    /// A call that may write it named it (before its real call, and again after it returned:
    /// a GEMM on another thread may read it whole in between, before the write is queued): it
    /// no longer holds what a GEMM read.
    pub fn written_by_a_call(&self) {
        if !self.written.load(Ordering::Relaxed) {
            self.written.store(true, Ordering::SeqCst);
        }
        if self.read_whole.load(Ordering::Relaxed) != 0 {
            self.read_whole.store(0, Ordering::SeqCst);
        }
    }

    /// The float type a GEMM read all of it as, if nothing may have written it since
    /// (`read_whole_as_floats`): the type int8 may take it as.
    pub fn floats_read_whole(&self) -> Option<u8> {
        let v = self.read_whole.load(Ordering::SeqCst);
        (v != 0 && (v >> 8) == WRITE_EPOCH.load(Ordering::SeqCst) + 1).then_some((v & 0xff) as u8)
    }

    /// Nothing may have written it since `made_clean`.
    pub fn is_clean(&self) -> bool {
        !self.written.load(Ordering::SeqCst) && self.clean_epoch.load(Ordering::SeqCst) == WRITE_EPOCH.load(Ordering::SeqCst)
    }

    pub fn touch(&self, now_ns: u64) {
        self.last_use_ns.store(now_ns, Ordering::Relaxed);
    }

    /// A use at sequence number `seq`. (Two threads' uses at once may lose one's gap: these
    /// are predictions, and each word stays whole.)
    pub fn used_at(&self, seq: u64) {
        let last = self.last_seq.swap(seq, Ordering::Relaxed);
        if last != 0 && seq > last {
            let gap = seq - last;
            let p = self.period.load(Ordering::Relaxed);
            self.period.store(crate::policy::next_period(p, gap), Ordering::Relaxed);
            if gap > crate::policy::BURST {
                let [a, b] = self.gaps().after(gap).to_words();
                self.gaps[0].store(a, Ordering::Relaxed);
                self.gaps[1].store(b, Ordering::Relaxed);
            }
        }
    }

    /// Its last gaps between uses.
    pub fn gaps(&self) -> crate::policy::Gaps {
        crate::policy::Gaps::from_words([self.gaps[0].load(Ordering::Relaxed), self.gaps[1].load(Ordering::Relaxed)])
    }

    /// The gap to its next use the policy predicts (`crate::policy::next_gap`).
    pub fn next_gap(&self) -> u64 {
        crate::policy::next_gap(self.period.load(Ordering::Relaxed), self.gaps())
    }

    /// Uses from `now` to its predicted next use (`crate::policy::ahead`).
    pub fn ahead(&self, now: u64) -> u64 {
        crate::policy::ahead(self.last_seq.load(Ordering::Relaxed), self.period.load(Ordering::Relaxed), self.gaps(), now)
    }

    /// Remembers that `stream` used it (lock-free; a full set overflows to "many").
    pub fn used_on(&self, stream: u64) {
        for slot in &self.streams {
            let cur = slot.load(Ordering::Relaxed);
            if cur == stream {
                return;
            }
            if cur == STREAM_NONE {
                match slot.compare_exchange(STREAM_NONE, stream, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(now) if now == stream => return,
                    Err(_) => continue,
                }
            }
        }
        self.streams_overflow.store(true, Ordering::Release);
    }

    /// The streams recorded since the last reset, and whether some did not fit.
    pub fn used_streams(&self) -> (Vec<u64>, bool) {
        let v = self.streams.iter().map(|s| s.load(Ordering::Acquire)).filter(|&s| s != STREAM_NONE).collect();
        (v, self.streams_overflow.load(Ordering::Acquire))
    }

    pub fn forget_streams(&self) {
        for s in &self.streams {
            s.store(STREAM_NONE, Ordering::Release);
        }
        self.streams_overflow.store(false, Ordering::Release);
    }

    pub fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    pub fn is_vmm(&self) -> bool {
        matches!(self.backing, Backing::Vmm { .. })
    }

    pub fn has_flag(&self, f: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & f != 0
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.size
    }
}

#[derive(Default)]
pub struct Registry {
    map: RwLock<BTreeMap<u64, Arc<Buffer>>>,
    lo: AtomicU64,
    hi: AtomicU64,
    /// Moves on with every buffer added: a word that fell in no buffer may fall in one after.
    generation: AtomicU64,
}

/// Slots of `Misses` (direct-mapped by the word's bits).
const MISS_SLOTS: usize = 16;

/// Words a thread looked up that fell inside the registry's range but in no buffer, good while
/// the registry has gained no buffer since (`generation`). Kernel parameters hold the same such
/// words launch after launch (pointers into memory we do not track, such as a library's module
/// globals: on the H200 a cuBLAS launch had ~9 a launch, a runtime launch ~4, docs/PERF.md P57),
/// and each cost a lookup in the map under its lock. Buffers only removed never turn a miss
/// into a hit, so only additions move the generation. A handle on the thread's slots, as good
/// as the generation it was taken at (`Registry::misses`), for the lookups of one call: a
/// buffer added after the call began cannot be one the call names (the program had its
/// pointer only once the allocation returned, and the allocation adds it before returning).
/// The slots are thread-local cells, so a launch copies nothing in or out.
#[derive(Clone, Copy)]
pub struct Misses {
    generation: u64,
}

impl Misses {
    fn slot(word: u64) -> usize {
        ((word >> 4) ^ (word >> 21)) as usize % MISS_SLOTS
    }

    /// `word` fell in no buffer when last looked up, and no buffer was added since. (0, the
    /// empty slot, is never inside the registry's range: the bounds check turns it away first.)
    #[inline]
    pub fn known(&self, word: u64) -> bool {
        MISSES.try_with(|(g, words)| g.get() == self.generation && words[Self::slot(word)].get() == word).unwrap_or(false)
    }

    pub fn note(&self, word: u64) {
        let _ = MISSES.try_with(|(g, words)| {
            if g.get() != self.generation {
                words.iter().for_each(|w| w.set(0));
                g.set(self.generation);
            }
            words[Self::slot(word)].set(word);
        });
    }
}

thread_local! {
    static MISSES: (std::cell::Cell<u64>, [std::cell::Cell<u64>; MISS_SLOTS]) = const { (std::cell::Cell::new(u64::MAX), [const { std::cell::Cell::new(0) }; MISS_SLOTS]) };
}

pub static REGISTRY: Lazy<Registry> = Lazy::new(Registry::default);

/// A read view for a batch of lookups (one lock for a whole launch).
pub struct Reader<'a> {
    map: RwLockReadGuard<'a, BTreeMap<u64, Arc<Buffer>>>,
}

impl Reader<'_> {
    pub fn find(&self, addr: u64) -> Option<&Arc<Buffer>> {
        let (_, b) = self.map.range(..=addr).next_back()?;
        b.contains(addr).then_some(b)
    }
}

impl Registry {
    /// True when `word` could be a pointer into some live buffer (cheap, lock-free).
    #[inline]
    pub fn may_contain(&self, word: u64) -> bool {
        let (lo, hi) = self.bounds();
        word >= lo && word < hi
    }

    /// `[lo, hi)`, the addresses `may_contain` accepts now (for a batch of words).
    #[inline]
    pub fn bounds(&self) -> (u64, u64) {
        (self.lo.load(Ordering::Relaxed), self.hi.load(Ordering::Relaxed))
    }

    pub fn reader(&self) -> Reader<'_> {
        Reader { map: self.map.read() }
    }

    /// This thread's known misses as good now (those noted before a buffer was added are
    /// not known). Take it before the lookups it saves.
    pub fn misses(&self) -> Misses {
        Misses { generation: self.generation.load(Ordering::SeqCst) }
    }

    pub fn find(&self, addr: u64) -> Option<Arc<Buffer>> {
        self.reader().find(addr).cloned()
    }

    /// Records a new buffer; returns false if one already starts there (seen twice).
    pub fn insert(&self, start: u64, size: u64, origin: Origin, flags: u32) -> bool {
        self.insert_buffer(Buffer::new(start, size, origin, Backing::Foreign, flags)).is_some()
    }

    /// Records a buffer built by the caller; None if one already starts there.
    pub fn insert_buffer(&self, b: Buffer) -> Option<Arc<Buffer>> {
        if b.size == 0 {
            return None;
        }
        let mut map = self.map.write();
        if map.contains_key(&b.start) {
            return None;
        }
        let b = Arc::new(b);
        map.insert(b.start, b.clone());
        self.update_bounds(&map);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Some(b)
    }

    /// Puts back a buffer taken out by `remove` (its free failed).
    pub fn restore(&self, b: Arc<Buffer>) {
        let mut map = self.map.write();
        map.entry(b.start).or_insert(b);
        self.update_bounds(&map);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets the buffer that starts at `start`.
    pub fn remove(&self, start: u64) -> Option<Arc<Buffer>> {
        let mut map = self.map.write();
        let b = map.remove(&start)?;
        self.update_bounds(&map);
        Some(b)
    }

    /// Forgets every buffer that starts inside `[start, start+size)`.
    pub fn remove_range(&self, start: u64, size: u64) -> Vec<Arc<Buffer>> {
        let mut map = self.map.write();
        let keys: Vec<u64> = map.range(start..start.saturating_add(size)).map(|(k, _)| *k).collect();
        let out = keys.iter().filter_map(|k| map.remove(k)).collect();
        self.update_bounds(&map);
        out
    }

    fn update_bounds(&self, map: &BTreeMap<u64, Arc<Buffer>>) {
        let lo = map.values().next().map(|b| b.start).unwrap_or(u64::MAX);
        let hi = map.values().next_back().map(|b| b.start + b.size).unwrap_or(0);
        self.lo.store(lo, Ordering::Relaxed);
        self.hi.store(hi, Ordering::Relaxed);
    }

    /// The buffers that hold some byte of `[start, start+size)`.
    pub fn overlapping(&self, start: u64, size: u64) -> Vec<Arc<Buffer>> {
        if size == 0 {
            return Vec::new();
        }
        let map = self.map.read();
        let first = map.range(..=start).next_back().map(|(_, b)| b).filter(|b| b.contains(start));
        let rest = map.range(start.saturating_add(1)..start.saturating_add(size)).map(|(_, b)| b);
        first.into_iter().chain(rest).cloned().collect()
    }

    /// All live buffers (for the report).
    pub fn snapshot(&self) -> Vec<Arc<Buffer>> {
        self.map.read().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_inside_and_not_past_the_end() {
        let r = Registry::default();
        assert!(r.insert(0x1000, 0x100, Origin::Runtime, 0));
        assert!(r.insert(0x2000, 0x10, Origin::Driver, 0));
        assert_eq!(r.find(0x1000).unwrap().start, 0x1000);
        assert_eq!(r.find(0x10ff).unwrap().start, 0x1000);
        assert!(r.find(0x1100).is_none());
        assert!(r.find(0xfff).is_none());
        assert_eq!(r.find(0x200f).unwrap().start, 0x2000);
        assert!(r.find(0x2010).is_none());
    }

    #[test]
    fn bounds_follow_inserts_and_removals() {
        let r = Registry::default();
        assert!(!r.may_contain(0x1000));
        r.insert(0x1000, 0x100, Origin::Runtime, 0);
        r.insert(0x3000, 0x100, Origin::Runtime, 0);
        assert!(r.may_contain(0x1000) && r.may_contain(0x30ff) && !r.may_contain(0x3100));
        r.remove(0x3000);
        assert!(!r.may_contain(0x3000));
        r.remove(0x1000);
        assert!(!r.may_contain(0x1000));
    }

    #[test]
    fn a_second_insert_at_the_same_address_is_refused() {
        let r = Registry::default();
        assert!(r.insert(0x1000, 0x100, Origin::Runtime, 0));
        assert!(!r.insert(0x1000, 0x100, Origin::Driver, 0));
        assert_eq!(r.find(0x1000).unwrap().origin, Origin::Runtime);
    }

    #[test]
    fn a_known_miss_lasts_until_a_buffer_is_added_and_no_longer() {
        let r = Registry::default();
        r.insert(0x1000, 0x100, Origin::Runtime, 0);
        r.insert(0x9000, 0x100, Origin::Runtime, 0);
        let m = r.misses();
        assert!(!m.known(0x5000));
        m.note(0x5000);
        assert!(r.misses().known(0x5000), "kept for the next launch");
        r.remove(0x9000);
        assert!(r.misses().known(0x5000), "a removal turns no miss into a hit");
        // a buffer now covers the word: the miss is forgotten, and the lookup finds it
        r.insert(0x5000, 0x100, Origin::Runtime, 0);
        assert!(!r.misses().known(0x5000));
        assert_eq!(r.find(0x5000).unwrap().start, 0x5000);
        // a buffer put back after a failed free counts as added too
        r.misses().note(0x7000);
        let b = Arc::new(Buffer::new(0x7000, 0x100, Origin::Runtime, Backing::Foreign, 0));
        r.restore(b);
        assert!(!r.misses().known(0x7000));
        // a handle taken before an addition notes nothing that a later one knows
        let old = r.misses();
        r.insert(0xa000, 0x100, Origin::Runtime, 0);
        old.note(0x7100);
        r.misses().note(0x7200);
        assert!(!r.misses().known(0x7100) && r.misses().known(0x7200));
        // words that share a slot replace each other: never a false "known"
        let (a, b) = (0x5100u64, 0x5100 + ((MISS_SLOTS as u64) << 4));
        assert_eq!(Misses::slot(a), Misses::slot(b));
        let m = r.misses();
        m.note(a);
        assert!(m.known(a) && !m.known(b));
        m.note(b);
        assert!(m.known(b) && !m.known(a));
    }

    #[test]
    fn remove_range_takes_every_buffer_starting_inside() {
        let r = Registry::default();
        for i in 0..4u64 {
            r.insert(0x10000 + i * 0x1000, 0x1000, Origin::UserMapped, flag::USER_MAPPED);
        }
        assert_eq!(r.remove_range(0x11000, 0x2000).len(), 2);
        assert!(r.find(0x10000).is_some() && r.find(0x13000).is_some() && r.find(0x11000).is_none());
    }
}
