//! Residency before the real call: every hook that names device memory collects the buffers
//! it names into a `Uses`, which records the use (path, time, stream, sequence number) and,
//! in the packing modes, counts the hook as a user of each buffer until the real call has
//! returned, so the packer never takes a buffer between a hook's check and the work it queues.
//! `ready` makes any packed buffer among them resident first (the engine's slow path); when
//! nothing is packed it costs an atomic load a buffer.
//!
//! No allocation on the common path: up to `INLINE` distinct buffers are kept in place.
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::registry::{state, Buffer, Path};

static SEQ: AtomicU64 = AtomicU64::new(1);
/// Set once at start-up in the packing modes.
static PACKING: AtomicBool = AtomicBool::new(false);

pub fn set_packing() {
    PACKING.store(true, Ordering::Relaxed);
}

#[inline]
pub fn packing() -> bool {
    PACKING.load(Ordering::Relaxed)
}

/// The use sequence number now (one per hooked call that names buffers).
pub fn seq_now() -> u64 {
    SEQ.load(Ordering::Relaxed)
}

thread_local! {
    /// Set while a call whose operands' roles we know (a GEMM) runs: the kernels it launches
    /// name its operands again, and those uses are its own, already recorded (its outputs as
    /// written, its inputs as read).
    static IN_KNOWN_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `real` (the real function of a call whose reads and writes were recorded) so that the
/// launches inside it do not count as writes of the buffers it only reads.
pub fn as_known_call<T>(real: impl FnOnce() -> T) -> T {
    let outer = IN_KNOWN_CALL.try_with(|c| c.replace(true)).unwrap_or(true);
    let r = real();
    let _ = IN_KNOWN_CALL.try_with(|c| c.set(outer));
    r
}

const INLINE: usize = 8;
/// `CU_STREAM_PER_THREAD` / `cudaStreamPerThread`.
const CU_STREAM_PER_THREAD: u64 = 2;
/// The "stream" of a call that names buffers but queues no work on them (a pointer query):
/// nothing is recorded for it and nothing waits.
pub const NO_STREAM: u64 = u64::MAX;

/// The buffers one call names.
pub struct Uses {
    path: Path,
    stream: u64,
    seq: u64,
    now_ns: u64,
    counted: bool,
    /// Inside a call whose operands' roles we know (`as_known_call`), read at the first use
    /// that may write (it cannot change while a hook names its buffers).
    in_known_call: Option<bool>,
    inline: [Option<Arc<Buffer>>; INLINE],
    len: usize,
    more: Vec<Arc<Buffer>>,
    /// Bit i: the call may write the i-th buffer (past 64, every one counts as written).
    writes: u64,
    opaque: Option<crate::engine::OpaqueCall>,
}

impl Uses {
    /// A call on `stream` (the handle the program passed; 0 for the legacy default stream).
    pub fn new(path: Path, stream: u64) -> Uses {
        // the per-thread default stream's handle means another stream on every thread: its
        // work is waited for through the legacy stream, which it synchronises with
        let stream = if stream == CU_STREAM_PER_THREAD { 0 } else { stream };
        let counted = packing();
        let now_ns = crate::clock::now_ns();
        if counted {
            note_call(now_ns);
        }
        // a call that queues no work (a pointer query) takes no sequence number of its own: it
        // shares the last call's, so that the queries before a launch do not push each other's
        // buffers out of the "last calls", and the launch after it is a burst, not a period
        let seq = match (counted, stream != NO_STREAM) {
            (false, _) => 0,
            (true, true) => SEQ.fetch_add(1, Ordering::Relaxed),
            (true, false) => SEQ.load(Ordering::Relaxed).saturating_sub(1).max(1),
        };
        Uses { path, stream, seq, now_ns, counted, in_known_call: None, inline: Default::default(), len: 0, more: Vec::new(), writes: 0, opaque: None }
    }

    pub fn path(&self) -> Path {
        self.path
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Buffer>> {
        self.inline[..self.len.min(INLINE)].iter().flatten().chain(self.more.iter())
    }

    /// The call may touch any buffer (its arguments could not be read): see `OpaqueCall`.
    pub fn opaque(&mut self) {
        if self.counted && self.opaque.is_none() {
            self.opaque = Some(crate::engine::OpaqueCall::begin(self.stream));
        }
    }

    /// Records a use of `b` by a call that may write it (once per call however often the
    /// call names it).
    pub fn add(&mut self, b: &Arc<Buffer>) {
        self.add_use(b, true);
    }

    /// Records a use of `b` that only reads it (a GEMM's A or B, a copy's source).
    pub fn add_read(&mut self, b: &Arc<Buffer>) {
        self.add_use(b, false);
    }

    fn add_use(&mut self, b: &Arc<Buffer>, writes: bool) {
        if !self.counted {
            b.touch(self.now_ns);
            return;
        }
        let writes = writes && !*self.in_known_call.get_or_insert_with(|| IN_KNOWN_CALL.try_with(|c| c.get()).unwrap_or(false));
        let seen = self.iter().position(|x| Arc::ptr_eq(x, b));
        if let Some(i) = seen {
            if writes && i < 64 {
                self.writes |= 1 << i;
            }
            return; // (touched at its first naming, at this call's time)
        }
        b.touch(self.now_ns);
        b.users.fetch_add(1, Ordering::SeqCst);
        b.used_at(self.seq);
        let i = self.len + self.more.len();
        if writes && i < 64 {
            self.writes |= 1 << i;
        }
        if self.len < INLINE {
            self.inline[self.len] = Some(b.clone());
            self.len += 1;
        } else {
            self.more.push(b.clone());
        }
    }

    /// The call may write its `i`th buffer (past the 64 bits of `writes`, every one may).
    fn may_write(&self, i: usize) -> bool {
        i >= 64 || self.writes & (1 << i) != 0
    }

    /// Every buffer named is resident when this returns Ok; Err is the status the program's
    /// call must get instead of running (a buffer that could not come back). The uses stay
    /// counted until `self` is dropped, after the real call.
    pub fn ready(&mut self) -> Result<(), c_int> {
        if !self.counted {
            return Ok(());
        }
        if let Some(Err(rc)) = self.opaque.as_ref().map(|o| o.restored()) {
            return Err(rc); // a call that may touch any buffer must not run over a packed one
        }
        if !self.iter().all(|b| b.state() == state::RESIDENT) {
            // each by the engine of its device (a call may name buffers of several: peers)
            for engine in crate::engine::all() {
                let dev = engine.device();
                let bufs: Vec<Arc<Buffer>> = self.iter().filter(|b| b.device.load(Ordering::Relaxed) == dev).cloned().collect();
                if bufs.iter().any(|b| b.state() != state::RESIDENT) {
                    engine.make_resident(&bufs)?;
                }
            }
        }
        // recorded now, after the state was seen RESIDENT: a pack that ran since `add` has
        // forgotten the streams of the time before, and a restore has made it clean, never
        // this call's use
        let queues_work = self.stream != NO_STREAM;
        for (i, b) in self.iter().enumerate() {
            if queues_work {
                b.used_on(self.stream);
            }
            if self.may_write(i) {
                b.written_by_a_call();
            }
            if queues_work && b.restored_ahead.load(Ordering::Relaxed) && b.restored_ahead.swap(false, Ordering::Relaxed) {
                crate::engine::restored_ahead_used(b);
            }
            // a restore's decode still under way: this call's stream waits for it (once it is
            // known done no call waits again; its checksums are read by the engine)
            let ev = b.ready_event.load(Ordering::SeqCst);
            if ev != 0 && queues_work {
                if crate::gpu::driver::event_done(ev) {
                    let _ = b.ready_event.compare_exchange(ev, 0, Ordering::SeqCst, Ordering::SeqCst);
                } else {
                    crate::gpu::driver::stream_wait_event(self.stream, ev);
                }
            }
        }
        Ok(())
    }
}

/// Idle packing's clock (`engine::LAST_CALL_NS`) moves to `now_ns`. The coarse clock changes
/// every few milliseconds, so most calls find it there already and only read it: a store on
/// every call would take its cache line from every other thread that makes calls.
fn note_call(now_ns: u64) {
    if crate::engine::LAST_CALL_NS.load(Ordering::Relaxed) != now_ns {
        crate::engine::LAST_CALL_NS.store(now_ns, Ordering::Relaxed);
    }
}

impl Drop for Uses {
    fn drop(&mut self) {
        if self.counted {
            for (i, b) in self.iter().enumerate() {
                // (again, now that its writes are queued: `Buffer::written_by_a_call`)
                if self.may_write(i) {
                    b.written_by_a_call();
                }
                b.users.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}
