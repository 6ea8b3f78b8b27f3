//! The LT-Block format and its CPU reference codecs.
//!
//! A buffer is cut into blocks (64 KiB of input each, after an optional lossless prefix such
//! as a file header); each block is encoded with the smallest codec the mode allows that passes
//! its checks, and carries a checksum of the original bytes (and, for lossy blocks, of the
//! decoded bytes). An index lets any block be found and decoded without reading the others.
//! docs/FORMAT.md specifies every byte. No CUDA and no unsafe code: the library, the CLI and
//! the fuzz target all use this crate, and the GPU kernels must be bit-exact with it.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod codec;
pub mod dtype;
mod error;
pub mod format;

pub use codec::Codec;
pub use dtype::DType;
pub use error::CodecError;
pub use format::{decode, decode_block, encode, encode_with_progress, inspect, BlockInfo, BlockReport, EncodeOptions, Mode, Summary};
