//! Everything the library does on the device for itself: driver calls (`driver`: contexts,
//! events, capture mode), VMM (`vmm`: reserve, create, map, unmap, release), and the codec
//! backend (`codec`: the GPU kernels through `ltgpu`, or the CPU reference on the CUDA double).
//!
//! Every driver call here goes to the real function (the hooks' own table or `real::USES`),
//! never back into our hooks, and through the driver API, which leaves no sticky error in the
//! program's runtime. Unsafe code for the library's own device work lives in this folder.
pub mod codec;
pub mod driver;
pub mod vmm;
