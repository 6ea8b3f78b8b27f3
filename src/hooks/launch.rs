//! Kernel launch hooks, runtime and driver, `kernelParams` and `extra` forms.
//!
//! A launch is forwarded byte for byte (the configuration pointer itself, every attribute
//! untouched). Before it, the parameters are scanned through the kernel's layout and every
//! buffer they point into is made resident and counted as used by it (the driver-level hooks
//! are the net under every library: cuBLAS, cuDNN 9, Triton and cuFFT launch through them).
//! Launches made while a stream is being captured are counted apart (they run later, as graph
//! kernels) and their buffers flagged `CAPTURED`.
use std::os::raw::{c_uint, c_void};

use std::sync::Arc;

use super::with_resident;
use crate::cuda_abi::*;
use crate::layout::{layout_of, KernelRef, Layout};
use crate::registry::{Buffer, Misses, Path, Reader, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// Calls `on_buffer` with every live buffer a launch's arguments point into. False when the
/// arguments could not be read (an unknown layout, an `extra` array we do not understand):
/// then the launch may touch any buffer. No allocation: this runs on every launch.
///
/// # Safety
/// `params` / `extra` are the launch's own argument arrays, valid for this kernel.
pub unsafe fn record_arguments(path: Path, kernel: KernelRef, params: *mut *mut c_void, extra: *mut *mut c_void, mut on_buffer: impl FnMut(&Arc<Buffer>)) -> bool {
    let layout = match layout_of(kernel) {
        Layout::Known(l) => Some(l),
        Layout::NoParameters => return true,
        Layout::Unknown => None,
    };
    let mut scan = Scan { recent: Default::default(), next: 0, misses: REGISTRY.misses(), found: 0, reader: None, on_buffer: &mut on_buffer };
    // most words are small numbers, which the registry's bounds (read once a launch) turn away
    // in two compares; only this part is inlined into the scan's loop (with the whole check
    // in it the closure became a call a word: +2,000 instructions a 136-word launch under
    // callgrind)
    let (lo, hi) = REGISTRY.bounds();
    let mut visit = |w: u64| {
        if w >= lo && w < hi {
            scan.in_range(w)
        }
    };
    let readable = if !params.is_null() {
        match &layout {
            Some(l) => {
                // SAFETY: per the contract, params holds one pointer per parameter of this layout.
                unsafe { crate::scan::kernel_params(l, params, &mut visit) };
                true
            }
            None => {
                stats::fallback(stats::Fallback::LayoutUnknown);
                false
            }
        }
    } else if !extra.is_null() {
        // SAFETY: per the contract, extra is a launch's extra array.
        let read = unsafe { crate::scan::extra(extra, layout, &mut visit) };
        if !read {
            stats::fallback(stats::Fallback::ExtraUnreadable);
        }
        read
    } else {
        true
    };
    stats::pointers_found(path, true, scan.found);
    readable
}

/// Buffers a launch's scan checks a word against before it looks in the map.
const RECENT_BUFFERS: usize = 4;

/// One launch's scan of the words inside the registry's bounds. A kernel's parameters name the
/// same few buffers again and again (a cuBLAS kernel on the H200: ~12 pointers found in ~136
/// words a launch, into a few buffers, and ~9 more words in range but in no buffer,
/// docs/PERF.md P57): the buffers found last and the thread's known misses (`Misses`) are
/// checked before the map, which is looked up (under its read lock, taken once) only for the
/// rest.
struct Scan<'a, F: FnMut(&Arc<Buffer>)> {
    recent: [Option<Arc<Buffer>>; RECENT_BUFFERS],
    next: usize,
    misses: Misses,
    found: u64,
    reader: Option<Reader<'static>>,
    on_buffer: &'a mut F,
}

impl<F: FnMut(&Arc<Buffer>)> Scan<'_, F> {
    #[inline(never)]
    fn in_range(&mut self, w: u64) {
        if let Some(b) = self.recent.iter().flatten().find(|b| b.contains(w)) {
            self.found += 1;
            (self.on_buffer)(b);
            return;
        }
        if self.misses.known(w) {
            return;
        }
        let r = self.reader.get_or_insert_with(|| REGISTRY.reader());
        match r.find(w) {
            Some(b) => {
                self.found += 1;
                (self.on_buffer)(b);
                self.recent[self.next % RECENT_BUFFERS] = Some(b.clone());
                self.next += 1;
            }
            None => self.misses.note(w),
        }
    }
}

/// One launch: counted by path (or as captured); every buffer its arguments reach resident
/// before the real launch. A launch whose arguments we cannot read makes every packed buffer
/// resident first, and its stream is one every later pack waits for.
///
/// # Safety
/// As `record_arguments`.
unsafe fn launch(hook: &'static str, path: Path, kernel: KernelRef, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void, real: impl FnOnce() -> i32) -> i32 {
    let mut readable = true;
    let rc = with_resident(
        hook,
        path,
        stream,
        |u| {
            let captured = super::graph::is_capturing(stream);
            if captured {
                stats::add(&stats::C.launches_captured, 1);
            } else if path == Path::RuntimeLaunch {
                stats::add(&stats::C.launches_runtime, 1);
            } else {
                stats::add(&stats::C.launches_driver, 1);
            }
            // SAFETY: forwarded contract.
            readable = unsafe {
                record_arguments(path, kernel, params, extra, |b| {
                    if captured {
                        super::mark_buffer(b, crate::registry::flag::CAPTURED);
                    }
                    u.add(b)
                })
            };
            if !readable {
                u.opaque();
            }
        },
        real,
    );
    rc
}

type RtLaunch<'a> = dyn Fn(Handle, Dim3, Dim3, *mut *mut c_void, usize, Handle) -> i32 + 'a;

pub unsafe fn __cudaLaunchKernel(call: &RtLaunch<'_>, kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { launch("__cudaLaunchKernel", Path::RuntimeLaunch, KernelRef::Kernel(kernel), stream, args, std::ptr::null_mut(), || call(kernel, grid, block, args, shared_mem, stream)) }
}

pub unsafe fn __cudaLaunchKernel_ptsz(call: &RtLaunch<'_>, kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { launch("__cudaLaunchKernel_ptsz", Path::RuntimeLaunch, KernelRef::Kernel(kernel), stream, args, std::ptr::null_mut(), || call(kernel, grid, block, args, shared_mem, stream)) }
}

type RtStubLaunch<'a> = dyn Fn(*const c_void, Dim3, Dim3, *mut *mut c_void, usize, Handle) -> i32 + 'a;

unsafe fn stub_launch(hook: &'static str, call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { launch(hook, Path::RuntimeLaunch, KernelRef::HostStub(func as Handle), stream, args, std::ptr::null_mut(), || call(func, grid, block, args, shared_mem, stream)) }
}

pub unsafe fn cudaLaunchKernel(call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: forwarded.
    unsafe { stub_launch("cudaLaunchKernel", call, func, grid, block, args, shared_mem, stream) }
}

pub unsafe fn cudaLaunchKernel_ptsz(call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: forwarded.
    unsafe { stub_launch("cudaLaunchKernel_ptsz", call, func, grid, block, args, shared_mem, stream) }
}

pub unsafe fn cudaLaunchCooperativeKernel(call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: forwarded.
    unsafe { stub_launch("cudaLaunchCooperativeKernel", call, func, grid, block, args, shared_mem, stream) }
}

pub unsafe fn cudaLaunchCooperativeKernel_ptsz(call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: forwarded.
    unsafe { stub_launch("cudaLaunchCooperativeKernel_ptsz", call, func, grid, block, args, shared_mem, stream) }
}

unsafe fn ex_c(hook: &'static str, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void, real: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the program passes a valid configuration to the real call.
    let stream = if config.is_null() { std::ptr::null_mut() } else { unsafe { (*config).stream } };
    // SAFETY: args belong to this kernel's launch.
    unsafe { launch(hook, Path::RuntimeLaunch, KernelRef::HostStub(func as Handle), stream, args, std::ptr::null_mut(), real) }
}

pub unsafe fn cudaLaunchKernelExC(call: &impl Fn(*const cudaLaunchConfig_t, *const c_void, *mut *mut c_void) -> i32, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex_c("cudaLaunchKernelExC", config, func, args, || call(config, func, args)) }
}

pub unsafe fn cudaLaunchKernelExC_ptsz(call: &impl Fn(*const cudaLaunchConfig_t, *const c_void, *mut *mut c_void) -> i32, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex_c("cudaLaunchKernelExC_ptsz", config, func, args, || call(config, func, args)) }
}

type DrvLaunch<'a> = dyn Fn(Handle, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Handle, *mut *mut c_void, *mut *mut c_void) -> i32 + 'a;

pub unsafe fn cuLaunchKernel(call: &DrvLaunch<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: params/extra belong to this launch.
    unsafe { launch("cuLaunchKernel", Path::DriverLaunch, KernelRef::Function(f), stream, params, extra, || call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params, extra)) }
}

pub unsafe fn cuLaunchKernel_ptsz(call: &DrvLaunch<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: params/extra belong to this launch.
    unsafe { launch("cuLaunchKernel_ptsz", Path::DriverLaunch, KernelRef::Function(f), stream, params, extra, || call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params, extra)) }
}

unsafe fn ex(hook: &'static str, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void, real: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the program passes a valid configuration to the real call.
    let stream = if config.is_null() { std::ptr::null_mut() } else { unsafe { (*config).hStream } };
    // SAFETY: params/extra belong to this launch.
    unsafe { launch(hook, Path::DriverLaunch, KernelRef::Function(f), stream, params, extra, real) }
}

pub unsafe fn cuLaunchKernelEx(call: &impl Fn(*const CUlaunchConfig, Handle, *mut *mut c_void, *mut *mut c_void) -> i32, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex("cuLaunchKernelEx", config, f, params, extra, || call(config, f, params, extra)) }
}

pub unsafe fn cuLaunchKernelEx_ptsz(call: &impl Fn(*const CUlaunchConfig, Handle, *mut *mut c_void, *mut *mut c_void) -> i32, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex("cuLaunchKernelEx_ptsz", config, f, params, extra, || call(config, f, params, extra)) }
}

type DrvCoop<'a> = dyn Fn(Handle, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Handle, *mut *mut c_void) -> i32 + 'a;

pub unsafe fn cuLaunchCooperativeKernel(call: &DrvCoop<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> i32 {
    // SAFETY: params belong to this launch.
    unsafe { launch("cuLaunchCooperativeKernel", Path::DriverLaunch, KernelRef::Function(f), stream, params, std::ptr::null_mut(), || call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params)) }
}

pub unsafe fn cuLaunchCooperativeKernel_ptsz(call: &DrvCoop<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> i32 {
    // SAFETY: params belong to this launch.
    unsafe { launch("cuLaunchCooperativeKernel_ptsz", Path::DriverLaunch, KernelRef::Function(f), stream, params, std::ptr::null_mut(), || call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params)) }
}
