//! VMM: a buffer's address range stays reserved for its whole life while its physical memory
//! comes and goes (one physical allocation per buffer: the H200 probe measured a range built
//! of many 2 MiB chunks at ~30 us a chunk to set access and ~22 us to unmap, one handle far
//! cheaper). The real functions are the hooks' own table's: the program's cuMem* calls are
//! hooked (user-mapped memory), ours must not be seen as the program's.
use std::os::raw::c_int;

use super::driver::{check, real, Result};
use crate::cuda_abi::*;
use crate::hooks::REAL;

fn prop(dev: c_int) -> CUmemAllocationProp {
    CUmemAllocationProp {
        kind: CU_MEM_ALLOCATION_TYPE_PINNED,
        requested_handle_types: 0,
        location_type: CU_MEM_LOCATION_TYPE_DEVICE,
        location_id: dev,
        win32_meta: std::ptr::null_mut(),
        compression_type: 0,
        rdma_capable: 0,
        usage: 0,
        reserved: [0; 4],
    }
}

/// The device's allocation granularity (2 MiB on current GPUs).
pub fn granularity(dev: c_int) -> Result<u64> {
    let f = real("cuMemGetAllocationGranularity", &crate::real::USES.cuMemGetAllocationGranularity)?;
    let mut g = 0usize;
    let p = prop(dev);
    // SAFETY: valid out-parameter and property struct.
    check("cuMemGetAllocationGranularity", unsafe { f(&mut g, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM) })?;
    Ok(g.max(1) as u64)
}

pub fn reserve(size: u64) -> Result<u64> {
    let f = real("cuMemAddressReserve", &REAL.cuMemAddressReserve)?;
    let mut va: CUdeviceptr = 0;
    // SAFETY: valid out-parameter; no fixed address, default alignment.
    check("cuMemAddressReserve", unsafe { f(&mut va, size as usize, 0, 0, 0) })?;
    Ok(va)
}

pub fn free_range(va: u64, size: u64) -> Result<()> {
    let f = real("cuMemAddressFree", &REAL.cuMemAddressFree)?;
    // SAFETY: a range we reserved, unmapped by now.
    check("cuMemAddressFree", unsafe { f(va, size as usize) })
}

/// Physical memory of `size` bytes on `dev`; its handle.
pub fn create(size: u64, dev: c_int) -> Result<u64> {
    let f = real("cuMemCreate", &REAL.cuMemCreate)?;
    let mut h = 0u64;
    let p = prop(dev);
    // SAFETY: valid out-parameter and property struct.
    crate::stats::timed(&crate::stats::C.vmm_ns, || check("cuMemCreate", unsafe { f(&mut h, size as usize, &p as *const _ as *const std::ffi::c_void, 0) }))?;
    Ok(h)
}

pub fn release(handle: u64) -> Result<()> {
    let f = real("cuMemRelease", &REAL.cuMemRelease)?;
    // SAFETY: a handle we created, released once.
    crate::stats::timed(&crate::stats::C.vmm_ns, || check("cuMemRelease", unsafe { f(handle) }))
}

/// Maps `handle` over the whole range and lets `devs` read and write it (the owner first, then
/// the peers the program enabled access from).
pub fn map(va: u64, size: u64, handle: u64, devs: &[c_int]) -> Result<()> {
    let map = real("cuMemMap", &REAL.cuMemMap)?;
    // SAFETY: our reserved range and our handle of the same size.
    crate::stats::timed(&crate::stats::C.vmm_ns, || check("cuMemMap", unsafe { map(va, size as usize, 0, handle, 0) }))?;
    let granted = grant(va, size, devs);
    if granted.is_err() {
        let _ = unmap(va, size);
    }
    granted
}

/// Lets `devs` read and write a mapped range (the devices already there keep their access).
pub fn grant(va: u64, size: u64, devs: &[c_int]) -> Result<()> {
    let access = real("cuMemSetAccess", &REAL.cuMemSetAccess)?;
    let descs: Vec<CUmemAccessDesc> =
        devs.iter().map(|&d| CUmemAccessDesc { location_type: CU_MEM_LOCATION_TYPE_DEVICE, location_id: d, flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE }).collect();
    // SAFETY: a mapped range of ours; `descs.len()` descriptors.
    let rc = crate::stats::timed(&crate::stats::C.vmm_ns, || unsafe { access(va, size as usize, descs.as_ptr() as *const std::ffi::c_void, descs.len()) });
    check("cuMemSetAccess", rc)
}

pub fn unmap(va: u64, size: u64) -> Result<()> {
    let f = real("cuMemUnmap", &REAL.cuMemUnmap)?;
    // SAFETY: a range we mapped; the caller made sure no work uses it any more.
    crate::stats::timed(&crate::stats::C.vmm_ns, || check("cuMemUnmap", unsafe { f(va, size as usize) }))
}

/// A resident range: reserved, created on `devs[0]`, mapped for all of `devs`. On failure
/// nothing is left behind.
pub fn allocate(size: u64, devs: &[c_int]) -> Result<(u64, u64)> {
    let va = reserve(size)?;
    let h = match create(size, devs[0]) {
        Ok(h) => h,
        Err(e) => {
            let _ = free_range(va, size);
            return Err(e);
        }
    };
    if let Err(e) = map(va, size, h, devs) {
        let _ = release(h);
        let _ = free_range(va, size);
        return Err(e);
    }
    Ok((va, h))
}
