//! The C-ABI surface: one exported stub per symbol of `list.rs`, generated here, each
//! forwarding into the body of the same name in its family module.
//!
//! A stub: resolve the real function (missing → the family's not-found status); take the
//! thread guard (none → call the real function and return); count the call; run the family
//! body, which calls the real function exactly once through `call` with the caller's own
//! arguments. The body runs inside `catch_unwind`: if it panics, the library switches to
//! passthrough and the caller still gets the real call's result (made now if the body had
//! not made it yet). The caller always receives the real function's own return value.
#![allow(non_snake_case, non_upper_case_globals, clippy::too_many_arguments)]

pub mod alloc;
pub mod blas;
pub mod copy;
pub mod dnn;
pub mod graph;
pub mod info;
pub mod launch;
mod list;
pub mod lookup;
pub mod nccl;
pub mod peer;
pub mod query;
pub mod vmm;

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::real::RealSlot;
use crate::registry::Path;
use crate::residency::Uses;

/// What the lookup hooks need of each hooked symbol.
pub struct HookEntry {
    pub name: &'static CStr,
    /// Our exported stub.
    pub stub: *const (),
    pub slot: &'static dyn SlotOps,
}

// SAFETY: the entries are immutable after construction; `stub` is a code address.
unsafe impl Sync for HookEntry {}

pub trait SlotOps: Sync {
    fn address(&self) -> usize;
    fn offer(&self, addr: usize) -> bool;
}

impl<F: Copy> SlotOps for RealSlot<F> {
    fn address(&self) -> usize {
        RealSlot::address(self)
    }
    fn offer(&self, addr: usize) -> bool {
        RealSlot::offer(self, addr)
    }
}

// SAFETY: RealSlot holds only an atomic and a static name.
unsafe impl<F: Copy> Sync for RealSlot<F> {}

macro_rules! generate_hooks {
    ($( $family:ident fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty; )*) => {
        /// Index of each hook in the call counters.
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Clone, Copy)]
        #[repr(usize)]
        pub enum HookId { $($name,)* }

        pub const HOOK_NAMES: &[&str] = &[$(stringify!($name),)*];
        pub const HOOK_COUNT: usize = HOOK_NAMES.len();

        /// The real functions behind the hooks.
        pub struct Slots { $(pub $name: RealSlot<unsafe extern "C" fn($($ty),*) -> $ret>,)* }
        pub static REAL: Slots = Slots {
            $($name: RealSlot::new(crate::real::cstr(concat!(stringify!($name), "\0").as_bytes())),)*
        };

        pub static HOOKS: &[HookEntry] = &[$(HookEntry {
            name: crate::real::cstr(concat!(stringify!($name), "\0").as_bytes()),
            stub: exports::$name as *const (),
            slot: &REAL.$name,
        },)*];

        pub mod exports {
            use super::*;
            $(
                #[cfg_attr(not(test), no_mangle)]
                pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                    let Some(real) = REAL.$name.get() else {
                        crate::stats::fallback(crate::stats::Fallback::SymbolMissing);
                        crate::warn_once!(
                            "the real {} could not be found (not loaded, or loaded where the library cannot see it): the call returns {} instead",
                            stringify!($name), $family::MISSING
                        );
                        return $family::MISSING;
                    };
                    let Some(guard) = crate::state::HookGuard::enter($family::PRIMITIVE, $family::EVEN_IN_PASSTHROUGH) else {
                        // SAFETY: the caller's arguments, unchanged, to the function it meant.
                        return unsafe { real($($arg),*) };
                    };
                    crate::stats::count_call(HookId::$name as usize);
                    let timer = crate::stats::HookTimer::start(HookId::$name as usize);
                    let outcome = std::cell::Cell::new(None);
                    let call = |$($arg: $ty),*| -> $ret {
                        // SAFETY: as above; the body passes the caller's arguments through.
                        let r = timer.around_real(|| guard.around_real(|| unsafe { real($($arg),*) }));
                        outcome.set(Some(r));
                        r
                    };
                    // SAFETY: the body's contract is the C function's own: the arguments are
                    // what the caller passed to the real function.
                    match catch_unwind(AssertUnwindSafe(|| unsafe { $family::$name(&call, $($arg),*) })) {
                        Ok(r) => r,
                        Err(_) => {
                            crate::init::internal_error(stringify!($name));
                            match outcome.get() {
                                Some(r) => r,
                                // SAFETY: the real call had not been made: make it now.
                                None => unsafe { real($($arg),*) },
                            }
                        }
                    }
                }
            )*
        }
    };
}

use crate::cuda_abi::*;
use std::os::raw::{c_char, c_int, c_uint, c_void};

crate::for_each_hook!(generate_hooks);

/// Runs library work inside a hook body: a panic in it switches the library to
/// passthrough instead of reaching the caller. Returns None after a panic.
#[inline]
pub fn observe<T>(hook: &'static str, work: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(v) => Some(v),
        Err(_) => {
            crate::init::internal_error(hook);
            None
        }
    }
}

/// What the driver says of an address we do not know: Some(true) for host memory (pageable
/// memory is unknown to the driver, an error; pinned memory is HOST), Some(false) for device
/// memory, None when it cannot be asked.
fn driver_says_host(addr: u64) -> Option<bool> {
    let attr = crate::real::USES.cuPointerGetAttribute.get()?;
    let mut kind: c_uint = 0;
    // SAFETY: a driver query with a valid out-parameter; the driver API leaves no sticky error.
    let rc = unsafe { attr(&mut kind as *mut c_uint as *mut c_void, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, addr) };
    match rc {
        CUDA_SUCCESS => Some(kind == CU_MEMORYTYPE_HOST),
        // "invalid value": an address the driver does not know, i.e. pageable host memory
        CUDA_ERROR_INVALID_VALUE => Some(true),
        // any other failure (no context, a dead one) tells nothing: never read the address
        _ => None,
    }
}

/// True when `addr` is host memory (so it may be read here): not a buffer we know, and not
/// device memory according to the driver.
pub fn is_host(addr: u64) -> bool {
    addr != 0 && crate::registry::REGISTRY.find(addr).is_none() && driver_says_host(addr) == Some(true)
}

/// Collects the buffers holding `ptrs` into `uses`, as uses that may write them.
/// `count_missing`: a pointer in no buffer that the driver does not call host memory counts as
/// a miss (library arguments; a scalar passed by host pointer, or cuDNN's by-value tensors, are
/// host memory and not misses).
pub fn collect(uses: &mut Uses, ptrs: &[u64], count_missing: bool) {
    collect_as(uses, ptrs, count_missing, Uses::add)
}

/// `collect` for operands the call only reads (a GEMM's A and B).
pub fn collect_reads(uses: &mut Uses, ptrs: &[u64]) {
    collect_as(uses, ptrs, true, Uses::add_read)
}

fn collect_as(uses: &mut Uses, ptrs: &[u64], count_missing: bool, add: fn(&mut Uses, &std::sync::Arc<crate::registry::Buffer>)) {
    let path = uses.path();
    let reader = crate::registry::REGISTRY.reader();
    let mut missing = Vec::new();
    for &p in ptrs {
        if p == 0 {
            continue;
        }
        match reader.find(p) {
            Some(b) => {
                add(uses, b);
                crate::stats::pointer(path, true);
            }
            None if count_missing => missing.push(p),
            None => {}
        }
    }
    drop(reader); // no lock of ours across the driver's pointer query
    for p in missing {
        if driver_says_host(p) != Some(true) {
            crate::stats::pointer(path, false);
        }
    }
}

/// Collects every buffer that `len` bytes from `addr` fall in (a copy may span neighbours),
/// as uses that may write them.
pub fn collect_range(uses: &mut Uses, addr: u64, len: u64) {
    collect_range_as(uses, addr, len, Uses::add)
}

/// `collect_range` for a range the call only reads (a copy's source).
pub fn collect_range_read(uses: &mut Uses, addr: u64, len: u64) {
    collect_range_as(uses, addr, len, Uses::add_read)
}

fn collect_range_as(uses: &mut Uses, addr: u64, len: u64, add: fn(&mut Uses, &std::sync::Arc<crate::registry::Buffer>)) {
    if addr == 0 {
        return;
    }
    let reader = crate::registry::REGISTRY.reader();
    let end = addr.saturating_add(len.max(1));
    let mut at = addr;
    while let Some(b) = reader.find(at) {
        add(uses, b);
        crate::stats::pointer(uses.path(), true);
        at = b.start + b.size;
        if at >= end {
            break;
        }
    }
}

/// Runs `real` with every buffer `name` collects made resident first (and counted as in use
/// until `real` returns): the real call's status, or the status of a buffer that could not come
/// back, in which case `real` does not run. A runtime caller then also finds an error in the
/// runtime's last-error slot (invalid argument, not that status: PyTorch reads launch errors
/// only there, and a failed call must not look like a success).
pub fn with_resident(hook: &'static str, path: Path, stream: Handle, name: impl FnOnce(&mut Uses), real: impl FnOnce() -> i32) -> i32 {
    with_resident_as(hook, path, stream, name, real, |rc| rc)
}

/// `with_resident` for a library whose calls return statuses of their own (cuBLAS, cuDNN):
/// `status_of` turns the CUDA status of a buffer that could not come back into one of them.
pub fn with_resident_as(hook: &'static str, path: Path, stream: Handle, name: impl FnOnce(&mut Uses), real: impl FnOnce() -> i32, status_of: impl FnOnce(i32) -> i32) -> i32 {
    // built in place and used by reference: a `Uses` is ~150 bytes, and moving it out of the
    // closure, the result and the panic boundary copied it three times on every call
    let mut uses = None;
    let ready = observe(hook, || {
        let uses = uses.insert(Uses::new(path, stream as u64));
        name(uses);
        uses.ready()
    });
    match ready {
        Some(Ok(())) => {
            let rc = real();
            drop(uses);
            rc
        }
        Some(Err(rc)) => {
            drop(uses);
            if hook.starts_with("cuda") || hook.starts_with("__cuda") {
                leave_runtime_error();
            }
            status_of(rc)
        }
        None => {
            drop(uses);
            real()
        }
    }
}

/// Puts an error into the runtime's last-error slot, without touching the device: a memset of
/// a null pointer, which the runtime refuses as an invalid argument.
fn leave_runtime_error() {
    if let Some(memset) = REAL.cudaMemsetAsync.get() {
        // SAFETY: a null destination is refused before any device work.
        unsafe { memset(std::ptr::null_mut(), 0, 1, std::ptr::null_mut()) };
    }
}

/// Sets a flag on a buffer already in hand (counted the first time).
pub fn mark_buffer(b: &crate::registry::Buffer, f: u32) {
    if b.flags.fetch_or(f, std::sync::atomic::Ordering::SeqCst) & f == 0 {
        crate::stats::flagged(f);
    }
}

/// Runs a call whose arguments we do not read as one that may touch any buffer.
pub fn opaque_call(hook: &'static str, path: Path, stream: Handle, real: impl FnOnce() -> i32) -> i32 {
    with_resident(hook, path, stream, |u| u.opaque(), real)
}

/// Sets a flag on the buffer holding `addr`, counting it the first time. A packed buffer that
/// gets a keep-resident flag is made resident at once (a kernel may now reach it by a pointer
/// no hook sees).
pub fn mark(addr: u64, f: u32) -> bool {
    let Some(b) = crate::registry::REGISTRY.find(addr) else { return false };
    mark_buffer(&b, f);
    if b.state() != crate::registry::state::RESIDENT {
        if let Some(e) = crate::engine::of_buffer(&b) {
            b.users.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if e.make_resident(std::slice::from_ref(&b)).is_err() {
                tracing::error!("the buffer at {:#x} was flagged resident but could not be restored", b.start);
            }
            e.wait_restored(&b);
            b.users.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    true
}
