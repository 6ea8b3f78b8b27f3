//! libltshim: a transparent GPU-memory compressor for CUDA programs, loaded with LD_PRELOAD.
//!
//! This crate is the preload library. The flow of one call, as the modules read:
//! `hooks` (the exported C surface, generated from `hooks/list.rs`) → `state` (started? which
//! thread? re-entrant?) → the family body in `hooks/*` → `registry` (which buffer is this?),
//! `layout` + `scan` (which buffers does this launch touch?) → `stats` (what we saw) → the
//! real function, resolved by `real`. `config` holds the knobs, `log` the one logging facade,
//! `control` the `ltshim_*` API. See docs/ARCHITECTURE.md and docs/SAFETY.md.
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
mod config;
mod control;
mod cuda_abi;
mod engine;
mod gpu;
mod hooks;
mod init;
mod layout;
mod log;
mod policy;
mod real;
mod registry;
mod residency;
mod scan;
mod state;
mod stats;
