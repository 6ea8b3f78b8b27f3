//! The lookup paths: `dlsym`, `cuGetProcAddress(_v2)`, `cudaGetDriverEntryPoint(ByVersion)`.
//!
//! Libraries fetch driver functions through these instead of linking them (cuBLAS and Triton
//! `dlsym` `cuLaunchKernelEx`; the runtime asks `cuGetProcAddress`), so our exported stubs
//! alone would miss those calls. Each lookup calls the real one first and substitutes our stub
//! only when it succeeded and the pointer it found is the real function behind one of our
//! hooks: for `dlsym` the name must be hooked and the pointer must live in that symbol's home
//! library (checked with `dladdr`, never by name prefix alone); for the CUDA lookups the
//! pointer must equal the real address of a hook, which keeps the exact variant the caller
//! asked for (`_v2`, `_ptsz`, per version). Everything else is handed back untouched.
//!
//! `dlsym` is special: it must stay trivial (no allocation, no lock of ours, no CUDA), and
//! `dlsym(RTLD_NEXT, ...)` must still mean "after the caller", not "after libltshim": a naked
//! entry sends that case straight to glibc with the caller's return address intact.
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use super::HOOKS;
use crate::cuda_abi::*;
use crate::real::{object_of, path_in_family, home_library, real_dlsym};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = false;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// Our stub for a pointer that is the real function behind a hook, if any. The CUDA lookups
/// only hand out driver functions, so only the driver's hooks are compared (resolving the
/// others here would look for cuBLAS or cuDNN symbols that may not be loaded yet).
fn stub_for_real_pointer(p: *mut c_void) -> Option<*mut c_void> {
    if p.is_null() || crate::state::is_passthrough() {
        return None;
    }
    let addr = p as usize;
    HOOKS
        .iter()
        .filter(|h| home_library(h.name.to_bytes()) == b"libcuda.so")
        .find(|h| h.slot.address() == addr)
        .map(|h| h.stub as *mut c_void)
}

/// Replaces `*pfn` by our stub when it is a hooked function.
///
/// # Safety
/// `pfn` is null or the out-parameter the real lookup wrote.
unsafe fn substitute(rc: i32, pfn: *mut *mut c_void) {
    if rc != CUDA_SUCCESS || pfn.is_null() {
        return;
    }
    // SAFETY: written by the real lookup on success.
    let found = unsafe { *pfn };
    if let Some(stub) = super::observe("lookup", || stub_for_real_pointer(found)).flatten() {
        stats::add(&stats::C.lookups_substituted, 1);
        // SAFETY: as above.
        unsafe { *pfn = stub };
    }
}

pub unsafe fn cuGetProcAddress(call: &impl Fn(*const c_char, *mut *mut c_void, c_int, u64) -> i32, symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64) -> i32 {
    let rc = call(symbol, pfn, cuda_version, flags);
    // SAFETY: pfn is the out-parameter of the real lookup.
    unsafe { substitute(rc, pfn) };
    rc
}

pub unsafe fn cuGetProcAddress_v2(call: &impl Fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> i32, symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_int, flags: u64, status: *mut c_int) -> i32 {
    let rc = call(symbol, pfn, cuda_version, flags, status);
    // SAFETY: pfn is the out-parameter of the real lookup.
    unsafe { substitute(rc, pfn) };
    rc
}

pub unsafe fn cudaGetDriverEntryPoint(call: &impl Fn(*const c_char, *mut *mut c_void, u64, *mut c_int) -> i32, symbol: *const c_char, pfn: *mut *mut c_void, flags: u64, status: *mut c_int) -> i32 {
    let rc = call(symbol, pfn, flags, status);
    // SAFETY: pfn is the out-parameter of the real lookup.
    unsafe { substitute(rc, pfn) };
    rc
}

pub unsafe fn cudaGetDriverEntryPointByVersion(call: &impl Fn(*const c_char, *mut *mut c_void, c_uint, u64, *mut c_int) -> i32, symbol: *const c_char, pfn: *mut *mut c_void, cuda_version: c_uint, flags: u64, status: *mut c_int) -> i32 {
    let rc = call(symbol, pfn, cuda_version, flags, status);
    // SAFETY: pfn is the out-parameter of the real lookup.
    unsafe { substitute(rc, pfn) };
    rc
}

// ---- dlsym ----------------------------------------------------------------------------
//
// `dlsym(RTLD_NEXT, name)` means "the next definition after the caller", and glibc finds the
// caller from the return address. So for RTLD_NEXT the entry jumps straight into glibc's
// dlsym (resolved at load time, see `real::REAL_DLSYM`) with the caller's own return address
// on the stack, and substitutes nothing: a program asking for the next definition of a
// function is an interposer of its own and must get exactly that. Every other handle goes
// through `dlsym_body`.

#[cfg(all(not(test), target_arch = "x86_64"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
/// # Safety
/// The C `dlsym` contract.
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "cmp rdi, -1",
        "jne 2f",
        "mov rax, qword ptr [rip + {real}]",
        "test rax, rax",
        "jz 2f",
        "jmp rax",
        "2:",
        "jmp {body}",
        real = sym crate::real::REAL_DLSYM,
        body = sym dlsym_body,
    )
}

#[cfg(all(not(test), target_arch = "aarch64"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
/// # Safety
/// The C `dlsym` contract.
pub unsafe extern "C" fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "cmn x0, #1",
        "b.ne 2f",
        "adrp x16, {real}",
        "ldr x16, [x16, :lo12:{real}]",
        "cbz x16, 2f",
        "br x16",
        "2:",
        "b {body}",
        real = sym crate::real::REAL_DLSYM,
        body = sym dlsym_body,
    )
}

#[cfg_attr(test, allow(dead_code))]
extern "C" fn dlsym_body(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // No catch_unwind needed: nothing below can panic (no allocation, no indexing, no unwrap).
    stats::add(&stats::C.dlsym_calls, 1);
    // SAFETY: the caller's own arguments, forwarded. (RTLD_NEXT only reaches here before
    // REAL_DLSYM is set, where "after libltshim" is the best answer we have.)
    let found = unsafe { real_dlsym(handle, name) };
    if found.is_null() || name.is_null() || crate::state::is_passthrough() {
        return found;
    }
    // SAFETY: name is the NUL-terminated string the caller passed.
    let wanted = unsafe { CStr::from_ptr(name) };
    let bytes = wanted.to_bytes();
    if !(bytes.starts_with(b"cu") || bytes.starts_with(b"__cuda") || bytes.starts_with(b"nccl")) {
        return found;
    }
    let Some(hook) = HOOKS.iter().find(|h| h.name == wanted) else { return found };
    let in_home = matches!(object_of(found as usize), Some((file, _)) if path_in_family(file.to_bytes(), home_library(bytes)));
    if !in_home {
        return found;
    }
    if hook.slot.offer(found as usize) {
        stats::add(&stats::C.lookups_substituted, 1);
        hook.stub as *mut c_void
    } else {
        stats::fallback(stats::Fallback::LookupMismatch);
        found
    }
}
