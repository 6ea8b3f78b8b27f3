//! A host-memory CUDA double: the subset of the runtime, driver, cuBLAS and cuDNN that
//! libltshim hooks or calls, implemented on plain host memory, so that the library's
//! integration tests run on machines without a GPU.
//!
//! - Device memory is host memory from `mmap`; addresses are real, so copies and "kernels"
//!   (host functions registered with `dbl_register_kernel`) read and write them.
//! - VMM is emulated as DESIGN.md asks: reserve = `PROT_NONE`, create = a memfd, map =
//!   `MAP_FIXED` over it, unmap = `PROT_NONE` again, so touching an unmapped range faults.
//! - Streams are synchronous; capture records nodes into a graph that replays them.
//! - `cuGetProcAddress` / `cudaGetDriverEntryPoint` answer from a table of our own functions.
//!
//! Everything here is test scaffolding: it validates its inputs enough to catch a library that
//! forwards wrong arguments, not more. Built with SONAME `libcuda.so.1` (see build.rs) so that
//! `dladdr` places driver functions in "libcuda".
#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::Mutex;
use std::cell::Cell;

type Handle = *mut c_void;
const OK: c_int = 0;
const INVALID_VALUE: c_int = 1;
const NOT_FOUND: c_int = 500;
const INVALID_HANDLE: c_int = 400;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Dim3 { x: c_uint, y: c_uint, z: c_uint }

// ---------------------------------------------------------------- memory

struct Mem {
    /// start → size of device allocations (cudaMalloc & co, and mapped VMM ranges).
    allocs: HashMap<u64, usize>,
    /// start of a mapped VMM range → the devices `cuMemSetAccess` gave access to (a bit each).
    access: HashMap<u64, u32>,
    /// memfd handles of cuMemCreate: handle → (fd, size).
    physical: HashMap<u64, (c_int, usize)>,
    next_handle: u64,
    used: usize,
}

static MEM: Mutex<Option<Mem>> = Mutex::new(None);
/// The card's memory: 16 GiB, or `CUDADOUBLE_TOTAL_MIB` MiB (a scenario that fills the card
/// without a limit set, in host memory), of which `CUDADOUBLE_OTHERS_MIB` MiB are taken from
/// the start by what no hook sees (a real card's context and loaded modules).
fn total() -> usize {
    static T: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var("CUDADOUBLE_TOTAL_MIB").ok().and_then(|v| v.parse::<usize>().ok()).map_or(16 << 30, |m| m << 20))
}

fn others() -> usize {
    std::env::var("CUDADOUBLE_OTHERS_MIB").ok().and_then(|v| v.parse::<usize>().ok()).map_or(0, |m| m << 20)
}

fn with_mem<R>(f: impl FnOnce(&mut Mem) -> R) -> R {
    let mut g = MEM.lock().unwrap();
    let m = g.get_or_insert_with(|| Mem { allocs: HashMap::new(), access: HashMap::new(), physical: HashMap::new(), next_handle: 1, used: others() });
    f(m)
}

fn is_device(addr: u64) -> bool {
    with_mem(|m| m.allocs.iter().any(|(s, n)| addr >= *s && addr < *s + *n as u64))
}

fn alloc(size: usize) -> Option<u64> {
    if size == 0 {
        return None;
    }
    // SAFETY: anonymous private mapping.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    with_mem(|m| {
        m.allocs.insert(p as u64, size);
        m.used += size;
    });
    Some(p as u64)
}

fn free(addr: u64) -> c_int {
    if addr == 0 {
        return OK;
    }
    let Some(size) = with_mem(|m| m.allocs.remove(&addr)) else { return INVALID_VALUE };
    with_mem(|m| m.used -= size);
    // SAFETY: the mapping we made in alloc.
    unsafe { libc::munmap(addr as *mut c_void, size) };
    OK
}

/// A driver function as the real runtime gets one: through `cuGetProcAddress`, itself found
/// with `dlsym` (so an interposer's lookup hooks see both, and may hand out wrappers).
unsafe fn via_driver(name: &CStr) -> usize {
    type GetProc = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> c_int;
    let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
    let gp = libc::dlsym(lib, c"cuGetProcAddress_v2".as_ptr());
    let gp: GetProc = std::mem::transmute(gp);
    let mut f: *mut c_void = std::ptr::null_mut();
    let mut st = 0;
    gp(name.as_ptr(), &mut f, 13000, 0, &mut st);
    f as usize
}
#[no_mangle] pub unsafe extern "C" fn cudaMalloc(p: *mut *mut c_void, size: usize) -> c_int {
    let alloc_v2: unsafe extern "C" fn(*mut u64, usize) -> c_int = std::mem::transmute(via_driver(c"cuMemAlloc"));
    alloc_v2(p as *mut u64, size)
}
#[no_mangle] pub unsafe extern "C" fn cudaFree(p: *mut c_void) -> c_int { free(p as u64) }
#[no_mangle] pub unsafe extern "C" fn cudaMallocAsync(p: *mut *mut c_void, size: usize, _s: Handle) -> c_int { cudaMalloc(p, size) }
#[no_mangle] pub unsafe extern "C" fn cudaFreeAsync(p: *mut c_void, _s: Handle) -> c_int { free(p as u64) }
#[no_mangle] pub unsafe extern "C" fn cuMemAlloc_v2(p: *mut u64, size: usize) -> c_int {
    match alloc(size) { Some(a) => { *p = a; OK } None => 2 }
}
#[no_mangle] pub unsafe extern "C" fn cuMemFree_v2(p: u64) -> c_int { free(p) }
#[no_mangle] pub unsafe extern "C" fn cuMemAllocAsync(p: *mut u64, size: usize, _s: Handle) -> c_int { cuMemAlloc_v2(p, size) }
#[no_mangle] pub unsafe extern "C" fn cuMemFreeAsync(p: u64, _s: Handle) -> c_int { free(p) }
#[no_mangle] pub unsafe extern "C" fn cudaMemGetInfo(f: *mut usize, t: *mut usize) -> c_int {
    let used = with_mem(|m| m.used);
    *f = total() - used; *t = total(); OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemGetInfo_v2(f: *mut usize, t: *mut usize) -> c_int { cudaMemGetInfo(f, t) }
#[no_mangle] pub unsafe extern "C" fn cudaIpcGetMemHandle(h: *mut c_void, p: *mut c_void) -> c_int {
    if !is_device(p as u64) { return INVALID_VALUE }
    std::ptr::write_bytes(h as *mut u8, 0, 64); *(h as *mut u64) = p as u64; OK
}
#[no_mangle] pub unsafe extern "C" fn cuIpcGetMemHandle(h: *mut c_void, p: u64) -> c_int { cudaIpcGetMemHandle(h, p as *mut c_void) }
/// NVLink multicast is not emulated: a bind fails as on a GPU without it (CUDA_ERROR_NOT_SUPPORTED).
#[no_mangle] pub unsafe extern "C" fn cuMulticastBindAddr(_mc: u64, _mc_offset: usize, _ptr: u64, _size: usize, _flags: u64) -> c_int { 801 }
/// The start and size of the device allocation (or mapped VMM range) holding `addr`.
fn range_of(addr: u64) -> Option<(u64, usize)> {
    with_mem(|m| m.allocs.iter().find(|(s, n)| addr >= **s && addr < **s + **n as u64).map(|(s, n)| (*s, *n)))
}
/// As the driver: an address in no allocation (a reserved range with nothing mapped, such as a
/// packed buffer's) is an invalid value. Memory type (2), device pointer (3) and the range of
/// the allocation (or mapping) there (11, 12) are answered.
#[no_mangle] pub unsafe extern "C" fn cuPointerGetAttribute(data: *mut c_void, attr: c_int, p: u64) -> c_int {
    if !is_device(p) { return INVALID_VALUE }
    let (start, size) = range_of(p).unwrap_or((p, 0));
    match attr {
        2 => { *(data as *mut c_uint) = 2; OK }
        3 => { *(data as *mut u64) = p; OK }
        11 => { *(data as *mut u64) = start; OK }
        12 => { *(data as *mut usize) = size; OK }
        _ => INVALID_VALUE
    }
}
/// As the driver, no error for an address outside every allocation: its memory type reads 0.
#[no_mangle] pub unsafe extern "C" fn cuPointerGetAttributes(n: c_uint, attrs: *const c_int, data: *mut *mut c_void, p: u64) -> c_int {
    let device = is_device(p);
    for i in 0..n as usize {
        match *attrs.add(i) {
            2 => *(*data.add(i) as *mut c_uint) = if device { 2 } else { 0 },
            3 => *(*data.add(i) as *mut u64) = if device { p } else { 0 },
            _ => return INVALID_VALUE,
        }
    }
    OK
}
/// `cudaPointerAttributes`: type, device, device pointer, host pointer. Host memory (or an
/// unmapped range) is `cudaMemoryTypeUnregistered` (0), with success, as since CUDA 11.
#[repr(C)]
pub struct PointerAttributes { kind: c_int, device: c_int, device_pointer: u64, host_pointer: u64 }
#[no_mangle] pub unsafe extern "C" fn cudaPointerGetAttributes(a: *mut PointerAttributes, p: *const c_void) -> c_int {
    let device = is_device(p as u64);
    *a = PointerAttributes { kind: if device { 2 } else { 0 }, device: 0, device_pointer: if device { p as u64 } else { 0 }, host_pointer: 0 };
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemGetAddressRange_v2(base: *mut u64, size: *mut usize, p: u64) -> c_int {
    let Some((s, n)) = range_of(p) else { return NOT_FOUND };
    if !base.is_null() { *base = s; }
    if !size.is_null() { *size = n; }
    OK
}

// ---------------------------------------------------------------- VMM

#[no_mangle] pub unsafe extern "C" fn cuMemAddressReserve(p: *mut u64, size: usize, _align: usize, _addr: u64, _flags: u64) -> c_int {
    let a = libc::mmap(std::ptr::null_mut(), size, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0);
    if a == libc::MAP_FAILED { return 2 }
    *p = a as u64; OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemAddressFree(p: u64, size: usize) -> c_int { libc::munmap(p as *mut c_void, size); OK }
#[no_mangle] pub unsafe extern "C" fn cuMemCreate(h: *mut u64, size: usize, _prop: *const c_void, _flags: u64) -> c_int {
    if with_mem(|m| m.used + size > total()) { return 2 }
    let fd = libc::memfd_create(c"cudadouble".as_ptr(), 0);
    if fd < 0 || libc::ftruncate(fd, size as libc::off_t) != 0 { return 2 }
    with_mem(|m| { let id = m.next_handle; m.next_handle += 1; m.physical.insert(id, (fd, size)); m.used += size; *h = id; });
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemRelease(h: u64) -> c_int {
    match with_mem(|m| m.physical.remove(&h).inspect(|(_, size)| m.used -= size)) { Some((fd, _)) => { libc::close(fd); OK } None => INVALID_VALUE }
}
#[no_mangle] pub unsafe extern "C" fn cuMemGetAllocationGranularity(g: *mut usize, _prop: *const c_void, _opt: c_int) -> c_int { *g = 64 << 10; OK }
/// Physical memory the double holds (plain allocations and VMM handles), for tests.
#[no_mangle] pub extern "C" fn dbl_used_bytes() -> usize { with_mem(|m| m.used) }

// ---------------------------------------------------------------- contexts, events (the library's own work)

/// Tells the library that it runs on the double (its codec backend is then the CPU reference).
#[no_mangle] pub extern "C" fn dbl_is_double() -> c_int { 1 }
/// Two devices, 0 and 1, with one context each (CTX + device); a thread's current context is
/// device 0's until `cudaSetDevice` or a push says otherwise. Only device 0 holds memory: the
/// second exists so that peer access (`cudaDeviceEnablePeerAccess` from device 1) can be asked.
const CTX: usize = 0xC0;
const DEVICES: c_int = 2;
thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(CTX) };
    static PUSHED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}
fn is_ctx(c: Handle) -> bool { (CTX..CTX + DEVICES as usize).contains(&(c as usize)) }
#[no_mangle] pub unsafe extern "C" fn cuInit(_flags: c_uint) -> c_int { OK }
#[no_mangle] pub unsafe extern "C" fn cuCtxGetCurrent(c: *mut Handle) -> c_int { *c = CURRENT.with(|x| x.get()) as Handle; OK }
#[no_mangle] pub unsafe extern "C" fn cuCtxGetDevice(d: *mut c_int) -> c_int { *d = (CURRENT.with(|x| x.get()) - CTX) as c_int; OK }
#[no_mangle] pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(c: *mut Handle, dev: c_int) -> c_int { if !(0..DEVICES).contains(&dev) { return INVALID_VALUE } *c = (CTX + dev as usize) as Handle; OK }
#[no_mangle] pub unsafe extern "C" fn cuCtxPushCurrent_v2(c: Handle) -> c_int {
    if !is_ctx(c) { return INVALID_VALUE }
    PUSHED.with(|p| p.borrow_mut().push(CURRENT.with(|x| x.replace(c as usize))));
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuCtxPopCurrent_v2(c: *mut Handle) -> c_int {
    let was = CURRENT.with(|x| x.replace(PUSHED.with(|p| p.borrow_mut().pop()).unwrap_or(CTX)));
    if !c.is_null() { *c = was as Handle; }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cudaSetDevice(d: c_int) -> c_int { if !(0..DEVICES).contains(&d) { return rt(INVALID_VALUE) } CURRENT.with(|x| x.set(CTX + d as usize)); OK }
#[no_mangle] pub unsafe extern "C" fn cudaDeviceEnablePeerAccess(peer: c_int, _flags: c_uint) -> c_int {
    let me = (CURRENT.with(|x| x.get()) - CTX) as c_int;
    if !(0..DEVICES).contains(&peer) || peer == me { return rt(INVALID_VALUE) }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuCtxEnablePeerAccess(peer: Handle, _flags: c_uint) -> c_int {
    if !is_ctx(peer) || peer as usize == CURRENT.with(|x| x.get()) { return INVALID_VALUE }
    OK
}
/// The devices that may access the mapped VMM range starting at `p` (a bit each), for tests.
#[no_mangle] pub extern "C" fn dbl_access_devices(p: u64) -> u32 { with_mem(|m| m.access.get(&p).copied().unwrap_or(0)) }
#[no_mangle] pub unsafe extern "C" fn cuCtxSynchronize() -> c_int { OK }
#[no_mangle] pub unsafe extern "C" fn cuDeviceTotalMem_v2(b: *mut usize, _dev: c_int) -> c_int { *b = total(); OK }
#[no_mangle] pub unsafe extern "C" fn cuThreadExchangeStreamCaptureMode(_m: *mut c_int) -> c_int { OK }
/// Streams are synchronous here: an event is complete as soon as it is recorded.
#[no_mangle] pub unsafe extern "C" fn cuEventCreate(e: *mut Handle, _flags: c_uint) -> c_int { *e = Box::into_raw(Box::new(0u64)) as Handle; OK }
#[no_mangle] pub unsafe extern "C" fn cuEventRecord(e: Handle, _s: Handle) -> c_int { if e.is_null() { return INVALID_HANDLE } OK }
#[no_mangle] pub unsafe extern "C" fn cuEventSynchronize(e: Handle) -> c_int { if e.is_null() { return INVALID_HANDLE } OK }
#[no_mangle] pub unsafe extern "C" fn cuEventDestroy_v2(e: Handle) -> c_int { drop(Box::from_raw(e as *mut u64)); OK }
#[no_mangle] pub unsafe extern "C" fn cuMemMap(p: u64, size: usize, offset: usize, h: u64, _flags: u64) -> c_int {
    let Some((fd, _)) = with_mem(|m| m.physical.get(&h).copied()) else { return INVALID_HANDLE };
    let a = libc::mmap(p as *mut c_void, size, libc::PROT_NONE, libc::MAP_SHARED | libc::MAP_FIXED, fd, offset as libc::off_t);
    if a == libc::MAP_FAILED { return 2 }
    with_mem(|m| { m.allocs.insert(p, size); });
    OK
}
/// `CUmemAccessDesc`: location type, location id, flags.
#[repr(C)]
pub struct AccessDesc { kind: c_int, id: c_int, flags: c_int }
#[no_mangle] pub unsafe extern "C" fn cuMemSetAccess(p: u64, size: usize, desc: *const AccessDesc, n: usize) -> c_int {
    // (tests/c/interpose.c's own mapping passes no descriptors: it only needs the range usable)
    let descs = if desc.is_null() { &[][..] } else { std::slice::from_raw_parts(desc, n) };
    if descs.iter().any(|d| d.kind != 1 || !(0..DEVICES).contains(&d.id)) { return INVALID_VALUE }
    if libc::mprotect(p as *mut c_void, size, libc::PROT_READ | libc::PROT_WRITE) != 0 { return INVALID_VALUE }
    with_mem(|m| { *m.access.entry(p).or_insert(0) |= descs.iter().fold(0, |b, d| b | (1u32 << d.id)); });
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemUnmap(p: u64, size: usize) -> c_int {
    let a = libc::mmap(p as *mut c_void, size, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE, -1, 0);
    if a == libc::MAP_FAILED { return 2 }
    with_mem(|m| { m.allocs.remove(&p); m.access.remove(&p); });
    OK
}

// ---------------------------------------------------------------- kernels

/// A registered host "kernel".
pub struct Kernel {
    run: extern "C" fn(*mut *mut c_void),
    sizes: Vec<usize>,
    offsets: Vec<usize>,
    hide_layout: bool,
}

struct Kernels(HashSet<usize>);
static KERNELS: Mutex<Option<Kernels>> = Mutex::new(None);

fn kernel(h: Handle) -> Option<&'static Kernel> {
    let known = KERNELS.lock().unwrap().as_ref().is_some_and(|k| k.0.contains(&(h as usize)));
    // SAFETY: registered handles are leaked Boxes of Kernel.
    known.then(|| unsafe { &*(h as *const Kernel) })
}

/// Registers a host function as a kernel with these parameter sizes; returns its handle,
/// usable as a `cudaKernel_t`, a `CUfunction` and a runtime host stub. `hide_layout`: the
/// param-info queries fail for it (a kernel whose layout the library cannot learn).
#[no_mangle] pub unsafe extern "C" fn dbl_register_kernel(run: extern "C" fn(*mut *mut c_void), n: usize, sizes: *const usize, hide_layout: c_int) -> Handle {
    let sizes: Vec<usize> = std::slice::from_raw_parts(sizes, n).to_vec();
    let mut offsets = Vec::new();
    let mut off = 0usize;
    for &s in &sizes {
        let align = s.clamp(1, 8).next_power_of_two();
        off = off.div_ceil(align) * align;
        offsets.push(off);
        off += s;
    }
    let k = Box::into_raw(Box::new(Kernel { run, sizes, offsets, hide_layout: hide_layout != 0 })) as usize;
    KERNELS.lock().unwrap().get_or_insert_with(|| Kernels(HashSet::new())).0.insert(k);
    k as Handle
}

fn param_info(h: Handle, i: usize, off: *mut usize, size: *mut usize) -> c_int {
    let Some(k) = kernel(h) else { return INVALID_HANDLE };
    if k.hide_layout { return INVALID_HANDLE }
    if i >= k.sizes.len() { return INVALID_VALUE }
    // SAFETY: caller's out-parameters.
    unsafe { *off = k.offsets[i]; *size = k.sizes[i]; }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuKernelGetParamInfo(h: Handle, i: usize, off: *mut usize, size: *mut usize) -> c_int { param_info(h, i, off, size) }
#[no_mangle] pub unsafe extern "C" fn cuFuncGetParamInfo(h: Handle, i: usize, off: *mut usize, size: *mut usize) -> c_int { param_info(h, i, off, size) }

thread_local! { static LAST_ERROR: Cell<c_int> = const { Cell::new(0) }; }
fn rt(rc: c_int) -> c_int { if rc != OK { LAST_ERROR.with(|e| e.set(rc)); } rc }
#[no_mangle] pub extern "C" fn cudaPeekAtLastError() -> c_int { LAST_ERROR.with(|e| e.get()) }
#[no_mangle] pub extern "C" fn cudaGetLastError() -> c_int { LAST_ERROR.with(|e| e.replace(0)) }
#[no_mangle] pub unsafe extern "C" fn cudaGetFuncBySymbol(f: *mut Handle, sym: *const c_void) -> c_int {
    if kernel(sym as Handle).is_none() { return rt(98) } // cudaErrorInvalidDeviceFunction
    *f = sym as Handle; OK
}

/// Copies of one launch's argument values, so that captured launches can replay.
struct ArgCopy { _values: Vec<Vec<u8>>, ptrs: Vec<*mut c_void> }
impl ArgCopy {
    unsafe fn from_params(k: &Kernel, params: *mut *mut c_void) -> ArgCopy {
        let values: Vec<Vec<u8>> = k.sizes.iter().enumerate().map(|(i, &s)| std::slice::from_raw_parts(*params.add(i) as *const u8, s).to_vec()).collect();
        ArgCopy::new(values)
    }
    unsafe fn from_extra(k: &Kernel, extra: *mut *mut c_void) -> Option<ArgCopy> {
        let (mut buf, mut size) = (std::ptr::null::<u8>(), 0usize);
        let mut i = 0;
        loop {
            match *extra.add(i) as usize { 0 => break, 1 => buf = *extra.add(i + 1) as *const u8, 2 => size = *(*extra.add(i + 1) as *const usize), _ => return None }
            i += 2;
        }
        let values = k.sizes.iter().zip(&k.offsets).map(|(&s, &o)| if o + s <= size { std::slice::from_raw_parts(buf.add(o), s).to_vec() } else { vec![0; s] }).collect();
        Some(ArgCopy::new(values))
    }
    fn new(mut values: Vec<Vec<u8>>) -> ArgCopy {
        let ptrs = values.iter_mut().map(|v| v.as_mut_ptr() as *mut c_void).collect();
        ArgCopy { _values: values, ptrs }
    }
}

enum Node {
    Kernel { k: Handle, args: ArgCopy },
    Memcpy { dst: u64, src: u64, count: usize },
    Memset { dst: u64, value: u8, count: usize },
}
// SAFETY: test scaffolding; nodes are only touched under the CAPTURE lock or by the owner.
unsafe impl Send for Node {}

// Node handles are pointers to the boxes: they must not move when the vectors grow.
#[allow(clippy::vec_box)]
struct Graph { nodes: Vec<Box<Node>> }

#[allow(clippy::vec_box)]
static CAPTURE: Mutex<Vec<(usize, Vec<Box<Node>>)>> = Mutex::new(Vec::new());

/// Records the node when `stream` is capturing; returns it back otherwise.
fn capture(stream: Handle, node: Node) -> Option<Node> {
    let mut c = CAPTURE.lock().unwrap();
    match c.iter_mut().find(|(s, _)| *s == stream as usize) {
        Some((_, nodes)) => { nodes.push(Box::new(node)); None }
        None => Some(node),
    }
}

unsafe fn run(node: &mut Node) {
    match node {
        Node::Kernel { k, args } => ((*(*k as *const Kernel)).run)(args.ptrs.as_mut_ptr()),
        Node::Memcpy { dst, src, count } => std::ptr::copy(*src as *const u8, *dst as *mut u8, *count),
        Node::Memset { dst, value, count } => std::ptr::write_bytes(*dst as *mut u8, *value, *count),
    }
}

unsafe fn submit(stream: Handle, node: Node) -> c_int {
    if let Some(mut n) = capture(stream, node) { run(&mut n); }
    OK
}

unsafe fn launch_params(h: Handle, stream: Handle, params: *mut *mut c_void, extra: *mut *mut c_void) -> c_int {
    let Some(k) = kernel(h) else { return INVALID_HANDLE };
    let args = if !params.is_null() { ArgCopy::from_params(k, params) } else if !extra.is_null() { match ArgCopy::from_extra(k, extra) { Some(a) => a, None => return INVALID_VALUE } } else if k.sizes.is_empty() { ArgCopy::new(vec![]) } else { return INVALID_VALUE };
    submit(stream, Node::Kernel { k: h, args })
}

#[no_mangle] pub unsafe extern "C" fn __cudaLaunchKernel(k: Handle, _g: Dim3, _b: Dim3, args: *mut *mut c_void, _sm: usize, s: Handle) -> c_int { rt(launch_params(k, s, args, std::ptr::null_mut())) }
#[no_mangle] pub unsafe extern "C" fn __cudaLaunchKernel_ptsz(k: Handle, g: Dim3, b: Dim3, args: *mut *mut c_void, sm: usize, s: Handle) -> c_int { __cudaLaunchKernel(k, g, b, args, sm, s) }
#[no_mangle] pub unsafe extern "C" fn cudaLaunchKernel(f: *const c_void, g: Dim3, b: Dim3, args: *mut *mut c_void, sm: usize, s: Handle) -> c_int { __cudaLaunchKernel(f as Handle, g, b, args, sm, s) }
#[no_mangle] pub unsafe extern "C" fn cudaLaunchKernel_ptsz(f: *const c_void, g: Dim3, b: Dim3, args: *mut *mut c_void, sm: usize, s: Handle) -> c_int { __cudaLaunchKernel(f as Handle, g, b, args, sm, s) }
#[no_mangle] pub unsafe extern "C" fn cudaLaunchCooperativeKernel(f: *const c_void, g: Dim3, b: Dim3, args: *mut *mut c_void, sm: usize, s: Handle) -> c_int { __cudaLaunchKernel(f as Handle, g, b, args, sm, s) }
#[no_mangle] pub unsafe extern "C" fn cudaLaunchCooperativeKernel_ptsz(f: *const c_void, g: Dim3, b: Dim3, args: *mut *mut c_void, sm: usize, s: Handle) -> c_int { __cudaLaunchKernel(f as Handle, g, b, args, sm, s) }

#[repr(C)]
pub struct CudaLaunchConfig { grid: Dim3, block: Dim3, smem: usize, stream: Handle, attrs: *mut c_void, nattrs: c_uint }
#[no_mangle] pub unsafe extern "C" fn cudaLaunchKernelExC(c: *const CudaLaunchConfig, f: *const c_void, args: *mut *mut c_void) -> c_int {
    if c.is_null() { return rt(INVALID_VALUE) }
    rt(launch_params(f as Handle, (*c).stream, args, std::ptr::null_mut()))
}
#[no_mangle] pub unsafe extern "C" fn cudaLaunchKernelExC_ptsz(c: *const CudaLaunchConfig, f: *const c_void, args: *mut *mut c_void) -> c_int { cudaLaunchKernelExC(c, f, args) }

#[no_mangle] pub unsafe extern "C" fn cuLaunchKernel(f: Handle, _gx: c_uint, _gy: c_uint, _gz: c_uint, _bx: c_uint, _by: c_uint, _bz: c_uint, _sm: c_uint, s: Handle, p: *mut *mut c_void, e: *mut *mut c_void) -> c_int { launch_params(f, s, p, e) }
#[no_mangle] pub unsafe extern "C" fn cuLaunchKernel_ptsz(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, sm: c_uint, s: Handle, p: *mut *mut c_void, e: *mut *mut c_void) -> c_int { cuLaunchKernel(f, gx, gy, gz, bx, by, bz, sm, s, p, e) }
#[no_mangle] pub unsafe extern "C" fn cuLaunchCooperativeKernel(f: Handle, _gx: c_uint, _gy: c_uint, _gz: c_uint, _bx: c_uint, _by: c_uint, _bz: c_uint, _sm: c_uint, s: Handle, p: *mut *mut c_void) -> c_int { launch_params(f, s, p, std::ptr::null_mut()) }
#[no_mangle] pub unsafe extern "C" fn cuLaunchCooperativeKernel_ptsz(f: Handle, gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, sm: c_uint, s: Handle, p: *mut *mut c_void) -> c_int { cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, sm, s, p) }

/// The attribute the double checks is forwarded intact: `dbl_last_launch_attr` reports the
/// first attribute id and value word of the last cuLaunchKernelEx.
static LAST_ATTR: Mutex<(u32, u64, u32)> = Mutex::new((0, 0, 0));
#[repr(C)]
pub struct CuLaunchConfig { gx: c_uint, gy: c_uint, gz: c_uint, bx: c_uint, by: c_uint, bz: c_uint, smem: c_uint, stream: Handle, attrs: *const u8, nattrs: c_uint }
#[no_mangle] pub unsafe extern "C" fn cuLaunchKernelEx(c: *const CuLaunchConfig, f: Handle, p: *mut *mut c_void, e: *mut *mut c_void) -> c_int {
    if c.is_null() { return INVALID_VALUE }
    let c = &*c;
    if c.nattrs > 0 && !c.attrs.is_null() {
        // CUlaunchAttribute: u32 id, 4 bytes pad, 64-byte value union.
        *LAST_ATTR.lock().unwrap() = (*(c.attrs as *const u32), *(c.attrs.add(8) as *const u64), c.gx);
    }
    launch_params(f, c.stream, p, e)
}
#[no_mangle] pub unsafe extern "C" fn cuLaunchKernelEx_ptsz(c: *const CuLaunchConfig, f: Handle, p: *mut *mut c_void, e: *mut *mut c_void) -> c_int { cuLaunchKernelEx(c, f, p, e) }
#[no_mangle] pub unsafe extern "C" fn dbl_last_launch_attr(id: *mut u32, value: *mut u64, gx: *mut u32) {
    let (a, v, g) = *LAST_ATTR.lock().unwrap(); *id = a; *value = v; *gx = g;
}

// ---------------------------------------------------------------- copies and sets

unsafe fn copy(dst: u64, src: u64, count: usize, stream: Handle) -> c_int {
    if count > 0 && (dst == 0 || src == 0) { return INVALID_VALUE }
    submit(stream, Node::Memcpy { dst, src, count })
}
unsafe fn set(dst: u64, value: u8, count: usize, stream: Handle) -> c_int {
    if count > 0 && !is_device(dst) { return INVALID_VALUE }
    submit(stream, Node::Memset { dst, value, count })
}
unsafe fn set_wide(dst: u64, value: u32, width: usize, count: usize) -> c_int {
    if count > 0 && !is_device(dst) { return INVALID_VALUE }
    for i in 0..count { std::ptr::copy_nonoverlapping(&value as *const u32 as *const u8, (dst as *mut u8).add(i * width), width); }
    OK
}
const NULL: Handle = std::ptr::null_mut();
#[no_mangle] pub unsafe extern "C" fn cudaMemcpy(d: *mut c_void, s: *const c_void, n: usize, _k: c_int) -> c_int { rt(copy(d as u64, s as u64, n, NULL)) }
#[no_mangle] pub unsafe extern "C" fn cudaMemcpyAsync(d: *mut c_void, s: *const c_void, n: usize, _k: c_int, st: Handle) -> c_int { rt(copy(d as u64, s as u64, n, st)) }
#[no_mangle] pub unsafe extern "C" fn cudaMemcpy2DAsync(d: *mut c_void, dp: usize, s: *const c_void, sp: usize, w: usize, h: usize, _k: c_int, _st: Handle) -> c_int {
    for r in 0..h { std::ptr::copy((s as *const u8).add(r * sp), (d as *mut u8).add(r * dp), w); }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cudaMemcpyPeerAsync(d: *mut c_void, _dd: c_int, s: *const c_void, _sd: c_int, n: usize, st: Handle) -> c_int { rt(copy(d as u64, s as u64, n, st)) }
#[no_mangle] pub unsafe extern "C" fn cudaMemset(d: *mut c_void, v: c_int, n: usize) -> c_int { rt(set(d as u64, v as u8, n, NULL)) }
#[no_mangle] pub unsafe extern "C" fn cudaMemsetAsync(d: *mut c_void, v: c_int, n: usize, st: Handle) -> c_int { rt(set(d as u64, v as u8, n, st)) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpy(d: u64, s: u64, n: usize) -> c_int { copy(d, s, n, NULL) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyAsync(d: u64, s: u64, n: usize, st: Handle) -> c_int { copy(d, s, n, st) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyHtoD_v2(d: u64, s: *const c_void, n: usize) -> c_int { copy(d, s as u64, n, NULL) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(d: u64, s: *const c_void, n: usize, st: Handle) -> c_int { copy(d, s as u64, n, st) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyDtoH_v2(d: *mut c_void, s: u64, n: usize) -> c_int { copy(d as u64, s, n, NULL) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(d: *mut c_void, s: u64, n: usize, st: Handle) -> c_int { copy(d as u64, s, n, st) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyDtoD_v2(d: u64, s: u64, n: usize) -> c_int { copy(d, s, n, NULL) }
#[no_mangle] pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(d: u64, s: u64, n: usize, st: Handle) -> c_int { copy(d, s, n, st) }
#[repr(C)]
pub struct Memcpy2D { sx: usize, sy: usize, st: c_uint, sh: *const c_void, sd: u64, sa: Handle, sp: usize, dx: usize, dy: usize, dt: c_uint, dh: *mut c_void, dd: u64, da: Handle, dp: usize, w: usize, h: usize }
#[no_mangle] pub unsafe extern "C" fn cuMemcpy2DAsync_v2(c: *const Memcpy2D, _st: Handle) -> c_int {
    let c = &*c;
    let src = if c.st == 1 { c.sh as u64 } else { c.sd };
    let dst = if c.dt == 1 { c.dh as u64 } else { c.dd };
    for r in 0..c.h { std::ptr::copy((src as *const u8).add((c.sy + r) * c.sp + c.sx), (dst as *mut u8).add((c.dy + r) * c.dp + c.dx), c.w); }
    OK
}
/// A 3-D set of a pitched volume (what the library must treat as an opaque call).
#[repr(C)] #[derive(Clone, Copy)] pub struct PitchedPtr { ptr: *mut c_void, pitch: usize, xsize: usize, ysize: usize }
#[repr(C)] #[derive(Clone, Copy)] pub struct Extent { w: usize, h: usize, d: usize }
#[no_mangle] pub unsafe extern "C" fn cudaMemset3D(p: PitchedPtr, v: c_int, e: Extent) -> c_int {
    for z in 0..e.d { for y in 0..e.h { std::ptr::write_bytes((p.ptr as *mut u8).add((z * p.ysize + y) * p.pitch), v as u8, e.w); } }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuMemcpyPeerAsync(d: u64, _dc: Handle, s: u64, _sc: Handle, n: usize, st: Handle) -> c_int { copy(d, s, n, st) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD8_v2(d: u64, v: u8, n: usize) -> c_int { set(d, v, n, NULL) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD8Async(d: u64, v: u8, n: usize, st: Handle) -> c_int { set(d, v, n, st) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD16_v2(d: u64, v: u16, n: usize) -> c_int { set_wide(d, v as u32, 2, n) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD16Async(d: u64, v: u16, n: usize, _st: Handle) -> c_int { set_wide(d, v as u32, 2, n) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD32_v2(d: u64, v: c_uint, n: usize) -> c_int { set_wide(d, v, 4, n) }
#[no_mangle] pub unsafe extern "C" fn cuMemsetD32Async(d: u64, v: c_uint, n: usize, _st: Handle) -> c_int { set_wide(d, v, 4, n) }

// ---------------------------------------------------------------- capture and graphs

#[no_mangle] pub unsafe extern "C" fn cudaStreamBeginCapture(s: Handle, _mode: c_int) -> c_int {
    CAPTURE.lock().unwrap().push((s as usize, Vec::new())); OK
}
#[no_mangle] pub unsafe extern "C" fn cuStreamBeginCapture_v2(s: Handle, m: c_int) -> c_int { cudaStreamBeginCapture(s, m) }
#[no_mangle] pub unsafe extern "C" fn cudaStreamEndCapture(s: Handle, g: *mut Handle) -> c_int {
    let mut c = CAPTURE.lock().unwrap();
    let Some(i) = c.iter().position(|(x, _)| *x == s as usize) else { return 4 };
    let (_, nodes) = c.remove(i);
    *g = Box::into_raw(Box::new(Graph { nodes })) as Handle;
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuStreamEndCapture(s: Handle, g: *mut Handle) -> c_int { cudaStreamEndCapture(s, g) }
#[no_mangle] pub unsafe extern "C" fn cuStreamIsCapturing(s: Handle, status: *mut c_int) -> c_int {
    *status = CAPTURE.lock().unwrap().iter().any(|(x, _)| *x == s as usize) as c_int; OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphGetNodes(g: Handle, nodes: *mut Handle, n: *mut usize) -> c_int {
    let g = &mut *(g as *mut Graph);
    if nodes.is_null() { *n = g.nodes.len(); return OK }
    for (i, node) in g.nodes.iter_mut().take(*n).enumerate() { *nodes.add(i) = &mut **node as *mut Node as Handle; }
    *n = g.nodes.len().min(*n);
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphNodeGetType(node: Handle, t: *mut c_int) -> c_int {
    *t = match &*(node as *const Node) { Node::Kernel { .. } => 0, Node::Memcpy { .. } => 1, Node::Memset { .. } => 2 }; OK
}
#[repr(C)]
pub struct KernelNodeParams { func: Handle, g: [c_uint; 3], b: [c_uint; 3], smem: c_uint, params: *mut *mut c_void, extra: *mut *mut c_void, kern: Handle, ctx: Handle }
#[no_mangle] pub unsafe extern "C" fn cuGraphKernelNodeGetParams_v2(node: Handle, p: *mut KernelNodeParams) -> c_int {
    let Node::Kernel { k, args } = &mut *(node as *mut Node) else { return INVALID_VALUE };
    *p = KernelNodeParams { func: *k, g: [1; 3], b: [1; 3], smem: 0, params: args.ptrs.as_mut_ptr(), extra: std::ptr::null_mut(), kern: std::ptr::null_mut(), ctx: std::ptr::null_mut() };
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphMemcpyNodeGetParams(node: Handle, p: *mut u8) -> c_int {
    let Node::Memcpy { dst, src, count } = &*(node as *const Node) else { return INVALID_VALUE };
    // CUDA_MEMCPY3D: srcMemoryType at 32, srcDevice at 48; dstMemoryType at 120, dstDevice at 136; WidthInBytes at 176.
    std::ptr::write_bytes(p, 0, 200);
    *(p.add(32) as *mut c_uint) = 4; *(p.add(48) as *mut u64) = *src;
    *(p.add(120) as *mut c_uint) = 4; *(p.add(136) as *mut u64) = *dst;
    *(p.add(176) as *mut usize) = *count;
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphMemsetNodeGetParams(node: Handle, p: *mut u64) -> c_int {
    let Node::Memset { dst, value, count } = &*(node as *const Node) else { return INVALID_VALUE };
    *p = *dst; *p.add(1) = 0; *(p.add(2) as *mut c_uint) = *value as c_uint; *(p.add(2) as *mut c_uint).add(1) = 1; *p.add(3) = *count as u64; *p.add(4) = 1;
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphChildGraphNodeGetGraph(_node: Handle, _g: *mut Handle) -> c_int { INVALID_VALUE }

/// An executable graph shares the graph's nodes (the double never frees graphs).
/// An executable graph: its own handle (as the real runtime gives), naming the graph it runs.
/// Handles come from one pool, last freed first, so that a destroyed handle comes back at once
/// from any thread's next instantiate, as a driver's handle pool may hand it out.
struct Exec { graph: Handle }
static EXEC_POOL: Mutex<Vec<usize>> = Mutex::new(Vec::new());
#[no_mangle] pub unsafe extern "C" fn cudaGraphInstantiate(e: *mut Handle, g: Handle, _f: u64) -> c_int {
    let reused = EXEC_POOL.lock().unwrap().pop();
    *e = match reused {
        Some(h) => { (*(h as *mut Exec)).graph = g; h as Handle }
        None => Box::into_raw(Box::new(Exec { graph: g })) as Handle,
    };
    OK
}
#[no_mangle] pub unsafe extern "C" fn cudaGraphInstantiateWithFlags(e: *mut Handle, g: Handle, f: u64) -> c_int { cudaGraphInstantiate(e, g, f) }
#[no_mangle] pub unsafe extern "C" fn cudaGraphInstantiateWithParams(e: *mut Handle, g: Handle, _p: *mut c_void) -> c_int { cudaGraphInstantiate(e, g, 0) }
#[no_mangle] pub unsafe extern "C" fn cuGraphInstantiateWithFlags(e: *mut Handle, g: Handle, f: u64) -> c_int { cudaGraphInstantiate(e, g, f) }
#[no_mangle] pub unsafe extern "C" fn cuGraphInstantiateWithParams(e: *mut Handle, g: Handle, _p: *mut c_void) -> c_int { cudaGraphInstantiate(e, g, 0) }
#[no_mangle] pub unsafe extern "C" fn cudaGraphExecUpdate(_e: Handle, _g: Handle, _i: *mut c_void) -> c_int { OK }
#[no_mangle] pub unsafe extern "C" fn cuGraphExecUpdate_v2(_e: Handle, _g: Handle, _i: *mut c_void) -> c_int { OK }
#[no_mangle] pub unsafe extern "C" fn cudaGraphExecDestroy(e: Handle) -> c_int {
    if !e.is_null() {
        EXEC_POOL.lock().unwrap().push(e as usize);
        // a driver call takes time after the handle is free again: other threads run meanwhile
        std::thread::sleep(std::time::Duration::from_micros(20));
    }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cuGraphExecDestroy(e: Handle) -> c_int { cudaGraphExecDestroy(e) }
#[no_mangle] pub unsafe extern "C" fn cuGraphLaunch(e: Handle, _s: Handle) -> c_int {
    let g = &mut *((*(e as *mut Exec)).graph as *mut Graph);
    for n in g.nodes.iter_mut() { run(n); }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cudaGraphLaunch(e: Handle, s: Handle) -> c_int {
    let launch: unsafe extern "C" fn(Handle, Handle) -> c_int = std::mem::transmute(via_driver(c"cuGraphLaunch"));
    launch(e, s)
}

// ---------------------------------------------------------------- NCCL (one rank)

/// Bytes of an `ncclDataType_t` element.
fn nccl_width(t: c_int) -> Option<usize> {
    match t { 0 | 1 | 10 | 11 => Some(1), 6 | 9 => Some(2), 2 | 3 | 7 => Some(4), 4 | 5 | 8 => Some(8), _ => None }
}
/// A collective of one rank: the receive buffer gets the send buffer's bytes (a sum, a gather
/// or a broadcast over one rank is the data itself), synchronously, touching both as a kernel
/// would (a packed range faults).
unsafe fn nccl_copy(send: *const c_void, recv: *mut c_void, count: usize, t: c_int) -> c_int {
    let Some(w) = nccl_width(t) else { return 4 };
    if send != recv as *const c_void { std::ptr::copy(send as *const u8, recv as *mut u8, count * w); }
    0
}
#[no_mangle] pub unsafe extern "C" fn ncclAllReduce(s: *const c_void, r: *mut c_void, n: usize, t: c_int, _op: c_int, _c: Handle, _st: Handle) -> c_int { nccl_copy(s, r, n, t) }
#[no_mangle] pub unsafe extern "C" fn ncclBroadcast(s: *const c_void, r: *mut c_void, n: usize, t: c_int, _root: c_int, _c: Handle, _st: Handle) -> c_int { nccl_copy(s, r, n, t) }
#[no_mangle] pub unsafe extern "C" fn ncclReduce(s: *const c_void, r: *mut c_void, n: usize, t: c_int, _op: c_int, _root: c_int, _c: Handle, _st: Handle) -> c_int { nccl_copy(s, r, n, t) }
#[no_mangle] pub unsafe extern "C" fn ncclAllGather(s: *const c_void, r: *mut c_void, n: usize, t: c_int, _c: Handle, _st: Handle) -> c_int { nccl_copy(s, r, n, t) }
#[no_mangle] pub unsafe extern "C" fn ncclReduceScatter(s: *const c_void, r: *mut c_void, n: usize, t: c_int, _op: c_int, _c: Handle, _st: Handle) -> c_int { nccl_copy(s, r, n, t) }
#[no_mangle] pub unsafe extern "C" fn ncclSend(s: *const c_void, n: usize, t: c_int, _peer: c_int, _c: Handle, _st: Handle) -> c_int {
    let Some(w) = nccl_width(t) else { return 4 };
    let mut sum = 0u8;
    for i in 0..n * w { sum = sum.wrapping_add(*(s as *const u8).add(i)); } // read as a kernel would
    std::hint::black_box(sum);
    0
}
#[no_mangle] pub unsafe extern "C" fn ncclRecv(r: *mut c_void, n: usize, t: c_int, _peer: c_int, _c: Handle, _st: Handle) -> c_int {
    let Some(w) = nccl_width(t) else { return 4 };
    std::ptr::write_bytes(r as *mut u8, 0x5a, n * w);
    0
}
#[no_mangle] pub unsafe extern "C" fn ncclGroupStart() -> c_int { 0 }
#[no_mangle] pub unsafe extern "C" fn ncclGroupEnd() -> c_int { 0 }
#[no_mangle] pub unsafe extern "C" fn ncclCommRegister(_c: Handle, b: *mut c_void, size: usize, h: *mut *mut c_void) -> c_int {
    if !is_device(b as u64) || size == 0 { return 4 }
    *h = b; 0
}

// ---------------------------------------------------------------- lookups

macro_rules! proc_table {
    ($($f:ident),* $(,)?) => {
        fn proc_address(name: &[u8]) -> Option<usize> {
            $( if name == stringify!($f).as_bytes() { return Some($f as *const () as usize); } )*
            None
        }
    };
}
proc_table!(
    cuMemAlloc_v2, cuMemFree_v2, cuMemAllocAsync, cuMemFreeAsync, cuMemGetInfo_v2, cuIpcGetMemHandle, cuPointerGetAttribute,
    cuPointerGetAttributes, cuMemGetAddressRange_v2,
    cuMemAddressReserve, cuMemAddressFree, cuMemCreate, cuMemRelease, cuMemMap, cuMemSetAccess, cuMemUnmap, cuCtxEnablePeerAccess,
    cuKernelGetParamInfo, cuFuncGetParamInfo, cuLaunchKernel, cuLaunchKernel_ptsz, cuLaunchKernelEx, cuLaunchKernelEx_ptsz,
    cuLaunchCooperativeKernel, cuLaunchCooperativeKernel_ptsz, cuMemcpy, cuMemcpyAsync, cuMemcpyHtoD_v2, cuMemcpyHtoDAsync_v2,
    cuMemcpyDtoH_v2, cuMemcpyDtoHAsync_v2, cuMemcpyDtoD_v2, cuMemcpyDtoDAsync_v2, cuMemcpy2DAsync_v2, cuMemcpyPeerAsync,
    cuMemsetD8_v2, cuMemsetD8Async, cuMemsetD16_v2, cuMemsetD16Async, cuMemsetD32_v2, cuMemsetD32Async,
    cuStreamBeginCapture_v2, cuStreamEndCapture, cuStreamIsCapturing, cuGraphGetNodes, cuGraphNodeGetType,
    cuGraphKernelNodeGetParams_v2, cuGraphMemcpyNodeGetParams, cuGraphMemsetNodeGetParams, cuGraphInstantiateWithFlags,
    cuGraphInstantiateWithParams, cuGraphExecUpdate_v2, cuGraphExecDestroy, cuGraphLaunch, cuGetProcAddress, cuGetProcAddress_v2,
    cuDriverGetVersion,
);

#[no_mangle] pub unsafe extern "C" fn cuDriverGetVersion(v: *mut c_int) -> c_int { *v = 13000; OK }

/// Resolves a base name the way the driver does: the per-thread variant when asked for, the
/// newest `_v2` when one exists, else the name itself.
unsafe fn lookup(symbol: *const c_char, pfn: *mut *mut c_void, per_thread: bool) -> c_int {
    let base = CStr::from_ptr(symbol).to_bytes();
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    if per_thread { candidates.push([base, b"_ptsz"].concat()); }
    candidates.push([base, b"_v2"].concat());
    candidates.push(base.to_vec());
    for c in candidates {
        if let Some(a) = proc_address(&c) { *pfn = a as *mut c_void; return OK; }
    }
    *pfn = std::ptr::null_mut();
    NOT_FOUND
}
#[no_mangle] pub unsafe extern "C" fn cuGetProcAddress(s: *const c_char, pfn: *mut *mut c_void, _v: c_int, flags: u64) -> c_int { lookup(s, pfn, flags & 2 != 0) }
#[no_mangle] pub unsafe extern "C" fn cuGetProcAddress_v2(s: *const c_char, pfn: *mut *mut c_void, _v: c_int, flags: u64, st: *mut c_int) -> c_int {
    let rc = lookup(s, pfn, flags & 2 != 0);
    if !st.is_null() { *st = if rc == OK { 0 } else { 1 }; }
    rc
}
#[no_mangle] pub unsafe extern "C" fn cudaGetDriverEntryPoint(s: *const c_char, pfn: *mut *mut c_void, flags: u64, st: *mut c_int) -> c_int { cuGetProcAddress_v2(s, pfn, 13000, flags, st) }
#[no_mangle] pub unsafe extern "C" fn cudaGetDriverEntryPointByVersion(s: *const c_char, pfn: *mut *mut c_void, v: c_uint, flags: u64, st: *mut c_int) -> c_int { cuGetProcAddress_v2(s, pfn, v as c_int, flags, st) }

// ---------------------------------------------------------------- cuBLAS

fn all_device(ptrs: &[*const c_void]) -> c_int { if ptrs.iter().all(|p| is_device(*p as u64)) { OK } else { 7 } }

/// Column-major C = alpha * A * B + beta * C (no transposes), on host memory.
#[no_mangle] pub unsafe extern "C" fn cublasSgemm_v2(_h: Handle, ta: c_int, tb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const f32, a: *const f32, lda: c_int, b: *const f32, ldb: c_int, beta: *const f32, c: *mut f32, ldc: c_int) -> c_int {
    if ta != 0 || tb != 0 { return 15 }
    if all_device(&[a as _, b as _, c as _]) != OK { return 7 }
    let (m, n, k, lda, ldb, ldc) = (m as usize, n as usize, k as usize, lda as usize, ldb as usize, ldc as usize);
    for j in 0..n { for i in 0..m {
        let mut acc = 0f32;
        for l in 0..k { acc += *a.add(i + l * lda) * *b.add(l + j * ldb); }
        let out = c.add(i + j * ldc);
        *out = *alpha * acc + *beta * *out;
    } }
    OK
}
macro_rules! checked_gemm { ($($f:ident),*) => {$(
    #[no_mangle] pub unsafe extern "C" fn $f(_h: Handle, _ta: c_int, _tb: c_int, _m: c_int, _n: c_int, _k: c_int, _al: *const c_void, a: *const c_void, _lda: c_int, b: *const c_void, _ldb: c_int, _be: *const c_void, c: *mut c_void, _ldc: c_int) -> c_int { all_device(&[a, b, c as _]) }
)*}; }
checked_gemm!(cublasDgemm_v2, cublasCgemm_v2, cublasZgemm_v2);
macro_rules! checked_strided { ($($f:ident),*) => {$(
    #[no_mangle] pub unsafe extern "C" fn $f(_h: Handle, _ta: c_int, _tb: c_int, _m: c_int, _n: c_int, _k: c_int, _al: *const c_void, a: *const c_void, _lda: c_int, _sa: i64, b: *const c_void, _ldb: c_int, _sb: i64, _be: *const c_void, c: *mut c_void, _ldc: c_int, _sc: i64, _bt: c_int) -> c_int { all_device(&[a, b, c as _]) }
)*}; }
// cublasZgemmStridedBatched is left out on purpose: tests/c/late.c defines it, in a library
// the test program loads only after the lookup hooks have run (see `late_library`).
checked_strided!(cublasSgemmStridedBatched, cublasDgemmStridedBatched, cublasCgemmStridedBatched);
#[no_mangle] pub unsafe extern "C" fn cublasGemmEx(_h: Handle, _ta: c_int, _tb: c_int, _m: c_int, _n: c_int, _k: c_int, _al: *const c_void, a: *const c_void, _at: c_int, _lda: c_int, b: *const c_void, _bt: c_int, _ldb: c_int, _be: *const c_void, c: *mut c_void, _ct: c_int, _ldc: c_int, _comp: c_int, _algo: c_int) -> c_int { all_device(&[a, b, c as _]) }
#[no_mangle] pub unsafe extern "C" fn cublasGemmStridedBatchedEx(_h: Handle, _ta: c_int, _tb: c_int, _m: c_int, _n: c_int, _k: c_int, _al: *const c_void, a: *const c_void, _at: c_int, _lda: c_int, _sa: i64, b: *const c_void, _bt: c_int, _ldb: c_int, _sb: i64, _be: *const c_void, c: *mut c_void, _ct: c_int, _ldc: c_int, _sc: i64, _batch: c_int, _comp: c_int, _algo: c_int) -> c_int { all_device(&[a, b, c as _]) }
/// A cuBLASLt matrix layout: the attributes the library reads (cublasLt.h's types and ids:
/// 0 type u32, 1 order i32, 2 rows u64, 3 cols u64, 4 ld i64, 5 batch count i32, 6 strided
/// batch offset i64). Get and Set refuse a size other than the attribute's, as cuBLASLt does.
#[derive(Clone, Copy)]
pub struct LtLayout { ty: u32, order: i32, rows: u64, cols: u64, ld: i64, batch: i32, stride: i64 }
fn lt_attr(l: &mut LtLayout, attr: c_int) -> Option<(*mut u8, usize)> {
    Some(match attr {
        0 => (&mut l.ty as *mut u32 as *mut u8, 4),
        1 => (&mut l.order as *mut i32 as *mut u8, 4),
        2 => (&mut l.rows as *mut u64 as *mut u8, 8),
        3 => (&mut l.cols as *mut u64 as *mut u8, 8),
        4 => (&mut l.ld as *mut i64 as *mut u8, 8),
        5 => (&mut l.batch as *mut i32 as *mut u8, 4),
        6 => (&mut l.stride as *mut i64 as *mut u8, 8),
        _ => return None,
    })
}
#[no_mangle] pub unsafe extern "C" fn cublasLtMatrixLayoutCreate(desc: *mut Handle, ty: u32, rows: u64, cols: u64, ld: i64) -> c_int {
    *desc = Box::into_raw(Box::new(LtLayout { ty, order: 0, rows, cols, ld, batch: 1, stride: 0 })) as Handle; OK
}
#[no_mangle] pub unsafe extern "C" fn cublasLtMatrixLayoutDestroy(desc: Handle) -> c_int { drop(Box::from_raw(desc as *mut LtLayout)); OK }
#[no_mangle] pub unsafe extern "C" fn cublasLtMatrixLayoutSetAttribute(desc: Handle, attr: c_int, buf: *const c_void, size: usize) -> c_int {
    if desc.is_null() { return 7 }
    match lt_attr(&mut *(desc as *mut LtLayout), attr) { Some((p, n)) if n == size => { std::ptr::copy_nonoverlapping(buf as *const u8, p, n); OK } _ => 7 }
}
#[no_mangle] pub unsafe extern "C" fn cublasLtMatrixLayoutGetAttribute(desc: Handle, attr: c_int, buf: *mut c_void, size: usize, written: *mut usize) -> c_int {
    if desc.is_null() { return 7 }
    match lt_attr(&mut *(desc as *mut LtLayout), attr) {
        Some((p, n)) => { *written = n; if n != size { return 7 } std::ptr::copy_nonoverlapping(p, buf as *mut u8, n); OK }
        None => 7,
    }
}
/// D = C + A, elementwise over `workspace_size` bytes read as f32 (a checkable stand-in).
#[no_mangle] pub unsafe extern "C" fn cublasLtMatmul(_h: Handle, _d: Handle, _al: *const c_void, a: *const c_void, _ad: Handle, b: *const c_void, _bd: Handle, _be: *const c_void, c: *const c_void, _cd: Handle, d: *mut c_void, _dd: Handle, _algo: *const c_void, ws: *mut c_void, ws_size: usize, _s: Handle) -> c_int {
    if all_device(&[a, b, c, d as _]) != OK || (ws_size > 0 && !is_device(ws as u64)) { return 7 }
    OK
}

// ---------------------------------------------------------------- cuDNN

#[derive(Default)]
pub struct VariantPack { ptrs: Vec<u64>, workspace: u64 }
#[no_mangle] pub unsafe extern "C" fn cudnnBackendCreateDescriptor(_kind: c_int, desc: *mut Handle) -> c_int {
    *desc = Box::into_raw(Box::<VariantPack>::default()) as Handle; OK
}
#[no_mangle] pub unsafe extern "C" fn cudnnBackendSetAttribute(desc: Handle, name: c_int, kind: c_int, count: i64, elements: *const c_void) -> c_int {
    let p = &mut *(desc as *mut VariantPack);
    if name == 1000 { return OK } // unique ids (CUDNN_TYPE_INT64): not kept
    if kind != 6 { return 2000 }
    let values = std::slice::from_raw_parts(elements as *const u64, count as usize);
    match name { 1001 => p.ptrs = values.to_vec(), 1003 => p.workspace = values[0], 1000 => {}, _ => return 2000 }
    OK
}
#[no_mangle] pub unsafe extern "C" fn cudnnBackendDestroyDescriptor(desc: Handle) -> c_int { drop(Box::from_raw(desc as *mut VariantPack)); OK }
/// Test helper: a variant pack holding these data pointers and workspace.
#[no_mangle] pub unsafe extern "C" fn dbl_variant_pack(ptrs: *const u64, n: usize, workspace: u64) -> Handle {
    Box::into_raw(Box::new(VariantPack { ptrs: std::slice::from_raw_parts(ptrs, n).to_vec(), workspace })) as Handle
}
#[no_mangle] pub unsafe extern "C" fn cudnnBackendGetAttribute(desc: Handle, name: c_int, kind: c_int, requested: i64, count: *mut i64, array: *mut c_void) -> c_int {
    let p = &*(desc as *const VariantPack);
    if kind != 6 { return 2000 }
    let values: Vec<u64> = match name { 1001 => p.ptrs.clone(), 1003 => vec![p.workspace], _ => return 2000 };
    *count = values.len() as i64;
    for (i, v) in values.iter().take(requested as usize).enumerate() { *(array as *mut u64).add(i) = *v; }
    OK
}
/// Zeroes the first 4 bytes of every data pointer (a checkable effect).
#[no_mangle] pub unsafe extern "C" fn cudnnBackendExecute(_h: Handle, _plan: Handle, pack: Handle) -> c_int {
    let p = &*(pack as *const VariantPack);
    if !p.ptrs.iter().all(|a| is_device(*a)) { return 2000 }
    for a in &p.ptrs { std::ptr::write_bytes(*a as *mut u8, 0, 4); }
    OK
}
