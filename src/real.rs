//! Resolving the real CUDA functions behind our hooks, once each, typed and optional.
//!
//! Order: `dlsym(RTLD_NEXT)` (the library after us in the global scope), then every library
//! already loaded whose file name belongs to the symbol's home family (`libcuda.so*`,
//! `libcudart.so*`, ...), opened with `RTLD_NOLOAD` so that we never load a second copy, then
//! the pointers the lookup hooks saw (`offer`). A pointer that lands inside our own library is
//! refused (that would be a loop). A missing symbol is remembered as missing and means
//! "passthrough impossible": the stub returns the family's not-found status.
#![allow(non_snake_case, non_upper_case_globals)]

use std::ffi::{c_void, CStr};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int, c_uint};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cuda_abi::*;

const UNRESOLVED: usize = 0;
const MISSING: usize = 1;

/// One real function: 0 = not found (yet), else the address. A miss is not remembered: the
/// library that defines the symbol may be loaded later (frameworks dlopen cuBLAS and cuDNN when
/// first needed), and a stub that kept answering "missing" would fail the program's calls.
pub struct RealSlot<F: Copy> {
    name: &'static CStr,
    addr: AtomicUsize,
    _f: PhantomData<F>,
}

impl<F: Copy> RealSlot<F> {
    pub const fn new(name: &'static CStr) -> Self {
        assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>());
        RealSlot { name, addr: AtomicUsize::new(UNRESOLVED), _f: PhantomData }
    }

    /// The real function, resolved on first use.
    #[inline]
    pub fn get(&self) -> Option<F> {
        let addr = match self.addr.load(Ordering::Acquire) {
            UNRESOLVED => self.resolve(),
            a => a,
        };
        if addr == MISSING {
            return None;
        }
        // SAFETY: F is an `unsafe extern "C" fn` type of pointer size (asserted in `new`) and
        // addr is the address of the symbol of that name, whose C signature F transcribes.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
    }

    /// The address, resolving it if needed; 0 when missing.
    pub fn address(&self) -> usize {
        self.get().map(|_| self.addr.load(Ordering::Acquire)).unwrap_or(0)
    }

    fn resolve(&self) -> usize {
        let Some(found) = resolve_symbol(self.name) else { return MISSING };
        match self.addr.compare_exchange(UNRESOLVED, found, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => found,
            Err(other) => other,
        }
    }

    /// A lookup hook saw the real pointer for this name: take it if we had none.
    /// Returns true when our slot now holds exactly `addr` (so our stub may stand in for it).
    pub fn offer(&self, addr: usize) -> bool {
        if addr <= MISSING || is_own_address(addr) {
            return false;
        }
        let current = self.addr.load(Ordering::Acquire);
        if current == addr {
            return true;
        }
        if current == UNRESOLVED {
            return match self.addr.compare_exchange(current, addr, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => true,
                Err(now) => now == addr,
            };
        }
        false
    }
}

/// The library family a symbol belongs to, from its name; used to find the loaded library
/// that defines it and to check that a pointer handed out by a lookup really lives there.
pub fn home_library(name: &[u8]) -> &'static [u8] {
    if name.starts_with(b"cublasLt") {
        b"libcublasLt.so"
    } else if name.starts_with(b"cublas") {
        b"libcublas.so"
    } else if name.starts_with(b"cudnn") {
        b"libcudnn"
    } else if name.starts_with(b"nccl") {
        // (PyTorch's libnccl.so.2 is loaded into a local scope, where RTLD_NEXT does not look)
        b"libnccl.so"
    } else if name.starts_with(b"cuda") || name.starts_with(b"__cuda") {
        b"libcudart.so"
    } else {
        b"libcuda.so"
    }
}

/// True when a file path's basename belongs to a library family (`libcuda.so` does not match
/// `libcudart.so.13`).
pub fn path_in_family(path: &[u8], family: &[u8]) -> bool {
    let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    base.starts_with(family)
}

fn resolve_symbol(name: &CStr) -> Option<usize> {
    // SAFETY: RTLD_NEXT with a valid NUL-terminated name; the real dlsym has no preconditions.
    let next = unsafe { real_dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if next != 0 && !is_own_address(next) {
        return Some(next);
    }
    let family = home_library(name.to_bytes());
    for path in loaded_libraries() {
        if !path_in_family(path.as_bytes(), family) {
            continue;
        }
        let Ok(cpath) = std::ffi::CString::new(path) else { continue };
        // SAFETY: NOLOAD only returns a handle to an already loaded object, never loads one.
        let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: handle came from dlopen just above; name is NUL-terminated.
        let addr = unsafe { real_dlsym(handle, name.as_ptr()) } as usize;
        // SAFETY: balances the reference the NOLOAD dlopen took; the object stays loaded.
        unsafe { libc::dlclose(handle) };
        if addr != 0 && !is_own_address(addr) {
            return Some(addr);
        }
    }
    None
}

/// Paths of the shared objects loaded now.
pub fn loaded_libraries() -> Vec<String> {
    unsafe extern "C" fn collect(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr hands a valid info for the duration of the callback and
        // `data` is the Vec we passed in below.
        unsafe {
            let out = &mut *(data as *mut Vec<String>);
            let name = (*info).dlpi_name;
            if !name.is_null() {
                let s = CStr::from_ptr(name).to_string_lossy().into_owned();
                if !s.is_empty() {
                    out.push(s);
                }
            }
        }
        0
    }
    let mut out: Vec<String> = Vec::new();
    // SAFETY: the callback only reads the info it is given and writes into `out`.
    unsafe { libc::dl_iterate_phdr(Some(collect), &mut out as *mut _ as *mut c_void) };
    out
}

/// The file that holds `addr` and the base address of that object.
pub fn object_of(addr: usize) -> Option<(&'static CStr, usize)> {
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    // SAFETY: dladdr only reads loader tables; info is a valid out-parameter.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname points to the loader's copy of the object's name, which lives as long
    // as the object stays loaded (CUDA libraries are never unloaded while in use).
    Some((unsafe { CStr::from_ptr(info.dli_fname) }, info.dli_fbase as usize))
}

fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// True when `addr` lies in libltshim itself.
pub fn is_own_address(addr: usize) -> bool {
    static OWN_BASE: AtomicUsize = AtomicUsize::new(0);
    let mut base = OWN_BASE.load(Ordering::Relaxed);
    if base == 0 {
        base = object_of(is_own_address as *const () as usize).map(|(_, b)| b).unwrap_or(usize::MAX);
        OWN_BASE.store(base, Ordering::Relaxed);
    }
    matches!(object_of(addr), Some((_, b)) if b == base)
}

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// glibc's own `dlsym`. Set at load time (an `.init_array` entry: plain loader work, no CUDA)
/// so that the naked `dlsym` entry can jump to it; read by address from assembly.
pub static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

fn resolve_real_dlsym() -> usize {
    let mut f = REAL_DLSYM.load(Ordering::Acquire);
    if f == 0 {
        for version in [c"GLIBC_2.34", c"GLIBC_2.2.5", c"GLIBC_2.17", c"GLIBC_2.0"] {
            // SAFETY: dlvsym with RTLD_NEXT and static NUL-terminated strings.
            let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
            if !p.is_null() {
                f = p as usize;
                REAL_DLSYM.store(f, Ordering::Release);
                break;
            }
        }
    }
    f
}

#[cfg_attr(test, allow(dead_code))]
extern "C" fn resolve_at_load() {
    resolve_real_dlsym();
}

#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static RESOLVE_AT_LOAD: extern "C" fn() = resolve_at_load;

/// glibc's own `dlsym`, bypassing our exported one.
/// # Safety
/// Same contract as `dlsym`.
pub unsafe fn real_dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    let f = resolve_real_dlsym();
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: f is glibc's dlsym, whose signature DlsymFn transcribes.
    let dlsym: DlsymFn = unsafe { std::mem::transmute::<usize, DlsymFn>(f) };
    // SAFETY: forwarded under the caller's contract.
    unsafe { dlsym(handle, name) }
}

/// Declares the table of functions we call for our own work but do not hook.
macro_rules! driver_uses {
    ($( fn $name:ident($($arg:ident : $ty:ty),*) -> $ret:ty; )*) => {
        pub struct Uses { $( pub $name: RealSlot<unsafe extern "C" fn($($ty),*) -> $ret>, )* }
        /// Functions the library calls itself (driver API first: it has no sticky error).
        pub static USES: Uses = Uses { $( $name: RealSlot::new(cstr(concat!(stringify!($name), "\0").as_bytes())), )* };
    };
}

driver_uses! {
    fn cuKernelGetParamInfo(kernel: Handle, index: usize, offset: *mut usize, size: *mut usize) -> CUresult;
    fn cuFuncGetParamInfo(func: Handle, index: usize, offset: *mut usize, size: *mut usize) -> CUresult;
    fn cuKernelGetFunction(func: *mut Handle, kernel: Handle) -> CUresult;
    fn cuStreamIsCapturing(stream: Handle, status: *mut c_int) -> CUresult;
    fn cuPointerGetAttribute(data: *mut c_void, attribute: c_int, ptr: CUdeviceptr) -> CUresult;
    fn cuGraphGetNodes(graph: Handle, nodes: *mut Handle, count: *mut usize) -> CUresult;
    fn cuGraphNodeGetType(node: Handle, kind: *mut c_int) -> CUresult;
    fn cuGraphKernelNodeGetParams_v2(node: Handle, params: *mut CUDA_KERNEL_NODE_PARAMS) -> CUresult;
    fn cuGraphMemcpyNodeGetParams(node: Handle, params: *mut CUDA_MEMCPY3D) -> CUresult;
    fn cuGraphMemsetNodeGetParams(node: Handle, params: *mut CUDA_MEMSET_NODE_PARAMS) -> CUresult;
    fn cuGraphChildGraphNodeGetGraph(node: Handle, graph: *mut Handle) -> CUresult;
    fn cudaGetFuncBySymbol(func: *mut Handle, symbol: *const c_void) -> cudaError_t;
    fn cudaPeekAtLastError() -> cudaError_t;
    fn cudaGetLastError() -> cudaError_t;
    fn cudnnBackendGetAttribute(desc: Handle, name: c_int, kind: c_int, requested: i64, count: *mut i64, array: *mut c_void) -> cudnnStatus_t;
    fn cublasLtMatrixLayoutGetAttribute(desc: Handle, attr: c_int, buf: *mut c_void, size: usize, written: *mut usize) -> cublasStatus_t;
    // the packing engine's own device work (crate::gpu)
    fn cuCtxGetCurrent(ctx: *mut Handle) -> CUresult;
    fn cuCtxGetDevice(dev: *mut c_int) -> CUresult;
    fn cuDevicePrimaryCtxRetain(ctx: *mut Handle, dev: c_int) -> CUresult;
    fn cuCtxPushCurrent_v2(ctx: Handle) -> CUresult;
    fn cuCtxPopCurrent_v2(ctx: *mut Handle) -> CUresult;
    fn cuCtxSynchronize() -> CUresult;
    fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CUresult;
    fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult;
    fn cuMemGetAllocationGranularity(granularity: *mut usize, prop: *const CUmemAllocationProp, option: c_int) -> CUresult;
    fn cuEventCreate(event: *mut Handle, flags: c_uint) -> CUresult;
    fn cuEventRecord(event: Handle, stream: Handle) -> CUresult;
    fn cuEventSynchronize(event: Handle) -> CUresult;
    fn cuStreamWaitEvent(stream: Handle, event: Handle, flags: c_uint) -> CUresult;
    fn cuStreamSynchronize(stream: Handle) -> CUresult;
    fn cuEventQuery(event: Handle) -> CUresult;
    fn cuEventDestroy_v2(event: Handle) -> CUresult;
    fn cuThreadExchangeStreamCaptureMode(mode: *mut c_int) -> CUresult;
    fn dbl_is_double() -> c_int;
}

/// `c"name"` from a `concat!`-built literal (checked at compile time), for the generated tables.
pub const fn cstr(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(s) => s,
        Err(_) => panic!("hook name must be NUL-terminated"),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_library_separates_the_families_that_share_a_prefix() {
        assert_eq!(home_library(b"cuLaunchKernel"), b"libcuda.so");
        assert_eq!(home_library(b"cudaMalloc"), b"libcudart.so");
        assert_eq!(home_library(b"__cudaLaunchKernel"), b"libcudart.so");
        assert_eq!(home_library(b"cublasLtMatmul"), b"libcublasLt.so");
        assert_eq!(home_library(b"cublasSgemm_v2"), b"libcublas.so");
        assert_eq!(home_library(b"cudnnBackendExecute"), b"libcudnn");
        assert_eq!(home_library(b"ncclAllReduce"), b"libnccl.so");
    }

    #[test]
    fn path_in_family_matches_the_basename_only() {
        assert!(path_in_family(b"/usr/lib/x86_64-linux-gnu/libcuda.so.1", b"libcuda.so"));
        assert!(!path_in_family(b"/opt/libcudart.so.13", b"libcuda.so"));
        assert!(!path_in_family(b"/opt/libcuda.so.dir/libcublas.so.13", b"libcuda.so"));
        assert!(path_in_family(b"libcudnn_graph.so.9", b"libcudnn"));
    }
}
