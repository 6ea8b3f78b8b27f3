//! Parameter layouts of kernels: where each argument sits and how large it is.
//!
//! Learned once per kernel from the driver (`cuKernelGetParamInfo` for a `CUkernel` /
//! `cudaKernel_t`, `cuFuncGetParamInfo` for a `CUfunction`; a runtime host stub is first turned
//! into its `CUfunction` with `cudaGetFuncBySymbol`), then cached: a per-thread map answers a
//! launch without a lock, an allocation or an atomic; a miss fills it from a global map or the
//! driver. A kernel whose layout cannot be had is cached as unknown (once the driver was asked
//! `UNKNOWN_TRIES` times): its launches are counted as fallbacks and its buffers cannot be
//! proven safe.
use std::cell::RefCell;
use std::collections::HashMap;

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use crate::cuda_abi::{Handle, CUDA_ERROR_INVALID_CONTEXT, CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_FOUND, CUDA_SUCCESS};
use crate::real::USES;

#[derive(Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// `(offset, size)` of each parameter, in order.
    pub params: Box<[(u32, u32)]>,
}

/// What a launch named as its kernel.
#[derive(Clone, Copy)]
pub enum KernelRef {
    /// A `CUkernel` / `cudaKernel_t` (`__cudaLaunchKernel`).
    Kernel(Handle),
    /// A `CUfunction`, or a `CUkernel` passed where a function is expected (driver launches).
    Function(Handle),
    /// A runtime host stub (`cudaLaunchKernel(const void *func, ...)`).
    HostStub(Handle),
}

impl KernelRef {
    fn key(self) -> usize {
        match self {
            KernelRef::Kernel(h) | KernelRef::Function(h) | KernelRef::HostStub(h) => h as usize,
        }
    }
}

/// What the driver told of a kernel's parameters.
///
/// A known layout is leaked, not reference-counted: the global map never forgets one, so it
/// lives as long as the process anyway, and a launch that borrows it touches no count (a
/// shared `Arc` cost every launch two atomic updates of one cache line that every thread
/// launching that kernel shares). Two threads that ask the driver at once leak one copy more.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Known(&'static ParamLayout),
    /// The kernel takes no parameters (it names no buffer).
    NoParameters,
    /// The driver would not tell: the launch may touch any buffer.
    Unknown,
}

type Cached = Layout;

/// Keys are kernel handles (addresses): one multiply mixes them well enough, and costs far
/// less than the default SipHash on every launch.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, v: usize) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

type Map = HashMap<usize, Cached, std::hash::BuildHasherDefault<AddressHasher>>;
type GlobalMap = HashMap<usize, (Cached, u32), std::hash::BuildHasherDefault<AddressHasher>>;

/// Every layout asked so far, and how often (unknown ones are asked again a few times).
static GLOBAL: Lazy<Mutex<GlobalMap>> = Lazy::new(|| Mutex::new(GlobalMap::default()));

thread_local! {
    static LOCAL: RefCell<Map> = RefCell::new(Map::default());
}

/// The layout of a kernel, as the driver tells it.
pub fn layout_of(k: KernelRef) -> Cached {
    let key = k.key();
    if let Ok(Some(hit)) = LOCAL.try_with(|m| m.borrow().get(&key).copied()) {
        return hit;
    }
    let cached = GLOBAL.lock().get(&key).copied();
    let found = match cached {
        Some((l, tries)) if settled(l, tries) => l,
        _ => {
            // the driver is asked with no lock of ours held; two threads may ask at once,
            // and a known answer stays. An unknown one is asked again at the next launches:
            // with lazy loading a kernel may answer only once it has run.
            let l = query(k);
            let mut g = GLOBAL.lock();
            let e = g.entry(key).or_insert((Layout::Unknown, 0));
            if matches!(e.0, Layout::Unknown) {
                *e = (l, e.1 + 1);
                if matches!(e.0, Layout::Unknown) && e.1 == UNKNOWN_TRIES {
                    tracing::info!("{}: the driver does not tell its parameter layout, so its launches are opaque (every packed buffer restored first)", describe(k));
                }
            }
            if !settled(e.0, e.1) {
                return e.0; // asked again at the next launch
            }
            e.0
        }
    };
    let _ = LOCAL.try_with(|m| m.borrow_mut().insert(key, found));
    found
}

/// How often the driver is asked about a kernel that did not tell its layout.
const UNKNOWN_TRIES: u32 = 3;

/// The global map's answer for a kernel will not change: a known layout, or an unknown one
/// the driver was asked about `UNKNOWN_TRIES` times (a thread may then keep it, and the
/// launches of an opaque kernel take no global lock either).
fn settled(l: Layout, tries: u32) -> bool {
    !matches!(l, Layout::Unknown) || tries >= UNKNOWN_TRIES
}

/// Largest parameter count we ask about (32 KiB of parameters at 4 bytes each).
const MAX_PARAMS: usize = 8192;

fn query(k: KernelRef) -> Layout {
    let asked = match ask(k) {
        // a launch that comes first on a thread runs before the runtime made a context
        // current there: ask again inside the primary context of the device we work on
        Err(CUDA_ERROR_INVALID_CONTEXT) => match primary_context() {
            Some(ctx) => {
                let _scope = crate::gpu::driver::WorkScope::enter(ctx);
                ask(k)
            }
            None => Err(CUDA_ERROR_INVALID_CONTEXT),
        },
        other => other,
    };
    match asked {
        Ok(layout) => {
            if let Layout::NoParameters = layout {
                tracing::debug!("{}: takes no parameters", describe(k));
            }
            crate::stats::add(&crate::stats::C.layouts_learned, 1);
            layout
        }
        Err(rc) => {
            tracing::info!("{}: the driver refused its parameter layout (error {rc})", describe(k));
            Layout::Unknown
        }
    }
}

/// What the driver tells in the current context. A CUkernel it will not describe may still
/// describe its function there (cuKernelGetFunction loads it).
fn ask(k: KernelRef) -> Asked {
    match k {
        KernelRef::Kernel(h) => by_kernel(h).or_else(|rc| function_of_kernel(h).map_or(Err(rc), by_function)),
        KernelRef::Function(h) => by_function(h).or_else(|_| by_kernel(h)),
        KernelRef::HostStub(stub) => function_of_stub(stub).map_or(Err(CUDA_ERROR_INVALID_VALUE), by_function),
    }
}

/// The primary context of the engine's device (device 0 without an engine), retained once.
fn primary_context() -> Option<Handle> {
    static CTX: once_cell::sync::OnceCell<Option<usize>> = once_cell::sync::OnceCell::new();
    let dev = crate::engine::all().next().map_or(0, |e| e.device());
    CTX.get_or_init(|| crate::gpu::driver::primary_context(dev).ok().map(|h| h as usize)).map(|h| h as Handle)
}

/// The `CUfunction` of a `CUkernel` in the current context.
fn function_of_kernel(h: Handle) -> Option<Handle> {
    let f = USES.cuKernelGetFunction.get()?;
    let mut func: Handle = std::ptr::null_mut();
    // SAFETY: valid out-parameter; h is what the program launched as a kernel.
    (unsafe { f(&mut func, h) } == CUDA_SUCCESS && !func.is_null()).then_some(func)
}

/// A kernel for a log line: its handle kind and address, and the symbol `dladdr` finds (host
/// stubs of the program's own kernels have one).
fn describe(k: KernelRef) -> String {
    let (kind, h) = match k {
        KernelRef::Kernel(h) => ("kernel", h),
        KernelRef::Function(h) => ("function", h),
        KernelRef::HostStub(h) => ("host stub", h),
    };
    let mut info = libc::Dl_info { dli_fname: std::ptr::null(), dli_fbase: std::ptr::null_mut(), dli_sname: std::ptr::null(), dli_saddr: std::ptr::null_mut() };
    // SAFETY: dladdr only reads the loader's tables; a handle that is no code address finds nothing.
    let name = if unsafe { libc::dladdr(h as *const libc::c_void, &mut info) } != 0 && !info.dli_sname.is_null() {
        // SAFETY: the loader's NUL-terminated symbol name, alive while the object is loaded.
        unsafe { std::ffi::CStr::from_ptr(info.dli_sname) }.to_string_lossy().into_owned()
    } else {
        String::from("?")
    };
    format!("{kind} {h:p} ({name})")
}

/// The layout, or the driver's refusal.
type Asked = Result<Layout, i32>;

fn by_kernel(h: Handle) -> Asked {
    let Some(f) = USES.cuKernelGetParamInfo.get() else { return Err(CUDA_ERROR_NOT_FOUND) };
    // SAFETY: cuKernelGetParamInfo reads a handle the program itself launched with and writes
    // two size_t out-parameters; an invalid index returns an error, which ends the loop.
    collect(|i, off, size| unsafe { f(h, i, off, size) })
}

fn by_function(h: Handle) -> Asked {
    let Some(f) = USES.cuFuncGetParamInfo.get() else { return Err(CUDA_ERROR_NOT_FOUND) };
    // SAFETY: as above, for a CUfunction the program launched.
    collect(|i, off, size| unsafe { f(h, i, off, size) })
}

fn collect(mut info: impl FnMut(usize, *mut usize, *mut usize) -> i32) -> Asked {
    let mut params = Vec::new();
    for i in 0..MAX_PARAMS {
        let (mut off, mut size) = (0usize, 0usize);
        let rc = info(i, &mut off, &mut size);
        if rc != CUDA_SUCCESS {
            // index 0 refused as an invalid *value* (not handle): a kernel with no parameters
            if i == 0 {
                return if rc == CUDA_ERROR_INVALID_VALUE { Ok(Layout::NoParameters) } else { Err(rc) };
            }
            break;
        }
        params.push((off as u32, size as u32));
    }
    Ok(Layout::Known(Box::leak(Box::new(ParamLayout { params: params.into_boxed_slice() }))))
}

/// The `CUfunction` of a runtime host stub, without leaving an error of ours behind:
/// the runtime's last-error slot is touched only when it was clear before we called.
fn function_of_stub(stub: Handle) -> Option<Handle> {
    let by_symbol = USES.cudaGetFuncBySymbol.get()?;
    let peek = USES.cudaPeekAtLastError.get()?;
    let clear = USES.cudaGetLastError.get()?;
    // SAFETY: cudaPeekAtLastError takes no arguments and only reads the thread's error slot.
    if unsafe { peek() } != CUDA_SUCCESS {
        return None; // the program has an error pending: do not risk disturbing it
    }
    let mut func: Handle = std::ptr::null_mut();
    // SAFETY: out-parameter is valid; stub is what the program passed as its kernel.
    let rc = unsafe { by_symbol(&mut func, stub) };
    if rc != CUDA_SUCCESS {
        // SAFETY: the slot was clear before; this resets only the error we caused.
        unsafe { clear() };
        return None;
    }
    (!func.is_null()).then_some(func)
}
