//! The `ltshim_*` control API (declared in `shim/ltshim.h`): what a program, or a harness
//! through ctypes, may ask of the library while it runs.
#![cfg_attr(test, allow(dead_code))] // exported only outside unit tests
use std::ffi::{c_char, c_int, c_void};

use crate::registry::flag;

fn boundary<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The library version as a NUL-terminated string.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Writes the stats report (JSON) into `buf` (up to `len` bytes, NUL-terminated when it fits)
/// and returns its full length, so a caller can retry with a larger buffer.
///
/// # Safety
/// `buf` is null or valid for `len` bytes of writes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ltshim_stats_json(buf: *mut c_char, len: usize) -> usize {
    boundary(0, || {
        let json = crate::stats::report_json();
        if !buf.is_null() && len > json.len() {
            // SAFETY: len > json.len(), so the bytes and the NUL fit in the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(json.as_ptr(), buf as *mut u8, json.len());
                *buf.add(json.len()) = 0;
            }
        }
        json.len()
    })
}

/// Pins (or unpins) the buffer holding `ptr` resident. Returns 0, or -1 when `ptr` is not in
/// a buffer the library knows.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_pin(ptr: *const c_void, pinned: c_int) -> c_int {
    boundary(-1, || {
        let Some(b) = crate::registry::REGISTRY.find(ptr as u64) else { return -1 };
        // a pin may restore a packed buffer: our CUDA calls must not be seen as the program's
        let _guard = crate::state::HookGuard::enter(false, true);
        if pinned != 0 {
            crate::hooks::mark(ptr as u64, flag::PINNED);
        } else {
            b.flags.fetch_and(!flag::PINNED, std::sync::atomic::Ordering::Relaxed);
        }
        0
    })
}

/// Packs every buffer that may be packed now. Returns how many were packed, or -1 when
/// packing is off (observe, off, passthrough, the kernels not ready yet).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_pack_cold() -> i64 {
    boundary(-1, || {
        if !crate::state::is_active() || !crate::engine::any_running() {
            return -1;
        }
        let _guard = crate::state::HookGuard::enter(false, false);
        // every device's; -1 only when none may pack
        let counts: Vec<i64> = crate::engine::all().map(|e| e.pack_cold()).collect();
        if counts.iter().all(|&n| n < 0) {
            -1
        } else {
            counts.iter().filter(|&&n| n > 0).sum()
        }
    })
}

/// Makes every packed buffer resident. Returns how many were restored, or -1 when packing is
/// off (or a buffer could not be restored).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_restore_all() -> i64 {
    boundary(-1, || {
        if !crate::engine::any_running() {
            return -1;
        }
        let _guard = crate::state::HookGuard::enter(false, true);
        // every device is tried, even after one failed
        let counts: Vec<i64> = crate::engine::all().map(|e| e.restore_all().map_or(-1, |n| n as i64)).collect();
        if counts.contains(&-1) {
            -1
        } else {
            counts.iter().sum()
        }
    })
}

/// Marks the end of one step of the program (the stats count restores per step).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_step() {
    boundary((), crate::stats::step)
}

/// Fault injection, for tests: flips a bit of the packed copy of the packed buffer holding
/// `ptr` (the CPU backend of the CUDA double only). 0, or -1 when there is no such copy.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_debug_corrupt_packed(ptr: *const c_void) -> c_int {
    boundary(-1, || {
        let Some(b) = crate::registry::REGISTRY.find(ptr as u64) else { return -1 };
        match crate::engine::of_buffer(&b) {
            Some(e) if e.corrupt_copy(b.start) => 0,
            _ => -1,
        }
    })
}

/// Fault injection, for tests: the next pack fails as the engine's own GPU work would (the
/// engine then restores everything and packs no more); with `midway` nonzero, the next pack
/// of a buffer backed in pieces, once it has given its first piece back (which must come
/// back); with `midway` 2, the next restore of a buffer in pieces one piece at a time
/// (`restores_in_pieces`) finds no memory for its second piece. 0, or -1 without an engine.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn ltshim_debug_fail_next_pack(midway: c_int) -> c_int {
    boundary(-1, || match crate::engine::any_running() {
        true => {
            match midway {
                2 => crate::engine::fail_next_restore_in_pieces(),
                m => crate::engine::fail_next_pack(m != 0),
            }
            0
        }
        false => -1,
    })
}
