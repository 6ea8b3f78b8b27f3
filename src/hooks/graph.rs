//! Stream capture and CUDA graphs.
//!
//! Capture: while any capture is under way, a launch asks the driver whether its own stream is
//! capturing, so that captured launches are not counted as executed (they run at replay).
//! Graphs: at instantiate and update time the graph's nodes are read through the driver
//! (kernel nodes through their parameter layouts, memcpy and memset nodes, child graphs); the
//! buffers they use are flagged `GRAPH` for as long as an executable graph holds them, and a
//! replay touches them all and counts the graph's kernels as executed.
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use super::{mark, observe};
use crate::cuda_abi::*;
use crate::layout::KernelRef;
use crate::real::USES;
use crate::registry::{flag, Path, REGISTRY};
use crate::stats;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
/// The runtime's graph calls reach the driver's through pointers we handed out: nested graph
/// hooks are the same operation seen twice (a replay counted twice, before this was set).
pub const PRIMITIVE: bool = true;
pub const EVEN_IN_PASSTHROUGH: bool = false;

static CAPTURES: AtomicUsize = AtomicUsize::new(0);

/// True when `stream` is being captured (only asked while some capture is under way).
pub fn is_capturing(stream: Handle) -> bool {
    if CAPTURES.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let Some(query) = USES.cuStreamIsCapturing.get() else { return false };
    let mut status: c_int = 0;
    // SAFETY: a driver query on the program's own stream with a valid out-parameter.
    let rc = unsafe { query(stream, &mut status) };
    rc == CUDA_SUCCESS && status != 0
}

/// True while any stream capture is under way (the engine packs nothing then).
pub fn capture_under_way() -> bool {
    CAPTURES.load(Ordering::Relaxed) > 0
}

/// Before a capture begins every packed buffer comes back, so that the captured work finds
/// its buffers resident and the engine need not map memory during the capture.
fn capture_begins(hook: &'static str, stream: Handle) {
    for e in crate::engine::all() {
        observe(hook, || {
            let _ = e.restore_all();
            let _ = stream;
        });
    }
}

fn capture_began(rc: i32) {
    if rc == CUDA_SUCCESS {
        CAPTURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// A capture ends when its stream stops capturing, whatever `EndCapture` returned (an
/// invalidated capture ends with an error; an `EndCapture` on a stream that was not capturing
/// fails and ends nothing): asked of the driver before and after the real call.
fn end_capture(stream: Handle, real: impl FnOnce() -> i32) -> i32 {
    let was = is_capturing(stream);
    let rc = real();
    if was && !is_capturing(stream) {
        let _ = CAPTURES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
    }
    rc
}

pub unsafe fn cudaStreamBeginCapture(call: &impl Fn(Handle, c_int) -> i32, stream: Handle, mode: c_int) -> i32 {
    capture_begins("cudaStreamBeginCapture", stream);
    let rc = call(stream, mode);
    capture_began(rc);
    rc
}

pub unsafe fn cuStreamBeginCapture_v2(call: &impl Fn(Handle, c_int) -> i32, stream: Handle, mode: c_int) -> i32 {
    capture_begins("cuStreamBeginCapture_v2", stream);
    let rc = call(stream, mode);
    capture_began(rc);
    rc
}

pub unsafe fn cudaStreamEndCapture(call: &impl Fn(Handle, *mut Handle) -> i32, stream: Handle, graph: *mut Handle) -> i32 {
    end_capture(stream, || call(stream, graph))
}

pub unsafe fn cuStreamEndCapture(call: &impl Fn(Handle, *mut Handle) -> i32, stream: Handle, graph: *mut Handle) -> i32 {
    end_capture(stream, || call(stream, graph))
}

/// What an executable graph uses.
#[derive(Default, Debug)]
struct GraphUse {
    kernels: u64,
    buffers: Vec<u64>,
    /// A node whose arguments we could not read: each replay may touch any buffer.
    opaque: bool,
}

static EXECS: Lazy<Mutex<HashMap<usize, GraphUse>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// Reads a graph's nodes (recursively through child graphs).
fn read_graph(graph: Handle, depth: u32, out: &mut GraphUse) -> Option<()> {
    if depth > 16 {
        return None;
    }
    let get_nodes = USES.cuGraphGetNodes.get()?;
    let node_type = USES.cuGraphNodeGetType.get()?;
    let mut count = 0usize;
    // SAFETY: count query with a null array, as the driver documents.
    if unsafe { get_nodes(graph, std::ptr::null_mut(), &mut count) } != CUDA_SUCCESS {
        return None;
    }
    let mut nodes: Vec<Handle> = vec![std::ptr::null_mut(); count];
    // SAFETY: the array holds `count` entries.
    if count > 0 && unsafe { get_nodes(graph, nodes.as_mut_ptr(), &mut count) } != CUDA_SUCCESS {
        return None;
    }
    for &node in nodes.iter().take(count) {
        let mut kind: c_int = -1;
        // SAFETY: node came from the driver just above.
        if unsafe { node_type(node, &mut kind) } != CUDA_SUCCESS {
            return None;
        }
        match kind {
            CU_GRAPH_NODE_TYPE_KERNEL => {
                let get = USES.cuGraphKernelNodeGetParams_v2.get()?;
                let mut p = CUDA_KERNEL_NODE_PARAMS::zeroed();
                // SAFETY: a kernel node and a valid out-struct.
                if unsafe { get(node, &mut p) } != CUDA_SUCCESS {
                    return None;
                }
                out.kernels += 1;
                let kernel = if !p.func.is_null() { KernelRef::Function(p.func) } else { KernelRef::Kernel(p.kern) };
                let buffers = &mut out.buffers;
                // SAFETY: the driver's own copy of the node's arguments.
                let readable = unsafe { super::launch::record_arguments(Path::Graph, kernel, p.kernelParams, p.extra, |b| buffers.push(b.start)) };
                out.opaque |= !readable;
            }
            CU_GRAPH_NODE_TYPE_MEMCPY => {
                let get = USES.cuGraphMemcpyNodeGetParams.get()?;
                let mut p = CUDA_MEMCPY3D::zeroed();
                // SAFETY: a memcpy node and a valid out-struct.
                if unsafe { get(node, &mut p) } != CUDA_SUCCESS {
                    return None;
                }
                for (t, dev) in [(p.srcMemoryType, p.srcDevice), (p.dstMemoryType, p.dstDevice)] {
                    if t == CU_MEMORYTYPE_DEVICE || t == CU_MEMORYTYPE_UNIFIED {
                        if let Some(b) = REGISTRY.find(dev) {
                            out.buffers.push(b.start);
                        }
                    }
                }
            }
            CU_GRAPH_NODE_TYPE_MEMSET => {
                let get = USES.cuGraphMemsetNodeGetParams.get()?;
                let mut p = CUDA_MEMSET_NODE_PARAMS::zeroed();
                // SAFETY: a memset node and a valid out-struct.
                if unsafe { get(node, &mut p) } != CUDA_SUCCESS {
                    return None;
                }
                if let Some(b) = REGISTRY.find(p.dst) {
                    out.buffers.push(b.start);
                }
            }
            CU_GRAPH_NODE_TYPE_GRAPH => {
                let get = USES.cuGraphChildGraphNodeGetGraph.get()?;
                let mut child: Handle = std::ptr::null_mut();
                // SAFETY: a child-graph node and a valid out-parameter.
                if unsafe { get(node, &mut child) } != CUDA_SUCCESS {
                    return None;
                }
                read_graph(child, depth + 1, out)?;
            }
            // host, empty, event wait/record, external semaphores, memory alloc/free: no
            // buffer of ours reached by the device
            3 | 5..=11 => {}
            // anything else (mem ops, conditional bodies, newer kinds): may touch any buffer
            _ => out.opaque = true,
        }
    }
    Some(())
}

fn instantiated(hook: &'static str, rc: i32, exec: Handle, graph: Handle) {
    if rc != CUDA_SUCCESS || exec.is_null() {
        return;
    }
    observe(hook, || {
        stats::add(&stats::C.graph_instantiations, 1);
        let mut usage = GraphUse::default();
        if read_graph(graph, 0, &mut usage).is_none() {
            stats::fallback(stats::Fallback::GraphUnreadable);
            usage.opaque = true;
        }
        usage.buffers.sort_unstable();
        usage.buffers.dedup();
        let buffers = usage.buffers.clone();
        // in the table before any flag is set: a destroy of another graph of the same buffers
        // clears a flag only if no graph in the table uses it, and clears it under the table's
        // lock, so it never clears a flag this graph is about to set and then needs
        let old = EXECS.lock().insert(exec as usize, usage);
        for &b in &buffers {
            mark(b, flag::GRAPH);
        }
        if let Some(old) = old {
            release_graph_flags(&old);
        }
    });
}

/// Clears `GRAPH` on buffers no remaining executable graph uses.
fn release_graph_flags(gone: &GraphUse) {
    let execs = EXECS.lock();
    for &start in &gone.buffers {
        if execs.values().any(|g| g.buffers.binary_search(&start).is_ok()) {
            continue;
        }
        if let Some(b) = REGISTRY.find(start) {
            b.flags.fetch_and(!flag::GRAPH, Ordering::Relaxed);
        }
    }
}

/// # Safety
/// `exec` is the out-parameter the real call wrote.
unsafe fn exec_of(exec: *mut Handle) -> Handle {
    // SAFETY: per the contract.
    if exec.is_null() { std::ptr::null_mut() } else { unsafe { *exec } }
}

pub unsafe fn cudaGraphInstantiate(call: &impl Fn(*mut Handle, Handle, u64) -> i32, exec: *mut Handle, graph: Handle, flags: u64) -> i32 {
    let rc = call(exec, graph, flags);
    // SAFETY: exec is the out-parameter just written.
    instantiated("cudaGraphInstantiate", rc, unsafe { exec_of(exec) }, graph);
    rc
}

pub unsafe fn cudaGraphInstantiateWithFlags(call: &impl Fn(*mut Handle, Handle, u64) -> i32, exec: *mut Handle, graph: Handle, flags: u64) -> i32 {
    let rc = call(exec, graph, flags);
    // SAFETY: exec is the out-parameter just written.
    instantiated("cudaGraphInstantiateWithFlags", rc, unsafe { exec_of(exec) }, graph);
    rc
}

pub unsafe fn cudaGraphInstantiateWithParams(call: &impl Fn(*mut Handle, Handle, *mut c_void) -> i32, exec: *mut Handle, graph: Handle, params: *mut c_void) -> i32 {
    let rc = call(exec, graph, params);
    // SAFETY: exec is the out-parameter just written.
    instantiated("cudaGraphInstantiateWithParams", rc, unsafe { exec_of(exec) }, graph);
    rc
}

pub unsafe fn cuGraphInstantiateWithFlags(call: &impl Fn(*mut Handle, Handle, u64) -> i32, exec: *mut Handle, graph: Handle, flags: u64) -> i32 {
    let rc = call(exec, graph, flags);
    // SAFETY: exec is the out-parameter just written.
    instantiated("cuGraphInstantiateWithFlags", rc, unsafe { exec_of(exec) }, graph);
    rc
}

pub unsafe fn cuGraphInstantiateWithParams(call: &impl Fn(*mut Handle, Handle, *mut c_void) -> i32, exec: *mut Handle, graph: Handle, params: *mut c_void) -> i32 {
    let rc = call(exec, graph, params);
    // SAFETY: exec is the out-parameter just written.
    instantiated("cuGraphInstantiateWithParams", rc, unsafe { exec_of(exec) }, graph);
    rc
}

pub unsafe fn cudaGraphExecUpdate(call: &impl Fn(Handle, Handle, *mut c_void) -> i32, exec: Handle, graph: Handle, info: *mut c_void) -> i32 {
    let rc = call(exec, graph, info);
    instantiated("cudaGraphExecUpdate", rc, exec, graph);
    rc
}

pub unsafe fn cuGraphExecUpdate_v2(call: &impl Fn(Handle, Handle, *mut c_void) -> i32, exec: Handle, graph: Handle, info: *mut c_void) -> i32 {
    let rc = call(exec, graph, info);
    instantiated("cuGraphExecUpdate_v2", rc, exec, graph);
    rc
}

fn destroyed(hook: &'static str, exec: Handle) {
    observe(hook, || {
        let gone = EXECS.lock().remove(&(exec as usize));
        if let Some(g) = gone {
            release_graph_flags(&g);
        }
    });
}

// Forgotten before the real destroy: once destroyed, its handle may come back at once from
// another thread's instantiate, and forgetting it then would forget that graph instead.
pub unsafe fn cudaGraphExecDestroy(call: &impl Fn(Handle) -> i32, exec: Handle) -> i32 {
    destroyed("cudaGraphExecDestroy", exec);
    call(exec)
}

pub unsafe fn cuGraphExecDestroy(call: &impl Fn(Handle) -> i32, exec: Handle) -> i32 {
    destroyed("cuGraphExecDestroy", exec);
    call(exec)
}

/// A replay: the graph's kernels counted as executed, its buffers resident first (flagged
/// `GRAPH`, they are never packed while it lives, but some may have been packed before it was
/// instantiated).
fn launch_graph(hook: &'static str, exec: Handle, stream: Handle, real: impl FnOnce() -> i32) -> i32 {
    let (buffers, opaque) = observe(hook, || {
        stats::add(&stats::C.graph_launches, 1);
        let execs = EXECS.lock();
        match execs.get(&(exec as usize)) {
            Some(g) => {
                stats::add(&stats::C.graph_kernels, g.kernels);
                (g.buffers.clone(), g.opaque)
            }
            // an executable graph we never saw instantiated: it may touch anything
            None => (Vec::new(), true),
        }
    })
    .unwrap_or_default();
    super::with_resident(
        hook,
        Path::Graph,
        stream,
        |u| {
            if opaque {
                u.opaque();
            }
            super::collect(u, &buffers, false)
        },
        real,
    )
}

pub unsafe fn cudaGraphLaunch(call: &impl Fn(Handle, Handle) -> i32, exec: Handle, stream: Handle) -> i32 {
    launch_graph("cudaGraphLaunch", exec, stream, || call(exec, stream))
}

pub unsafe fn cuGraphLaunch(call: &impl Fn(Handle, Handle) -> i32, exec: Handle, stream: Handle) -> i32 {
    launch_graph("cuGraphLaunch", exec, stream, || call(exec, stream))
}

/// Streams destroyed since they were used: a pack never records an event on such a handle
/// (it waits for the whole context instead).
static RETIRED: Lazy<Mutex<Vec<u64>>> = Lazy::new(|| Mutex::new(Vec::new()));

pub fn is_retired(stream: u64) -> bool {
    RETIRED.lock().contains(&stream)
}

fn retire(hook: &'static str, stream: Handle) {
    if crate::residency::packing() && !stream.is_null() {
        observe(hook, || {
            let mut r = RETIRED.lock();
            if !r.contains(&(stream as u64)) {
                r.push(stream as u64);
            }
        });
    }
}

pub unsafe fn cudaStreamDestroy(call: &impl Fn(Handle) -> i32, stream: Handle) -> i32 {
    retire("cudaStreamDestroy", stream);
    call(stream)
}

pub unsafe fn cuStreamDestroy_v2(call: &impl Fn(Handle) -> i32, stream: Handle) -> i32 {
    retire("cuStreamDestroy_v2", stream);
    call(stream)
}
