//! Time for the library's own bookkeeping.
//!
//! `now_ns` (buffer last-use times) reads CLOCK_MONOTONIC_COARSE: coldness is judged in
//! milliseconds, and the coarse clock costs a few nanoseconds where the precise one can cost
//! far more inside a VM. `precise_ns` is for measuring time spent inside the library, which
//! `stats::HookTimer` samples (one hooked call in `SAMPLE_EVERY`) rather than timing every call.
use std::sync::atomic::{AtomicI64, Ordering};

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we own; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static START: AtomicI64 = AtomicI64::new(-1);

/// Coarse monotonic nanoseconds since the library first asked (resolution a few ms).
#[inline]
pub fn now_ns() -> u64 {
    let now = read(libc::CLOCK_MONOTONIC_COARSE);
    let start = match START.load(Ordering::Relaxed) {
        -1 => {
            let _ = START.compare_exchange(-1, now as i64, Ordering::Relaxed, Ordering::Relaxed);
            START.load(Ordering::Relaxed)
        }
        s => s,
    };
    now.saturating_sub(start as u64)
}

/// Precise monotonic nanoseconds (an arbitrary origin).
#[inline]
pub fn precise_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}
