//! Monotonic nanoseconds since the library started: buffer last-use times and time spent
//! inside the library.
#![forbid(unsafe_code)]
use once_cell::sync::Lazy;
use std::time::Instant;

static START: Lazy<Instant> = Lazy::new(Instant::now);

#[inline]
pub fn now_ns() -> u64 {
    START.elapsed().as_nanos() as u64
}
