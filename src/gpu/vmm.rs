//! VMM: a buffer's address range stays reserved for its whole life while its physical memory
//! comes and goes. A buffer is backed by one physical allocation, or, when it is large, by
//! pieces of the codec's chunk size (64 MiB on the GPU), so that a pack gives each piece back
//! as soon as its bytes are in the packed copy: the limit is then passed by one piece's copy
//! at most, not by the whole buffer's. Not smaller pieces: the H200 probe measured a range built
//! of many 2 MiB chunks at ~30 us a chunk to set access and ~22 us to unmap, one handle far
//! cheaper. The real functions are the hooks' own table's: the program's cuMem* calls are
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

/// The pieces a range of `reserved` bytes is backed by, as (offset, length): `piece` bytes
/// each, the last what is left.
pub fn pieces(reserved: u64, piece: u64) -> Vec<(u64, u64)> {
    let piece = piece.max(1);
    (0..reserved.div_ceil(piece)).map(|i| (i * piece, piece.min(reserved - i * piece))).collect()
}

/// Creates physical memory for each of `parts` of the range at `va` (offsets and lengths) on
/// `devs[0]` and maps it there for all of `devs`; the handles, in order. On failure nothing
/// is left behind.
pub fn back(va: u64, parts: &[(u64, u64)], devs: &[c_int]) -> Result<Vec<u64>> {
    let mut handles = Vec::with_capacity(parts.len());
    for &(off, len) in parts {
        let made = create(len, devs[0]).and_then(|h| match map(va + off, len, h, devs) {
            Ok(()) => Ok(h),
            Err(e) => {
                let _ = release(h);
                Err(e)
            }
        });
        match made {
            Ok(h) => handles.push(h),
            Err(e) => {
                for (&(off, len), &h) in parts.iter().zip(&handles) {
                    let _ = unmap(va + off, len);
                    let _ = release(h);
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}

/// Unmaps the piece of `len` bytes at `va` and releases its memory. Err when the unmap failed
/// (the memory is then still mapped and held); a failed release is said and leaks the handle.
pub fn unback(va: u64, len: u64, handle: u64) -> Result<()> {
    unmap(va, len)?;
    if let Err(e) = release(handle) {
        tracing::warn!("releasing the memory of the piece at {va:#x} failed: {e}");
    }
    Ok(())
}

/// A resident range of `size` bytes in pieces of `piece`: reserved, created on `devs[0]`,
/// mapped for all of `devs`; the address and the pieces' handles. On failure nothing is left
/// behind.
pub fn allocate(size: u64, piece: u64, devs: &[c_int]) -> Result<(u64, Vec<u64>)> {
    let va = reserve(size)?;
    match back(va, &pieces(size, piece), devs) {
        Ok(handles) => Ok((va, handles)),
        Err(e) => {
            let _ = free_range(va, size);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn a_range_is_cut_into_whole_pieces_and_the_rest() {
        assert_eq!(pieces(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(pieces(8, 4), vec![(0, 4), (4, 4)]);
        assert_eq!(pieces(8, 8), vec![(0, 8)], "one piece: the whole range");
    }
}
