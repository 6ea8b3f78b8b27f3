//! Start-up, done by the first hook that runs: read the knobs, start logging, register the
//! exit report and the fork handler, then become Active, or Passthrough for good.
use crate::config::Config;
use crate::state;

pub fn start() -> Config {
    let config = Config::from_env();
    for line in &config.errors {
        eprintln!("{line}");
    }
    crate::log::init(&config.log);
    // SAFETY: registering plain extern "C" handlers with no arguments.
    unsafe {
        libc::pthread_atfork(None, None, Some(in_fork_child));
        libc::atexit(at_exit);
    }
    if config.observes() {
        if config.mode.packs() {
            crate::residency::set_packing();
        }
        tracing::debug!("started in {} mode", config.mode.as_str());
        state::set_active();
    } else {
        state::enter_passthrough();
    }
    config
}

extern "C" fn in_fork_child() {
    // The child shares no CUDA context with us: it passes everything through, and writes no
    // report (the parent's report is the one that counts).
    state::enter_passthrough();
    FORKED.store(true, std::sync::atomic::Ordering::Relaxed);
}

static FORKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True in a child of fork (whose copies of our threads do not exist).
pub fn forked() -> bool {
    FORKED.load(std::sync::atomic::Ordering::Relaxed)
}

extern "C" fn at_exit() {
    if forked() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        crate::engine::wait_for_kernels_at_exit();
        crate::engine::stop_packing_ahead();
        crate::stats::write_report();
    });
}

/// A panic inside library code: say so once, count it, pass everything through from now on.
pub fn internal_error(hook: &str) {
    crate::stats::fallback(crate::stats::Fallback::Panic);
    crate::warn_once!("internal error in the {hook} hook: passing everything through from now on (please report this)");
    // every packed buffer comes back first: in passthrough no hook would restore it
    for e in crate::engine::all() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.drain()));
    }
    state::enter_passthrough();
}
