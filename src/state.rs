//! The library's one start-up state machine and the per-thread re-entrancy guard.
//!
//! `Uninit → Active | Passthrough`, decided by the first hook that runs (never in an ELF
//! constructor: the loader lock may be held and CUDA may not be usable yet). Passthrough is
//! permanent: a bad knob, `LTSHIM_MODE=off`, an internal panic, or being the child of a fork
//! all end there, and from then on every hook only calls the real function.
//!
//! The thread guard has two bits. `BUSY`: this thread runs library code, so a hook reached
//! from it (a logger, an allocator, a lookup) passes straight through. `IN_PRIMITIVE`: this
//! thread is inside the real call of an allocation, copy or launch hook, so a nested hook of
//! the same kind (cudart calling a driver pointer we handed out) is the same operation seen
//! twice and passes through. Library calls (cuBLAS, cuDNN, graph launch) are not primitive:
//! the kernels they launch are real launches we must see.
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use once_cell::sync::OnceCell;

use crate::config::Config;

const UNINIT: u8 = 0;
const ACTIVE: u8 = 1;
const PASSTHROUGH: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static CONFIG: OnceCell<Config> = OnceCell::new();

/// True when hooks should observe; initialises the library on first call.
#[inline]
pub fn is_active() -> bool {
    match STATE.load(Ordering::Acquire) {
        ACTIVE => true,
        PASSTHROUGH => false,
        _ => {
            CONFIG.get_or_init(crate::init::start);
            STATE.load(Ordering::Acquire) == ACTIVE
        }
    }
}

/// False once the library has given up for good (a lookup hook then hands out real pointers).
pub fn is_passthrough() -> bool {
    STATE.load(Ordering::Acquire) == PASSTHROUGH
}

/// The configuration, once started.
pub fn config() -> Option<&'static Config> {
    CONFIG.get()
}

pub(crate) fn set_active() {
    let _ = STATE.compare_exchange(UNINIT, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
}

/// Permanent passthrough.
pub fn enter_passthrough() {
    STATE.store(PASSTHROUGH, Ordering::Release);
}

/// Marks the calling thread as one of the library's own: every hook it reaches passes
/// straight through (its CUDA calls are ours, not the program's).
pub fn mark_internal_thread() {
    let _ = THREAD.try_with(|t| t.set(t.get() | BUSY));
}

const BUSY: u8 = 1;
const IN_PRIMITIVE: u8 = 2;

thread_local! {
    static THREAD: Cell<u8> = const { Cell::new(0) };
}

/// Held while a hook runs library code on this thread.
pub struct HookGuard {
    primitive: bool,
    saved: u8,
}

impl HookGuard {
    /// None means "call the real function and nothing else": we are already inside the
    /// library on this thread, or the library passes through.
    /// `even_in_passthrough`: the body runs in passthrough too (it checks `is_active` itself:
    /// frees of the engine's buffers must still reach the engine).
    #[inline]
    pub fn enter(primitive: bool, even_in_passthrough: bool) -> Option<HookGuard> {
        let bits = THREAD.try_with(|t| t.get()).ok()?;
        if bits & BUSY != 0 || (primitive && bits & IN_PRIMITIVE != 0) {
            return None;
        }
        THREAD.with(|t| t.set(bits | BUSY));
        let guard = HookGuard { primitive, saved: bits };
        if !is_active() && !(even_in_passthrough && crate::engine::any_running()) {
            return None; // drop restores the bits
        }
        Some(guard)
    }

    /// Runs the real call with the guard lowered, so that hooks reached from inside a library
    /// call are observed (or, for primitives, recognised as nested).
    #[inline]
    pub fn around_real<R>(&self, real: impl FnOnce() -> R) -> R {
        let inside = if self.primitive { self.saved | IN_PRIMITIVE } else { self.saved };
        THREAD.with(|t| t.set(inside));
        let r = real();
        THREAD.with(|t| t.set(self.saved | BUSY));
        r
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        let _ = THREAD.try_with(|t| t.set(self.saved));
    }
}
