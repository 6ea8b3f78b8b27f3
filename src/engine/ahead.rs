//! Packing ahead: a thread of ours keeps `headroom` bytes free under an explicit limit by
//! dropping clean buffers that have a kept copy (only read since their restore: the copy holds
//! their bytes, so dropping one is waits and VMM calls, no codec work), so that a restore on
//! the program's thread finds room at once and does only its own map and decode. A decode
//! step that cycles weights otherwise pays each victim's unmap and release (~30-400 us on the
//! H200) inside the call that needs the room.
//!
//! One drop at a time, in three phases: under the engine lock the victim is chosen and set
//! PACKING (the hook/packer protocol of `Engine::pack`); without it the thread waits for the
//! victim's streams and its restore's event, unmaps and releases; under the lock again the
//! buffer becomes PACKED. While a drop is between the phases, `Engine::lock` waits for it, so
//! no engine operation ever sees a half-dropped buffer; hooks that meet PACKING go there and
//! wait too. The program's thread therefore waits only when it needs the engine during a drop.
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::budget::{Part, BUDGET};
use super::{Engine, KEEP_RESIDENT, OPAQUE_STREAMS};
use crate::gpu::driver::{self, WorkScope};
use crate::gpu::vmm;
use crate::registry::state;

/// Wakes the thread: a restore or an allocation took room.
static WANTED: Condvar = Condvar::new();
static WANTED_LOCK: Mutex<bool> = Mutex::new(false);

/// The free room kept under a limit of `limit` bytes: 1/32 of it, at least 64 MiB (or an
/// eighth of a smaller limit), at most 512 MiB.
pub fn headroom(limit: u64) -> u64 {
    (limit / 32).max((64 << 20).min(limit / 8)).min(512 << 20)
}

/// Set at exit: the thread starts no more drops.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn stop() {
    STOP.store(true, Ordering::SeqCst);
    poke();
}

/// Asks the thread to look (cheap when there is room).
pub fn poke() {
    let mut w = WANTED_LOCK.lock();
    *w = true;
    WANTED.notify_one();
}

pub fn start(engine: &'static Engine) {
    let spawned = std::thread::Builder::new().name("ltshim-ahead".into()).spawn(move || {
        crate::state::mark_internal_thread();
        loop {
            {
                let mut w = WANTED_LOCK.lock();
                if !*w {
                    WANTED.wait_for(&mut w, Duration::from_millis(50));
                }
                *w = false;
            }
            if crate::state::is_passthrough() || engine.is_drained() || STOP.load(Ordering::SeqCst) {
                return;
            }
            let room = headroom(BUDGET.limit());
            while BUDGET.limit().saturating_sub(BUDGET.held()) < room && !STOP.load(Ordering::SeqCst) {
                if !drop_one(engine) {
                    break;
                }
            }
        }
    });
    if let Err(e) = spawned {
        crate::warn_once!("packing ahead is off: no thread ({e})");
    }
}

/// Drops one clean victim with a kept copy; false when there is none (or it failed).
fn drop_one(engine: &Engine) -> bool {
    let t0 = crate::clock::precise_ns();
    // phase 1, under the lock: choose, and claim it as PACKING
    let (addr, buf, reserved, phys, streams, many, ctx) = {
        let mut inner = engine.lock();
        if !engine.may_pack(&inner) {
            return false;
        }
        let victims = engine.victims(&inner);
        let Some(addr) = victims.into_iter().find(|a| inner.entries.get(a).is_some_and(|e| e.copy.is_some() && e.buf.is_clean())) else { return false };
        let entry = inner.entries.get_mut(&addr).expect("a victim has an entry");
        let buf = entry.buf.clone();
        if buf.state.compare_exchange(state::RESIDENT, state::PACKING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return false;
        }
        if buf.users.load(Ordering::SeqCst) != 0 || buf.flags.load(Ordering::SeqCst) & KEEP_RESIDENT != 0 || !buf.is_clean() {
            buf.state.store(state::RESIDENT, Ordering::SeqCst);
            return false;
        }
        let phys = entry.phys.take().expect("a resident entry is mapped");
        let reserved = entry.reserved;
        let (mut streams, many) = buf.used_streams();
        streams.extend(OPAQUE_STREAMS.lock().iter().copied());
        let many = many || streams.iter().any(|&s| crate::hooks::graph::is_retired(s));
        inner.dropping = true;
        (addr, buf, reserved, phys, streams, many, inner.ctx)
    };
    // phase 2, without it: the program's thread runs on meanwhile
    let done = {
        let _scope = WorkScope::enter(ctx);
        let ready = buf.ready_event.load(Ordering::SeqCst);
        driver::wait_for_streams(&streams, many)
            .and_then(|_| if ready != 0 { driver::wait_event(ready) } else { Ok(()) })
            .and_then(|_| vmm::unmap(addr, reserved))
    };
    if done.is_ok() {
        if let Err(e) = vmm::release(phys) {
            tracing::warn!("releasing the memory of the packed buffer at {addr:#x} failed: {e}");
        }
    }
    // phase 3, under the lock again
    let mut inner = engine.inner.lock();
    inner.dropping = false;
    let ok = match done {
        Ok(()) => {
            BUDGET.give(Part::Resident, reserved);
            BUDGET.take_original(buf.size);
            buf.forget_streams();
            buf.state.store(state::PACKED, Ordering::SeqCst);
            crate::stats::packed(true, crate::clock::precise_ns() - t0);
            crate::stats::add(&crate::stats::C.packs_ahead, 1);
            true
        }
        Err(e) => {
            if let Some(entry) = inner.entries.get_mut(&addr) {
                entry.phys = Some(phys);
            }
            buf.state.store(state::RESIDENT, Ordering::SeqCst);
            engine.fail(&mut inner, &format!("dropping a buffer ahead: {e}"));
            false
        }
    };
    super::DROPPED.notify_all();
    ok
}
