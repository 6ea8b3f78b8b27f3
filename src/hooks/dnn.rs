//! cuDNN: `cudnnBackendExecute` names what a cuDNN graph touches through its variant pack. The
//! data pointers and workspace are recorded when the program sets them on a descriptor
//! (`cudnnBackendSetAttribute`, as cudnn-frontend does right before executing: reading them
//! back with `cudnnBackendGetAttribute` failed on every call on the GPU machine), with the
//! read-back as a fallback. A pack we cannot see leaves the call opaque: counted, and (once
//! packing exists) every buffer must be resident before such a call.
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};

use once_cell::sync::Lazy;
use parking_lot::Mutex;

use super::{collect, observe, with_resident_as};
use crate::cuda_abi::*;
use crate::real::USES;
use crate::registry::Path;
use crate::stats;

pub const MISSING: i32 = CUDNN_STATUS_NOT_INITIALIZED;
pub const PRIMITIVE: bool = false;
pub const EVEN_IN_PASSTHROUGH: bool = false;

/// Largest variant pack we read (cuDNN graphs have a handful of tensors).
const MAX_POINTERS: usize = 1024;

#[derive(Default)]
struct Pack {
    data: Vec<u64>,
    workspace: u64,
}

/// Pointers set on descriptors, until the descriptor is destroyed.
static PACKS: Lazy<Mutex<HashMap<usize, Pack>>> = Lazy::new(|| Mutex::new(HashMap::new()));

pub unsafe fn cudnnBackendSetAttribute(call: &impl Fn(Handle, c_int, c_int, i64, *const c_void) -> i32, desc: Handle, name: c_int, kind: c_int, count: i64, elements: *const c_void) -> i32 {
    let rc = call(desc, name, kind, count, elements);
    let wanted = name == CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS || name == CUDNN_ATTR_VARIANT_PACK_WORKSPACE;
    if rc == 0 && wanted && kind == CUDNN_TYPE_VOID_PTR && !elements.is_null() && (0..=MAX_POINTERS as i64).contains(&count) {
        observe("cudnnBackendSetAttribute", || {
            // SAFETY: cuDNN accepted `count` void* values at `elements`.
            let values = unsafe { std::slice::from_raw_parts(elements as *const u64, count as usize) };
            let mut packs = PACKS.lock();
            let pack = packs.entry(desc as usize).or_default();
            if name == CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS {
                pack.data = values.to_vec();
            } else {
                pack.workspace = values.first().copied().unwrap_or(0);
            }
        });
    }
    rc
}

pub unsafe fn cudnnBackendDestroyDescriptor(call: &impl Fn(Handle) -> i32, desc: Handle) -> i32 {
    observe("cudnnBackendDestroyDescriptor", || PACKS.lock().remove(&(desc as usize)));
    call(desc)
}

/// The pack's pointers read back from cuDNN (fallback when we did not see them set).
fn read_back(pack: Handle) -> Option<Vec<u64>> {
    let get = USES.cudnnBackendGetAttribute.get()?;
    let mut count: i64 = 0;
    let mut ptrs: Vec<u64> = vec![0; MAX_POINTERS];
    // SAFETY: asks for up to MAX_POINTERS void* into an array of that many; cuDNN writes the
    // number it returned into `count`.
    let rc = unsafe { get(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, MAX_POINTERS as i64, &mut count, ptrs.as_mut_ptr() as *mut c_void) };
    if rc != 0 || count < 0 || count as usize > MAX_POINTERS {
        return None;
    }
    ptrs.truncate(count as usize);
    let (mut ws, mut n) = (0u64, 0i64);
    // SAFETY: one void* out-value.
    let rc = unsafe { get(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &mut n, &mut ws as *mut u64 as *mut c_void) };
    if rc == 0 && n == 1 {
        ptrs.push(ws);
    }
    Some(ptrs)
}

fn pack_pointers(pack: Handle) -> Option<Vec<u64>> {
    let recorded = PACKS.lock().get(&(pack as usize)).map(|p| {
        let mut v = p.data.clone();
        v.push(p.workspace);
        v
    });
    recorded.or_else(|| read_back(pack))
}

/// The stream each cuDNN handle was given (`cudnnSetStream`); 0 otherwise, as in cuDNN.
static STREAMS: Lazy<Mutex<HashMap<usize, usize>>> = Lazy::new(|| Mutex::new(HashMap::new()));

pub unsafe fn cudnnSetStream(call: &impl Fn(Handle, Handle) -> i32, handle: Handle, stream: Handle) -> i32 {
    let rc = call(handle, stream);
    if rc == 0 {
        STREAMS.lock().insert(handle as usize, stream as usize);
    }
    rc
}

/// The variant pack's buffers resident for the call; a pack we cannot read makes the call
/// opaque (every packed buffer resident first).
pub unsafe fn cudnnBackendExecute(call: &impl Fn(Handle, Handle, Handle) -> i32, handle: Handle, plan: Handle, variant_pack: Handle) -> i32 {
    let stream = STREAMS.lock().get(&(handle as usize)).copied().unwrap_or(0) as Handle;
    with_resident_as(
        "cudnnBackendExecute",
        Path::Cudnn,
        stream,
        |u| {
            stats::add(&stats::C.cudnn_calls, 1);
            match pack_pointers(variant_pack) {
                Some(ptrs) => {
                    stats::add(&stats::C.cudnn_pointers, ptrs.iter().filter(|p| **p != 0).count() as u64);
                    collect(u, &ptrs, true);
                }
                None => {
                    stats::fallback(stats::Fallback::CudnnPackUnreadable);
                    u.opaque();
                }
            }
        },
        || call(handle, plan, variant_pack),
        |_| CUDNN_STATUS_EXECUTION_FAILED, // a buffer that could not come back
    )
}
