//! Counters, and the JSON report written at exit (`LTSHIM_STATS`).
//!
//! Every counter is a relaxed atomic: hooks only add, the report reads once at the end (or
//! when `ltshim_stats_json` asks). The report's field names are a contract with
//! `ltshim stats` and the harness: docs/STATS.md lists them.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::engine::{EncodeCause, Kept};
use crate::hooks::{HOOK_COUNT, HOOK_NAMES};
use crate::registry::{flag, PATHS, REGISTRY};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        pub struct Counters { $(pub $name: AtomicU64,)* }
        pub static C: Counters = Counters { $($name: AtomicU64::new(0),)* };
    };
}

counters! {
    allocations, frees, frees_unknown, bytes_live, bytes_peak, bytes_allocated_total,
    user_maps, user_unmaps,
    launches_runtime, launches_driver, launches_captured,
    graph_instantiations, graph_launches, graph_kernels,
    cublas_calls, cudnn_calls, cudnn_pointers,
    layouts_learned, h2d_bytes_scanned, h2d_pointer_words,
    time_in_library_ns, dlsym_calls, lookups_substituted,
    vmm_buffers, alloc_host_ns, packing_oom,
    packs, packs_reused, packs_clean, packs_ahead, packs_refused, packs_no_room, packs_over_limit, packs_past_margin, pack_host_ns, restores, restore_host_ns,
    restores_ahead, ahead_host_ns,
    restores_over_limit, restores_in_pieces, restores_handed_memory, restores_corrupt, idle_packs, steps, lossy_barred,
    program_lock_wait_ns,
    wait_ns, vmm_ns, codec_ns, context_syncs,
    checks, checks_changed,
    copies_moved_to_host, copies_moved_far, host_move_ns,
}

/// Why the library did less than it could.
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum Fallback {
    /// An internal panic: the library switched to passthrough.
    Panic,
    /// A launch whose parameter layout the driver would not tell: its pointers are unknown.
    LayoutUnknown,
    /// A launch in `extra` form we could not read.
    ExtraUnreadable,
    /// A lookup handed out a pointer that differs from the one we call: left unwrapped.
    LookupMismatch,
    /// The program maps memory itself (expandable segments): those buffers stay resident.
    UserMappedMemory,
    /// cuDNN's variant pack could not be read.
    CudnnPackUnreadable,
    /// A graph's nodes could not be read.
    GraphUnreadable,
    /// A real function we needed was missing.
    SymbolMissing,
    /// A packed copy failed its check before the memory was released: the buffer stayed.
    PackCheckFailed,
    /// The engine's own GPU work failed: everything restored, packing off.
    EngineFailure,
}

pub const FALLBACKS: [(Fallback, &str); 10] = [
    (Fallback::Panic, "panic"),
    (Fallback::LayoutUnknown, "layout_unknown"),
    (Fallback::ExtraUnreadable, "extra_unreadable"),
    (Fallback::LookupMismatch, "lookup_mismatch"),
    (Fallback::UserMappedMemory, "user_mapped_memory"),
    (Fallback::CudnnPackUnreadable, "cudnn_pack_unreadable"),
    (Fallback::GraphUnreadable, "graph_unreadable"),
    (Fallback::SymbolMissing, "symbol_missing"),
    (Fallback::PackCheckFailed, "pack_check_failed"),
    (Fallback::EngineFailure, "engine_failure"),
];

/// Input and packed bytes per codec id, summed over every pack that encoded.
static CODEC_IN: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static CODEC_OUT: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
pub fn codec_name(id: usize) -> &'static str {
    ltblock::Codec::from_id(id as u8).map_or("unknown", |c| c.name())
}

pub fn codec_bytes(id: usize, input: u64, packed: u64) {
    if id < 8 {
        add(&CODEC_IN[id], input);
        add(&CODEC_OUT[id], packed);
    }
}

/// Encodes by cause (`engine::EncodeCause`) and kept copies thrown away by reason
/// (`engine::Kept`): a count and bytes each (the buffers' bytes encoded; the copies' bytes).
static ENCODES: [[AtomicU64; 2]; EncodeCause::ALL.len()] = [const { [const { AtomicU64::new(0) }; 2] }; EncodeCause::ALL.len()];
static DISCARDS: [[AtomicU64; 2]; Kept::ALL.len()] = [const { [const { AtomicU64::new(0) }; 2] }; Kept::ALL.len()];

fn count_with_bytes([n, b]: &[AtomicU64; 2], bytes: u64) {
    add(n, 1);
    add(b, bytes);
}

/// A pack encoded `bytes` of a buffer because of `cause`.
pub fn encoded(cause: EncodeCause, bytes: u64) {
    count_with_bytes(&ENCODES[cause as usize], bytes);
}

/// A kept copy of `bytes` was thrown away as `which` (`discard_kept_copy`).
pub fn copy_discarded(which: Kept, bytes: u64) {
    count_with_bytes(&DISCARDS[which as usize], bytes);
}

/// The coarse timeline: `[t_ms, resident, packed, held]`, a point at most every 20 ms (and
/// at most `TIMELINE_MAX` points: then every other point is dropped and the spacing doubles).
struct Timeline {
    points: Vec<[u64; 4]>,
    spacing_ms: u64,
}
static TIMELINE: parking_lot::Mutex<Timeline> = parking_lot::Mutex::new(Timeline { points: Vec::new(), spacing_ms: 20 });
const TIMELINE_MAX: usize = 4096;
/// Restores counted at each `ltshim_step`, the last `STEPS_MAX`.
static STEP_RESTORES: parking_lot::Mutex<(u64, Vec<u64>)> = parking_lot::Mutex::new((0, Vec::new()));
const STEPS_MAX: usize = 10_000;

fn sample() {
    let t = crate::clock::now_ns() / 1_000_000;
    let mut tl = TIMELINE.lock();
    if tl.points.last().is_some_and(|p| t < p[0] + tl.spacing_ms) {
        return;
    }
    let sum = |f: fn(&crate::engine::budget::Budget) -> u64| crate::engine::all().map(|e| f(e.budget)).sum::<u64>();
    tl.points.push([t, sum(|b| b.resident.load(Relaxed)), sum(|b| b.packed.load(Relaxed)), sum(|b| b.held())]);
    if tl.points.len() >= TIMELINE_MAX {
        let kept: Vec<[u64; 4]> = tl.points.iter().step_by(2).copied().collect();
        tl.points = kept;
        tl.spacing_ms *= 2;
    }
}

pub fn packed(reused: bool, host_ns: u64) {
    add(&C.packs, 1);
    add(&C.pack_host_ns, host_ns);
    if reused {
        add(&C.packs_reused, 1);
    }
    sample();
}

/// Runs `f`, adding its host time to `counter` (the engine's time split: waits, VMM, codec).
pub fn timed<T>(counter: &AtomicU64, f: impl FnOnce() -> T) -> T {
    timed_into(&[counter], f)
}

/// What the codec's host time was spent on (`codec_host_ns_by_work`).
#[derive(Clone, Copy)]
#[repr(usize)]
pub enum CodecWork {
    /// Encoding a copy and verifying it (our stream waited for).
    Encode,
    /// Comparing a written buffer with its kept copy's checksums (our stream waited for).
    Check,
    /// Queueing a restore's decode (no wait).
    Decode,
    /// Giving a copy's memory back.
    Discard,
}

impl CodecWork {
    /// The names the stats report them by.
    pub const ALL: [(CodecWork, &'static str); 4] = [(CodecWork::Encode, "encode"), (CodecWork::Check, "check"), (CodecWork::Decode, "decode"), (CodecWork::Discard, "discard")];
}

/// The codec's host time by `CodecWork`.
static CODEC_WORK_NS: [AtomicU64; CodecWork::ALL.len()] = [const { AtomicU64::new(0) }; CodecWork::ALL.len()];

/// The host time spent so far in VMM calls, codec work and stream waits (all threads): a
/// debug line says how an operation's time split by taking this before it (`split_since`).
pub fn host_split() -> [u64; 7] {
    let w = |i: usize| get(&CODEC_WORK_NS[i]);
    [get(&C.vmm_ns), get(&C.codec_ns), get(&C.wait_ns), w(0), w(1), w(2), w(3)]
}

/// "vmm A us, codec B us (encode, check, decode, discard), wait C us" since `before` (another
/// thread's work in between counts too: for debug lines only).
pub fn split_since(before: [u64; 7]) -> String {
    let now = host_split();
    let us = |i: usize| now[i].saturating_sub(before[i]) / 1000;
    format!("vmm {} us, codec {} us ({} {} {} {}), wait {} us", us(0), us(1), us(3), us(4), us(5), us(6), us(2))
}

/// `timed` into the codec's time and into `work`'s share of it.
pub fn timed_codec<T>(work: CodecWork, f: impl FnOnce() -> T) -> T {
    timed_into(&[&C.codec_ns, &CODEC_WORK_NS[work as usize]], f)
}

fn timed_into<T>(counters: &[&AtomicU64], f: impl FnOnce() -> T) -> T {
    let t0 = crate::clock::precise_ns();
    let r = f();
    let ns = crate::clock::precise_ns().saturating_sub(t0);
    counters.iter().for_each(|c| add(c, ns));
    r
}

pub fn restored(host_ns: u64) {
    add(&C.restores, 1);
    add(&C.restore_host_ns, host_ns);
    sample();
}

/// The program says one of its steps ended (`ltshim_step`).
pub fn step() {
    add(&C.steps, 1);
    let restores = get(&C.restores);
    let mut s = STEP_RESTORES.lock();
    let since = restores - s.0;
    s.0 = restores;
    if s.1.len() < STEPS_MAX {
        s.1.push(since);
    }
    drop(s);
    sample();
}

static FALLBACK_COUNTS: [AtomicU64; FALLBACKS.len()] = [const { AtomicU64::new(0) }; FALLBACKS.len()];
static CALLS: [AtomicU64; HOOK_COUNT] = [const { AtomicU64::new(0) }; HOOK_COUNT];
/// `HookTimer`'s estimate of each hook's own time (ns).
static HOOK_NS: [AtomicU64; HOOK_COUNT] = [const { AtomicU64::new(0) }; HOOK_COUNT];
static FOUND: [AtomicU64; PATHS.len()] = [const { AtomicU64::new(0) }; PATHS.len()];
static NOT_FOUND: [AtomicU64; PATHS.len()] = [const { AtomicU64::new(0) }; PATHS.len()];
static FLAGGED: [AtomicU64; flag::ALL.len()] = [const { AtomicU64::new(0) }; flag::ALL.len()];

#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

#[inline]
pub fn count_call(hook: usize) {
    CALLS[hook].fetch_add(1, Relaxed);
}

pub fn fallback(f: Fallback) {
    FALLBACK_COUNTS[f as usize].fetch_add(1, Relaxed);
}

pub fn pointer(path: crate::registry::Path, found: bool) {
    pointers_found(path, found, 1);
}

/// `n` pointers of one call at once (a launch counts its own and adds them once).
pub fn pointers_found(path: crate::registry::Path, found: bool, n: u64) {
    let t = if found { &FOUND } else { &NOT_FOUND };
    if n > 0 {
        t[path as usize].fetch_add(n, Relaxed);
    }
}

/// A flag was newly set on a buffer.
pub fn flagged(f: u32) {
    if let Some(i) = flag::ALL.iter().position(|(v, _)| *v == f) {
        FLAGGED[i].fetch_add(1, Relaxed);
    }
}

pub fn allocated(size: u64) {
    add(&C.allocations, 1);
    add(&C.bytes_allocated_total, size);
    let live = C.bytes_live.fetch_add(size, Relaxed) + size;
    C.bytes_peak.fetch_max(live, Relaxed);
}

pub fn freed(size: u64) {
    add(&C.frees, 1);
    let _ = C.bytes_live.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(size)));
}

/// One observation in this many is timed; the report scales the sampled time up.
pub const SAMPLE_EVERY: u64 = 16;

thread_local! {
    static OBSERVATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Times one hooked call's own work: the stub's and its body's, less the real function's
/// (and so less every hook reached from inside it, which times itself), for one call in
/// `SAMPLE_EVERY` on each thread (reading a precise clock on every call would itself be a large
/// part of the cost it measures). Kept per hook, so that the report says where the time went.
pub struct HookTimer {
    hook: usize,
    t0: Option<u64>,
    real_ns: std::cell::Cell<u64>,
}

impl HookTimer {
    #[inline]
    pub fn start(hook: usize) -> Self {
        let n = OBSERVATIONS.try_with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        HookTimer { hook, t0: matches!(n, Ok(n) if n % SAMPLE_EVERY == 0).then(crate::clock::precise_ns), real_ns: std::cell::Cell::new(0) }
    }

    /// Runs the real function, its time left out of the call's own.
    #[inline]
    pub fn around_real<R>(&self, real: impl FnOnce() -> R) -> R {
        if self.t0.is_none() {
            return real();
        }
        let a = crate::clock::precise_ns();
        let r = real();
        self.real_ns.set(self.real_ns.get() + crate::clock::precise_ns().saturating_sub(a));
        r
    }
}

impl Drop for HookTimer {
    #[inline]
    fn drop(&mut self) {
        if let Some(t0) = self.t0 {
            let own = crate::clock::precise_ns().saturating_sub(t0).saturating_sub(self.real_ns.get()) * SAMPLE_EVERY;
            add(&C.time_in_library_ns, own);
            add(&HOOK_NS[self.hook], own);
        }
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

/// A tiny JSON object writer: keys are ours (plain ASCII), strings are escaped.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push_str(&json_string(k));
        self.out.push(':');
        self.out
    }
    fn num(&mut self, k: &str, v: u64) {
        let s = v.to_string();
        self.key(k).push_str(&s);
    }
    fn str(&mut self, k: &str, v: &str) {
        let s = json_string(v);
        self.key(k).push_str(&s);
    }
    fn obj(&mut self, k: &str, f: impl FnOnce(&mut Obj<'_>)) {
        let out = self.key(k);
        let mut o = Obj::open(out);
        f(&mut o);
        o.out.push('}');
    }
}

pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// True once the process made any CUDA call through us (the report is skipped otherwise, so
/// that helper processes that inherit LD_PRELOAD do not overwrite it).
pub fn any_cuda_call() -> bool {
    CALLS.iter().any(|c| get(c) > 0)
}

/// The whole report as JSON.
pub fn report_json() -> String {
    let mut s = String::new();
    write_report_fields(&mut Obj::open(&mut s));
    s.push('}');
    s
}

fn write_report_fields(root: &mut Obj<'_>) {
    root.num("format_version", 1);
    root.num("pid", std::process::id() as u64);
    root.str("ltshim_version", env!("CARGO_PKG_VERSION"));
    root.obj("config", |o| {
        if let Some(cfg) = crate::state::config() {
            for (k, v) in cfg.effective() {
                o.str(k, &v);
            }
        }
        o.str("state", if crate::state::is_passthrough() { "passthrough" } else { "active" });
    });
    write_packing(root);
    root.obj("calls", |o| {
        o.num("dlsym", get(&C.dlsym_calls));
        for (i, name) in HOOK_NAMES.iter().enumerate() {
            let n = get(&CALLS[i]);
            if n > 0 {
                o.num(name, n);
            }
        }
    });
    let buffers = REGISTRY.snapshot();
    root.obj("allocations", |o| {
        o.num("count", get(&C.allocations));
        o.num("frees", get(&C.frees));
        o.num("frees_unknown", get(&C.frees_unknown));
        o.num("live_buffers", buffers.len() as u64);
        o.num("live_bytes", get(&C.bytes_live));
        o.num("peak_bytes", get(&C.bytes_peak));
        o.num("total_bytes", get(&C.bytes_allocated_total));
        o.num("user_maps", get(&C.user_maps));
        o.num("user_unmaps", get(&C.user_unmaps));
    });
    let seen = get(&C.launches_runtime) + get(&C.launches_driver) + get(&C.graph_kernels);
    root.obj("launches", |o| {
        o.num("runtime", get(&C.launches_runtime));
        o.num("driver", get(&C.launches_driver));
        o.num("captured", get(&C.launches_captured));
        o.num("graph_instantiations", get(&C.graph_instantiations));
        o.num("graph_launches", get(&C.graph_launches));
        o.num("graph_kernels", get(&C.graph_kernels));
        o.num("cublas_calls", get(&C.cublas_calls));
        o.num("cudnn_calls", get(&C.cudnn_calls));
        o.num("kernels_executed_seen", seen);
        o.num("layouts_learned", get(&C.layouts_learned));
    });
    root.obj("pointers", |o| {
        o.obj("found", |f| PATHS.iter().for_each(|p| f.num(p.name(), get(&FOUND[*p as usize]))));
        o.obj("not_found", |f| PATHS.iter().for_each(|p| f.num(p.name(), get(&NOT_FOUND[*p as usize]))));
        o.num("cudnn_pack_pointers", get(&C.cudnn_pointers));
    });
    root.obj("buffers", |o| {
        o.obj("live_by_origin", |f| {
            for (origin, name) in crate::registry::Origin::ALL {
                f.num(name, buffers.iter().filter(|b| b.origin == origin).count() as u64);
            }
        });
        o.obj("live_by_flag", |f| {
            for (bit, name) in flag::ALL {
                f.num(name, buffers.iter().filter(|b| b.has_flag(bit)).count() as u64);
            }
        });
        o.obj("ever_flagged", |f| {
            for (i, (_, name)) in flag::ALL.iter().enumerate() {
                f.num(name, get(&FLAGGED[i]));
            }
        });
    });
    root.obj("h2d_scan", |o| {
        o.num("bytes", get(&C.h2d_bytes_scanned));
        o.num("pointer_words", get(&C.h2d_pointer_words));
    });
    root.num("time_in_library_ns", get(&C.time_in_library_ns));
    root.obj("time_in_library_ns_by_hook", |o| {
        for (i, name) in HOOK_NAMES.iter().enumerate() {
            let n = get(&HOOK_NS[i]);
            if n > 0 {
                o.num(name, n);
            }
        }
    });
    root.num("time_sampled_one_in", SAMPLE_EVERY);
    root.num("lookups_substituted", get(&C.lookups_substituted));
    root.obj("fallbacks", |o| {
        for (f, name) in FALLBACKS {
            o.num(name, get(&FALLBACK_COUNTS[f as usize]));
        }
    });
}

/// A budget's fields as the stats name them.
const BUDGET_FIELDS: [(&str, fn(&crate::engine::budget::Budget) -> u64); 11] = [
    ("limit_bytes", |b| b.limit()),
    ("held_bytes", |b| b.held()),
    ("held_peak_bytes", |b| b.held_peak.load(Relaxed)),
    ("over_limit_peak_bytes", |b| b.over_peak.load(Relaxed)),
    ("resident_bytes", |b| b.resident.load(Relaxed)),
    ("packed_bytes", |b| b.packed.load(Relaxed)),
    ("packed_original_bytes", |b| b.packed_original.load(Relaxed)),
    ("passthrough_bytes", |b| b.passthrough.load(Relaxed)),
    ("scratch_bytes", |b| b.scratch.load(Relaxed)),
    ("host_copies_bytes", |b| b.in_host.load(Relaxed)),
    ("host_copies_peak_bytes", |b| b.in_host_peak.load(Relaxed)),
];

fn write_packing(root: &mut Obj<'_>) {
    let engines: Vec<&crate::engine::Engine> = crate::engine::all().collect();
    let buffers = REGISTRY.snapshot();
    root.obj("packing", |o| {
        o.key("enabled").push_str(if !engines.is_empty() && engines.iter().all(|e| !e.is_drained()) { "true" } else { "false" });
        o.str("mode", crate::state::config().map_or("", |c| c.mode.as_str()));
        // (false: no LTSHIM_DEVICE_LIMIT, the limit is the card's room: engine::fit_card)
        o.key("limit_set").push_str(if crate::state::config().is_some_and(|c| c.device_limit != crate::config::Limit::Card) { "true" } else { "false" });
        // over every device packed (one: its own figures; a peak is each device's own, so
        // their sum may be more than the process held at any one moment), then each
        for (name, field) in BUDGET_FIELDS {
            o.num(name, engines.iter().map(|e| field(e.budget)).sum());
        }
        o.obj("devices", |d| {
            for e in &engines {
                d.obj(&e.device().to_string(), |one| {
                    for (name, field) in BUDGET_FIELDS {
                        one.num(name, field(e.budget));
                    }
                });
            }
        });
        o.num("vmm_buffers", get(&C.vmm_buffers));
        o.num("packs", get(&C.packs));
        o.num("packs_reused_copy", get(&C.packs_reused));
        o.num("packs_clean_copy", get(&C.packs_clean));
        o.num("packs_ahead", get(&C.packs_ahead));
        o.num("packs_refused", get(&C.packs_refused));
        o.num("packs_no_room", get(&C.packs_no_room));
        o.num("packs_over_limit", get(&C.packs_over_limit));
        o.num("packs_past_margin", get(&C.packs_past_margin));
        o.num("lossy_barred", get(&C.lossy_barred));
        o.num("idle_packs", get(&C.idle_packs));
        o.num("restores", get(&C.restores));
        o.num("restores_ahead", get(&C.restores_ahead));
        o.num("restores_over_limit", get(&C.restores_over_limit));
        o.num("restores_in_pieces", get(&C.restores_in_pieces));
        o.num("restores_handed_memory", get(&C.restores_handed_memory));
        o.num("restores_corrupt", get(&C.restores_corrupt));
        o.num("copies_moved_to_host", get(&C.copies_moved_to_host));
        o.num("copies_moved_far", get(&C.copies_moved_far));
        let (pinned, pinned_peak) = ltgpu::packer::pinned_host_bytes();
        o.num("host_pinned_bytes", pinned);
        o.num("host_pinned_peak_bytes", pinned_peak);
        o.num("host_move_host_ns", get(&C.host_move_ns));
        o.num("out_of_memory_returned", get(&C.packing_oom));
        o.num("pack_host_ns", get(&C.pack_host_ns));
        o.num("restore_host_ns", get(&C.restore_host_ns));
        o.num("alloc_host_ns", get(&C.alloc_host_ns));
        o.num("wait_host_ns", get(&C.wait_ns));
        o.num("program_lock_wait_host_ns", get(&C.program_lock_wait_ns));
        o.num("vmm_host_ns", get(&C.vmm_ns));
        o.num("codec_host_ns", get(&C.codec_ns));
        o.obj("codec_host_ns_by_work", |f| CodecWork::ALL.iter().for_each(|&(w, name)| f.num(name, get(&CODEC_WORK_NS[w as usize]))));
        o.num("checks", get(&C.checks));
        o.num("checks_found_changed", get(&C.checks_changed));
        o.num("context_syncs", get(&C.context_syncs));
        o.num("ahead_host_ns", get(&C.ahead_host_ns));
        o.obj("bytes_in_by_codec", |f| (0..8).filter(|&i| get(&CODEC_IN[i]) > 0).for_each(|i| f.num(codec_name(i), get(&CODEC_IN[i]))));
        o.obj("bytes_out_by_codec", |f| (0..8).filter(|&i| get(&CODEC_IN[i]) > 0).for_each(|i| f.num(codec_name(i), get(&CODEC_OUT[i]))));
        o.obj("encodes_by_cause", |f| EncodeCause::ALL.iter().for_each(|&(c, name)| f.num(name, get(&ENCODES[c as usize][0]))));
        o.obj("encoded_bytes_by_cause", |f| EncodeCause::ALL.iter().for_each(|&(c, name)| f.num(name, get(&ENCODES[c as usize][1]))));
        o.obj("copies_discarded", |f| Kept::ALL.iter().for_each(|&(k, name)| f.num(name, get(&DISCARDS[k as usize][0]))));
        o.obj("copies_discarded_bytes", |f| Kept::ALL.iter().for_each(|&(k, name)| f.num(name, get(&DISCARDS[k as usize][1]))));
        o.num("steps", get(&C.steps));
        let steps = STEP_RESTORES.lock().1.clone();
        o.key("restores_per_step").push_str(&format!("{steps:?}"));
        o.obj("kept_resident", |f| {
            for (bit, name) in flag::ALL {
                f.num(name, buffers.iter().filter(|b| b.is_vmm() && b.has_flag(bit)).count() as u64);
            }
            f.num("not_vmm", buffers.iter().filter(|b| !b.is_vmm()).count() as u64);
        });
        let points: Vec<String> = TIMELINE.lock().points.iter().map(|p| format!("[{},{},{},{}]", p[0], p[1], p[2], p[3])).collect();
        o.key("timeline").push_str(&format!("[{}]", points.join(",")));
    });
}

/// Writes the report to the configured path (`%p` → pid). Called at exit.
pub fn write_report() {
    let Some(path) = crate::state::config().and_then(|c| c.stats.clone()) else { return };
    if !any_cuda_call() {
        return;
    }
    let path = path.replace("%p", &std::process::id().to_string());
    let json = report_json();
    if let Err(e) = std::fs::write(&path, json) {
        eprintln!("ltshim: could not write the stats report to {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn a_hooks_own_time_leaves_out_its_real_call_and_is_kept_per_hook() {
        // on a fresh thread the 16th call is the sampled one: ~3 ms of its own around a real
        // call of 40 ms, scaled by 16
        let hook = HOOK_COUNT - 1;
        let before = get(&HOOK_NS[hook]);
        std::thread::spawn(move || {
            for _ in 0..SAMPLE_EVERY {
                let t = HookTimer::start(hook);
                let spin = std::time::Instant::now();
                while spin.elapsed() < std::time::Duration::from_millis(3) {}
                t.around_real(|| std::thread::sleep(std::time::Duration::from_millis(40)));
            }
        })
        .join()
        .unwrap();
        let own = get(&HOOK_NS[hook]) - before;
        assert!(own >= SAMPLE_EVERY * 3_000_000, "{own} ns: less than the sampled call's own 3 ms, scaled");
        assert!(own < SAMPLE_EVERY * 25_000_000, "{own} ns: the real call's 40 ms were counted as the library's");
        assert!(report_json().contains(&format!("\"{}\":", HOOK_NAMES[hook])), "the per-hook time is in the report");
    }

    #[test]
    fn report_is_one_object_with_the_documented_sections() {
        let r = report_json();
        assert!(r.starts_with('{') && r.ends_with('}'));
        for key in ["\"calls\"", "\"allocations\"", "\"launches\"", "\"pointers\"", "\"buffers\"", "\"fallbacks\"", "\"time_in_library_ns\""] {
            assert!(r.contains(key), "missing {key} in {r}");
        }
        let v: serde_json::Value = serde_json::from_str(&r).expect("valid JSON");
        assert!(v["launches"]["kernels_executed_seen"].is_u64());
        // every cause and reason is written, zero or not (a reader need not guess)
        for (_, name) in EncodeCause::ALL {
            assert!(v["packing"]["encodes_by_cause"][name].is_u64() && v["packing"]["encoded_bytes_by_cause"][name].is_u64(), "{name}: {}", v["packing"]);
        }
        for (_, name) in Kept::ALL {
            assert!(v["packing"]["copies_discarded"][name].is_u64() && v["packing"]["copies_discarded_bytes"][name].is_u64(), "{name}: {}", v["packing"]);
        }
    }
}
