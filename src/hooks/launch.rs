//! Kernel launch hooks, runtime and driver, `kernelParams` and `extra` forms.
//!
//! A launch is forwarded byte for byte (the configuration pointer itself, every attribute
//! untouched). Before it, the parameters are scanned through the kernel's layout and every
//! buffer they point into gets its use recorded. Launches made while a stream is being
//! captured are counted apart: they run later, as graph kernels.
use std::os::raw::{c_uint, c_void};

use super::observe;
use crate::cuda_abi::*;
use crate::layout::{layout_of, KernelRef};
use crate::registry::{Path, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;

/// Records the buffers a launch's arguments point into; their start addresses go to
/// `starts` when given (graph nodes keep them). No allocation otherwise: this runs on every
/// launch.
///
/// # Safety
/// `params` / `extra` are the launch's own argument arrays, valid for this kernel.
pub unsafe fn record_arguments(path: Path, kernel: KernelRef, params: *mut *mut c_void, extra: *mut *mut c_void, mut starts: Option<&mut Vec<u64>>) {
    let layout = layout_of(kernel);
    let now = crate::clock::now_ns();
    let mut reader = None;
    let mut visit = |w: u64| {
        if !REGISTRY.may_contain(w) {
            return;
        }
        let r = reader.get_or_insert_with(|| REGISTRY.reader());
        if let Some(b) = r.find(w) {
            b.touch(path, now);
            stats::pointer(path, true);
            if let Some(s) = starts.as_deref_mut() {
                s.push(b.start);
            }
        }
    };
    if !params.is_null() {
        match &layout {
            // SAFETY: per the contract, params holds one pointer per parameter of this layout.
            Some(l) => unsafe { crate::scan::kernel_params(l, params, &mut visit) },
            None => stats::fallback(stats::Fallback::LayoutUnknown),
        }
    } else if !extra.is_null() {
        // SAFETY: per the contract, extra is a launch's extra array.
        if !unsafe { crate::scan::extra(extra, layout.as_deref(), &mut visit) } {
            stats::fallback(stats::Fallback::ExtraUnreadable);
        }
    }
}

/// One launch: count it by path (or as captured) and record its arguments.
///
/// # Safety
/// As `record_arguments`.
unsafe fn observe_launch(hook: &'static str, path: Path, kernel: KernelRef, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) {
    observe(hook, || {
        if super::graph::is_capturing(stream) {
            stats::add(&stats::C.launches_captured, 1);
        } else if path == Path::RuntimeLaunch {
            stats::add(&stats::C.launches_runtime, 1);
        } else {
            stats::add(&stats::C.launches_driver, 1);
        }
        // SAFETY: forwarded contract.
        unsafe { record_arguments(path, kernel, params, extra, None) };
    });
}

type RtLaunch<'a> = dyn Fn(Handle, Dim3, Dim3, *mut *mut c_void, usize, Handle) -> i32 + 'a;

pub unsafe fn __cudaLaunchKernel(call: &RtLaunch<'_>, kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { observe_launch("__cudaLaunchKernel", Path::RuntimeLaunch, KernelRef::Kernel(kernel), stream, args, std::ptr::null_mut()) };
    call(kernel, grid, block, args, shared_mem, stream)
}

pub unsafe fn __cudaLaunchKernel_ptsz(call: &RtLaunch<'_>, kernel: Handle, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { observe_launch("__cudaLaunchKernel_ptsz", Path::RuntimeLaunch, KernelRef::Kernel(kernel), stream, args, std::ptr::null_mut()) };
    call(kernel, grid, block, args, shared_mem, stream)
}

type RtStubLaunch<'a> = dyn Fn(*const c_void, Dim3, Dim3, *mut *mut c_void, usize, Handle) -> i32 + 'a;

unsafe fn stub_launch(hook: &'static str, call: &RtStubLaunch<'_>, func: *const c_void, grid: Dim3, block: Dim3, args: *mut *mut c_void, shared_mem: usize, stream: Handle) -> i32 {
    // SAFETY: args belong to this kernel's launch.
    unsafe { observe_launch(hook, Path::RuntimeLaunch, KernelRef::HostStub(func as Handle), stream, args, std::ptr::null_mut()) };
    call(func, grid, block, args, shared_mem, stream)
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

unsafe fn ex_c(hook: &'static str, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) {
    // SAFETY: the program passes a valid configuration to the real call.
    let stream = if config.is_null() { std::ptr::null_mut() } else { unsafe { (*config).stream } };
    // SAFETY: args belong to this kernel's launch.
    unsafe { observe_launch(hook, Path::RuntimeLaunch, KernelRef::HostStub(func as Handle), stream, args, std::ptr::null_mut()) };
}

pub unsafe fn cudaLaunchKernelExC(call: &impl Fn(*const cudaLaunchConfig_t, *const c_void, *mut *mut c_void) -> i32, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex_c("cudaLaunchKernelExC", config, func, args) };
    call(config, func, args)
}

pub unsafe fn cudaLaunchKernelExC_ptsz(call: &impl Fn(*const cudaLaunchConfig_t, *const c_void, *mut *mut c_void) -> i32, config: *const cudaLaunchConfig_t, func: *const c_void, args: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex_c("cudaLaunchKernelExC_ptsz", config, func, args) };
    call(config, func, args)
}

type DrvLaunch<'a> = dyn Fn(Handle, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Handle, *mut *mut c_void, *mut *mut c_void) -> i32 + 'a;

pub unsafe fn cuLaunchKernel(call: &DrvLaunch<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: params/extra belong to this launch.
    unsafe { observe_launch("cuLaunchKernel", Path::DriverLaunch, KernelRef::Function(f), stream, params, extra) };
    call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params, extra)
}

pub unsafe fn cuLaunchKernel_ptsz(call: &DrvLaunch<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: params/extra belong to this launch.
    unsafe { observe_launch("cuLaunchKernel_ptsz", Path::DriverLaunch, KernelRef::Function(f), stream, params, extra) };
    call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params, extra)
}

unsafe fn ex(hook: &'static str, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) {
    // SAFETY: the program passes a valid configuration to the real call.
    let stream = if config.is_null() { std::ptr::null_mut() } else { unsafe { (*config).hStream } };
    // SAFETY: params/extra belong to this launch.
    unsafe { observe_launch(hook, Path::DriverLaunch, KernelRef::Function(f), stream, params, extra) };
}

pub unsafe fn cuLaunchKernelEx(call: &impl Fn(*const CUlaunchConfig, Handle, *mut *mut c_void, *mut *mut c_void) -> i32, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex("cuLaunchKernelEx", config, f, params, extra) };
    call(config, f, params, extra)
}

pub unsafe fn cuLaunchKernelEx_ptsz(call: &impl Fn(*const CUlaunchConfig, Handle, *mut *mut c_void, *mut *mut c_void) -> i32, config: *const CUlaunchConfig, f: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> i32 {
    // SAFETY: forwarded.
    unsafe { ex("cuLaunchKernelEx_ptsz", config, f, params, extra) };
    call(config, f, params, extra)
}

type DrvCoop<'a> = dyn Fn(Handle, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Handle, *mut *mut c_void) -> i32 + 'a;

pub unsafe fn cuLaunchCooperativeKernel(call: &DrvCoop<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> i32 {
    // SAFETY: params belong to this launch.
    unsafe { observe_launch("cuLaunchCooperativeKernel", Path::DriverLaunch, KernelRef::Function(f), stream, params, std::ptr::null_mut()) };
    call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params)
}

pub unsafe fn cuLaunchCooperativeKernel_ptsz(call: &DrvCoop<'_>, f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, shared_mem: c_uint, stream: Handle, params: *mut *mut c_void) -> i32 {
    // SAFETY: params belong to this launch.
    unsafe { observe_launch("cuLaunchCooperativeKernel_ptsz", Path::DriverLaunch, KernelRef::Function(f), stream, params, std::ptr::null_mut()) };
    call(f, gx, gy, gz, bx, by, bz, shared_mem, stream, params)
}
