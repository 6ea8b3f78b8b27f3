//! Peer access. VMM memory is reachable only from the devices its `cuMemSetAccess` names,
//! whatever peer access says, so when the program lets one device reach another's memory
//! (`cudaDeviceEnablePeerAccess`, `cuCtxEnablePeerAccess`) and the device reached is the
//! engine's, the caller's device is given access to every buffer the engine has mapped and to
//! every one it maps later (an allocation, a restore). The real call runs first, as the
//! program made it; only its success (or "already enabled") grants anything.
use std::os::raw::{c_int, c_uint};

use crate::cuda_abi::*;

pub const MISSING: i32 = CUDA_ERROR_NOT_FOUND;
pub const PRIMITIVE: bool = true;
/// The engine's buffers stay VMM memory after a fallback to passthrough: a peer must still be
/// able to reach them.
pub const EVEN_IN_PASSTHROUGH: bool = true;

/// `cudaErrorPeerAccessAlreadyEnabled` and `CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED`.
const ALREADY_ENABLED: i32 = 704;

/// After the program's call returned `rc`: if it succeeded, the calling thread's device may
/// now reach the memory of the device `owner` names (asked only then: for the driver's call
/// that pushes the peer's context).
fn enabled(rc: i32, owner: impl FnOnce() -> Option<c_int>) {
    if rc != CUDA_SUCCESS && rc != ALREADY_ENABLED {
        return;
    }
    let (Some(owner), Some(me)) = (owner(), crate::gpu::driver::current_device()) else { return };
    if owner == me {
        return;
    }
    {
        let mut grants = GRANTS.lock();
        if !grants.contains(&(owner, me)) {
            grants.push((owner, me));
        }
    }
    // (an engine that starts on `owner` later reads the grants: `accessors_of`)
    if let Some(engine) = crate::engine::on_device(owner) {
        engine.peer_access(me);
    }
}

/// Peer access the program enabled: (the device whose memory is reached, the device that
/// reaches it).
static GRANTS: parking_lot::Mutex<Vec<(c_int, c_int)>> = parking_lot::Mutex::new(Vec::new());

/// The devices the mappings of `dev`'s engine let in: `dev`, then each device the program
/// enabled access to `dev`'s memory from.
pub fn accessors_of(dev: c_int) -> Vec<c_int> {
    std::iter::once(dev).chain(GRANTS.lock().iter().filter(|g| g.0 == dev).map(|g| g.1)).collect()
}

pub unsafe fn cudaDeviceEnablePeerAccess(call: &impl Fn(c_int, c_uint) -> i32, peer_device: c_int, flags: c_uint) -> i32 {
    let rc = call(peer_device, flags);
    enabled(rc, || Some(peer_device));
    rc
}

pub unsafe fn cuCtxEnablePeerAccess(call: &impl Fn(Handle, c_uint) -> i32, peer_ctx: Handle, flags: c_uint) -> i32 {
    let rc = call(peer_ctx, flags);
    enabled(rc, || crate::gpu::driver::device_of(peer_ctx));
    rc
}
