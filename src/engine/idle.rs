//! Idle packing (`LTSHIM_IDLE_MS`): a thread of ours that, once the program has made no call
//! naming buffers for that long, packs the buffers unused for `LTSHIM_COLD_MS`: the sleeping
//! model of two in one process, a notebook left idle. Off by default.
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Starts the thread (once a process: it looks at every device's engine).
pub fn start(idle_ms: u64, cold_ms: u64) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| spawn(idle_ms, cold_ms));
}

fn spawn(idle_ms: u64, cold_ms: u64) {
    let spawned = std::thread::Builder::new().name("ltshim-idle".into()).spawn(move || {
        crate::state::mark_internal_thread();
        let (idle_ns, cold_ns) = (idle_ms * 1_000_000, cold_ms * 1_000_000);
        loop {
            std::thread::sleep(Duration::from_millis((idle_ms / 4).clamp(5, 1000)));
            if crate::state::is_passthrough() {
                return;
            }
            let last = super::LAST_CALL_NS.load(Ordering::Relaxed);
            if crate::clock::now_ns().saturating_sub(last) < idle_ns {
                continue;
            }
            // while the program stays idle, each look packs what has gone cold since the last
            // (packed and refused buffers are no longer candidates, so a look costs a scan)
            for e in super::all() {
                e.pack_idle(cold_ns);
            }
        }
    });
    if let Err(e) = spawned {
        crate::warn_once!("idle packing is off: no thread ({e})");
    }
}
