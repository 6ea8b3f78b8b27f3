//! Finding device pointers in what the program hands to CUDA: kernel parameters (through
//! their layout), `extra` argument buffers, and host memory copied to the device.
//!
//! Every 8-byte word of a parameter of at least 8 bytes is a candidate; a candidate that falls
//! inside a live buffer is a reference to it. Words are read unaligned, only within the sizes
//! the driver or the caller declared.
use std::ffi::c_void;

use crate::cuda_abi::{CU_LAUNCH_PARAM_BUFFER_POINTER, CU_LAUNCH_PARAM_BUFFER_SIZE, CU_LAUNCH_PARAM_END, EXTRA_MAX_ENTRIES};
use crate::layout::ParamLayout;

/// Calls `visit` with every candidate word of the parameters.
///
/// # Safety
/// `params` is the `kernelParams` array of a launch of a kernel with this layout: one valid
/// pointer per parameter, each to at least the parameter's size in bytes.
pub unsafe fn kernel_params(layout: &ParamLayout, params: *const *mut c_void, mut visit: impl FnMut(u64)) {
    if params.is_null() {
        return;
    }
    for (i, &(_, size)) in layout.params.iter().enumerate() {
        if size < 8 {
            continue;
        }
        // SAFETY: the caller guarantees one entry per parameter.
        let value = unsafe { *params.add(i) } as *const u8;
        if value.is_null() {
            continue;
        }
        for k in 0..(size as usize / 8) {
            // SAFETY: within the parameter's declared size.
            visit(unsafe { std::ptr::read_unaligned(value.add(k * 8) as *const u64) });
        }
    }
}

/// Calls `visit` with every candidate word of an `extra` argument buffer; false when the
/// array holds something we do not understand (then nothing was visited).
///
/// # Safety
/// `extra` is a launch's `extra` array: key/value pairs ended by `CU_LAUNCH_PARAM_END`.
pub unsafe fn extra(extra: *const *mut c_void, layout: Option<&ParamLayout>, mut visit: impl FnMut(u64)) -> bool {
    let (mut buf, mut size): (*const u8, Option<usize>) = (std::ptr::null(), None);
    let mut i = 0;
    loop {
        if i >= EXTRA_MAX_ENTRIES {
            return false;
        }
        // SAFETY: entries are read one key (and its value) at a time until END.
        let key = unsafe { *extra.add(i) } as usize;
        match key {
            CU_LAUNCH_PARAM_END => break,
            // SAFETY: a key is always followed by its value.
            CU_LAUNCH_PARAM_BUFFER_POINTER => buf = unsafe { *extra.add(i + 1) } as *const u8,
            // SAFETY: the value of BUFFER_SIZE points to a size_t.
            CU_LAUNCH_PARAM_BUFFER_SIZE => size = Some(unsafe { *(*extra.add(i + 1) as *const usize) }),
            _ => return false,
        }
        i += 2;
    }
    let Some(size) = size else { return false };
    if buf.is_null() {
        return size == 0;
    }
    match layout {
        Some(l) => {
            for &(off, psize) in l.params.iter() {
                let (off, psize) = (off as usize, psize as usize);
                if psize < 8 || off + psize > size {
                    continue;
                }
                for k in 0..psize / 8 {
                    // SAFETY: inside the buffer of `size` bytes the caller declared.
                    visit(unsafe { std::ptr::read_unaligned(buf.add(off + k * 8) as *const u64) });
                }
            }
        }
        // SAFETY: the whole declared buffer, 8-byte words.
        None => unsafe { words(buf, size, visit) },
    }
    true
}

/// Calls `visit` with every 8-byte word of `len` bytes at `ptr` (a trailing part shorter than
/// a word is skipped).
///
/// # Safety
/// `ptr..ptr+len` is readable host memory.
pub unsafe fn words(ptr: *const u8, len: usize, mut visit: impl FnMut(u64)) {
    let n = len / 8;
    for k in 0..n {
        // SAFETY: k*8+8 <= len.
        visit(unsafe { std::ptr::read_unaligned(ptr.add(k * 8) as *const u64) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(p: &[(u32, u32)]) -> ParamLayout {
        ParamLayout { params: p.to_vec().into_boxed_slice() }
    }

    #[test]
    fn kernel_params_visits_each_word_of_large_params_only() {
        let a: u64 = 0xAAAA;
        let small: u32 = 7;
        let s: [u64; 3] = [1, 2, 3];
        let mut params: Vec<*mut c_void> = vec![&a as *const u64 as *mut c_void, &small as *const u32 as *mut c_void, s.as_ptr() as *mut c_void];
        let mut seen = vec![];
        // SAFETY: each entry points to a value of the layout's size.
        unsafe { kernel_params(&layout(&[(0, 8), (8, 4), (16, 24)]), params.as_mut_ptr(), |w| seen.push(w)) };
        assert_eq!(seen, vec![0xAAAA, 1, 2, 3]);
    }

    #[test]
    fn extra_buffer_is_read_within_its_declared_size() {
        let buf: [u64; 3] = [0x10, 0x20, 0x30];
        let size: usize = 16;
        let arr: [*mut c_void; 5] = [1 as _, buf.as_ptr() as _, 2 as _, &size as *const usize as _, 0 as _];
        let mut seen = vec![];
        // SAFETY: a well-formed extra array.
        assert!(unsafe { extra(arr.as_ptr(), None, |w| seen.push(w)) });
        assert_eq!(seen, vec![0x10, 0x20]);
    }

    #[test]
    fn extra_with_an_unknown_key_is_refused() {
        let arr: [*mut c_void; 3] = [7 as _, std::ptr::null_mut(), 0 as _];
        // SAFETY: a short extra array.
        assert!(!unsafe { extra(arr.as_ptr(), None, |_| panic!("must not visit")) });
    }
}
