//! Working ahead of the program, on a thread of ours, under a set limit or, without one, once
//! memory first ran short on the card: so that the program's own calls find room free and the
//! buffers they need resident, and do no VMM or codec work themselves.
//!
//! - **Drops ahead** (`LTSHIM_PACK_AHEAD`): `headroom` bytes are kept free by throwing away the
//!   copies kept beside survivors (buffers the policy keeps resident: `Entry::survivor`), then
//!   by dropping clean buffers that have a kept copy (only read since their restore: the copy
//!   holds their bytes, so dropping one is waits and VMM calls, no codec work). Without it a
//!   decode step that cycles weights pays each victim's unmap and release (~30-400 us on the
//!   H200) inside the call that needs the room.
//! - **Restores ahead** (`LTSHIM_RESTORE_AHEAD`): the packed buffer whose next use the policy's
//!   reuse periods predict soonest is restored into free room (never over the limit; it leaves
//!   an eighth of the headroom to the program: `PROGRAM_SHARE`), up to a window of buffers
//!   restored and not yet used.
//!   Its decode is queued on our stream, so the call that names it only waits on the GPU for
//!   the decode's event. Room for it comes only from dropping a clean buffer predicted to be
//!   needed later than it (Belady's rule); a victim of the same size hands its physical memory
//!   straight over (no release, no create). The first use of a buffer restored ahead wakes
//!   the thread for the next one.
//!
//! One drop at a time, in three phases: under the engine lock the victim is chosen and set
//! PACKING (the hook/packer protocol of `Engine::pack`); without it the thread waits for the
//! victim's streams and its restore's event and unmaps (and releases); under the lock again the
//! buffer becomes PACKED (and a restore that takes its memory runs). While a drop is between the
//! phases, `Engine::lock` waits for it, so no engine operation ever sees a half-dropped buffer;
//! hooks that meet PACKING go there and wait too. A restore ahead runs under the lock, like
//! one of the program's: a call that meets the buffer RESTORING waits for the lock, then finds
//! it resident. The program's thread therefore waits only when it needs the engine meanwhile.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::budget::Part;
use super::{claim, now_packed, streams_to_wait_for, Engine, Inner, Room, SAME_SIZE_LOOKAHEAD};
use crate::gpu::driver::{self, WorkScope};
use crate::gpu::vmm;
use crate::registry::{state, Buffer};

/// Wakes a device's thread: a restore or an allocation took room, or a buffer restored ahead
/// was used.
static WANTED: [Condvar; super::MAX_DEVICES] = [const { Condvar::new() }; super::MAX_DEVICES];
static WANTED_LOCKS: [Mutex<bool>; super::MAX_DEVICES] = [const { Mutex::new(false) }; super::MAX_DEVICES];

/// The free room kept under a limit of `limit` bytes: 1/32 of it, at least 64 MiB (or an
/// eighth of a smaller limit), at most 512 MiB.
pub fn headroom(limit: u64) -> u64 {
    (limit / 32).max((64 << 20).min(limit / 8)).min(512 << 20)
}

/// The part of the headroom a restore ahead leaves free for the program (1 / this). With half
/// of it (the first choice), a 3B model's 48 MiB MLP weights fitted ahead only one at a time
/// under a 70% limit (85 MB of a 170 MB headroom), and the program made a quarter of the
/// restores itself, ~130 us each; with an eighth the thread made 85-86% of the ~7150 restores
/// against 74-77%, and the decode ran 1.12x faster, bit-exact, its held peak the same
/// (docs/PERF.md, P52). The program's own allocations that then find too little room drop a
/// clean buffer (no codec work), cheaper than a restore.
const PROGRAM_SHARE: u64 = 8;

/// The most bytes restored ahead and not yet used: twice the headroom (on the H200 a 3B
/// model's decode step reads a layer's weights, ~200 MiB, in about 2 ms of program time).
fn window(limit: u64) -> u64 {
    2 * headroom(limit)
}

/// Set at exit: the thread starts no more drops or restores.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn stop() {
    STOP.store(true, Ordering::SeqCst);
    WANTED.iter().for_each(|c| {
        c.notify_all();
    });
}

/// Asks the thread of device `dev` to look (cheap when there is nothing to do).
pub fn poke(dev: i32) {
    if let Some(w) = WANTED_LOCKS.get(dev as usize) {
        *w.lock() = true;
        WANTED[dev as usize].notify_all();
    }
}

/// The room left for `engine`'s buffers (its limit less its reserve for packed copies).
fn free(engine: &Engine) -> u64 {
    engine.budget.room(Part::Resident)
}

/// Starts the thread; `drops` and `restores` say which of its two jobs it does.
pub fn start(engine: &'static Engine, drops: bool, restores: bool) {
    let spawned = std::thread::Builder::new().name("ltshim-ahead".into()).spawn(move || {
        crate::state::mark_internal_thread();
        let _ = ON_ITS_THREAD.try_with(|t| t.set(true));
        loop {
            {
                let mut w = WANTED_LOCKS[engine.device() as usize].lock();
                if !*w {
                    WANTED[engine.device() as usize].wait_for(&mut w, Duration::from_millis(50));
                }
                *w = false;
            }
            if crate::state::is_passthrough() || engine.is_drained() || STOP.load(Ordering::SeqCst) {
                return;
            }
            let t0 = crate::clock::precise_ns();
            loop {
                let mut progressed = restores && restore_one(engine);
                while drops && free(engine) < headroom(engine.budget.limit()) && !STOP.load(Ordering::SeqCst) {
                    if !discard_survivor_copy(engine) && !drop_one(engine, None) {
                        break;
                    }
                    progressed = true;
                }
                if !progressed || STOP.load(Ordering::SeqCst) {
                    break;
                }
            }
            crate::stats::add(&crate::stats::C.ahead_host_ns, crate::clock::precise_ns() - t0);
        }
    });
    if let Err(e) = spawned {
        crate::warn_once!("packing and restoring ahead are off: no thread ({e})");
    }
}

thread_local! {
    static ON_ITS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on the packing-ahead thread.
pub fn on_its_thread() -> bool {
    ON_ITS_THREAD.try_with(|t| t.get()).unwrap_or(false)
}

/// The use (sequence number) the policy predicts next for a buffer last used at `last` with
/// reuse period `period` and last gaps `gaps` (`policy::next_use`); None when it is cold
/// (never reused, or idle past twice its period).
fn predicted_next(last: u64, period: u64, gaps: crate::policy::Gaps, now: u64) -> Option<u64> {
    (period != 0 && now.saturating_sub(last) <= 2 * period).then(|| crate::policy::next_use(last, period, gaps, now))
}

/// `predicted_next` of `b` now.
fn next_use(b: &Buffer, now: u64) -> Option<u64> {
    predicted_next(b.last_seq.load(Ordering::Relaxed), b.period.load(Ordering::Relaxed), b.gaps(), now)
}

/// The restore a drop makes room for: its buffer, its predicted use, its size.
#[derive(Clone, Copy)]
struct Target {
    addr: u64,
    next: u64,
    reserved: u64,
}

/// Restores the packed buffer predicted to be needed soonest, dropping one needed later for
/// room if there is too little; false when there is nothing to do (or no room to be had).
fn restore_one(engine: &Engine) -> bool {
    let target = {
        let mut inner = engine.lock();
        if !engine.may_pack(&inner) {
            return false;
        }
        match next_to_restore(&mut inner) {
            Some(t) => t,
            None => return false,
        }
    };
    if free(engine) < target.reserved + headroom(engine.budget.limit()) / PROGRAM_SHARE {
        return discard_survivor_copy(engine) || drop_one(engine, Some(target));
    }
    let mut inner = engine.lock();
    restore_ahead(engine, &mut inner, target, false)
}

/// The packed buffer whose predicted next use is soonest, if the window has room for it.
fn next_to_restore(inner: &mut Inner) -> Option<Target> {
    let now = crate::residency::seq_now();
    let entries = &inner.entries;
    // out of the window: buffers used since (or freed, or packed again), and mispredictions
    // (their predicted use passed a period ago): those are ordinary victims again
    inner.ahead_unused.retain(|&(a, seq)| {
        entries.get(&a).is_some_and(|e| {
            let b = &e.buf;
            let keep = b.state() == state::RESIDENT && b.last_seq.load(Ordering::Relaxed) == seq && now <= seq + 2 * b.period.load(Ordering::Relaxed);
            if !keep {
                b.restored_ahead.store(false, Ordering::Relaxed);
            }
            keep
        })
    });
    let used: u64 = inner.ahead_unused.iter().filter_map(|(a, _)| entries.get(a)).map(|e| e.reserved).sum();
    let (next, e) = entries
        .values()
        .filter(|e| e.copy.is_some() && e.buf.state() == state::PACKED)
        .filter_map(|e| next_use(&e.buf, now).map(|n| (n, e)))
        .min_by_key(|&(n, _)| n)?;
    (used + e.reserved <= window(inner.budget.limit())).then_some(Target { addr: e.buf.start, next, reserved: e.reserved })
}

/// Restores `t` ahead of its use, if it is still packed (and still the buffer chosen: an
/// address freed meanwhile may hold another) and, unless `swap` (the memory of a victim of its
/// size was just handed over), the program keeps its share of the headroom beside it.
fn restore_ahead(engine: &Engine, inner: &mut Inner, t: Target, swap: bool) -> bool {
    let addr = t.addr;
    let Some(e) = inner.entries.get(&addr) else { return false };
    let buf = e.buf.clone();
    if buf.state() != state::PACKED || e.reserved != t.reserved || (!swap && free(engine) < e.reserved + headroom(engine.budget.limit()) / PROGRAM_SHARE) {
        return false;
    }
    let seq = buf.last_seq.load(Ordering::Relaxed);
    if engine.restore(inner, &buf, Room::Free).is_err() {
        return false;
    }
    buf.restored_ahead.store(true, Ordering::Relaxed);
    inner.ahead_unused.push((addr, seq));
    crate::stats::add(&crate::stats::C.restores_ahead, 1);
    true
}

/// Throws away the largest copy kept beside a survivor (`Kept::OfSurvivor`): room that costs
/// no buffer, before any is dropped, as in `make_room`. Without it the thread, which makes most
/// of the room under a limit (the 3B decode in lossy mode on the H200: 4022 of 4506 packs were
/// its drops), kept every survivor's copy and the program's own passes found little to take.
fn discard_survivor_copy(engine: &Engine) -> bool {
    let mut inner = engine.lock();
    engine.may_pack(&inner) && engine.discard_kept_copy(&mut inner, super::Kept::OfSurvivor, u64::MAX)
}

/// Drops one clean victim with a kept copy; with `target`, only one predicted to be needed
/// after it, and the target is restored at once (into the victim's memory when they are the
/// same size). False when there is no such victim (or it failed).
fn drop_one(engine: &Engine, target: Option<Target>) -> bool {
    let t0 = crate::clock::precise_ns();
    // phase 1, under the lock: choose, and claim it as PACKING
    let (addr, buf, reserved, piece, phys, hand_over, streams, many, ctx) = {
        let mut inner = engine.lock();
        if !engine.may_pack(&inner) {
            return false;
        }
        let now = crate::residency::seq_now();
        let droppable: Vec<u64> = engine
            .victims(&inner)
            .into_iter()
            .filter(|a| {
                inner.entries.get(a).is_some_and(|e| {
                    let b = &e.buf;
                    let later = || {
                        target.is_none_or(|t| next_use(b, now).is_none_or(|n| n > t.next))
                    };
                    e.copy_whole() && b.is_clean() && !e.copy_goes_lossy(&inner.opts) && !inner.ahead_unused.iter().any(|&(u, _)| u == *a) && later()
                })
            })
            .collect();
        // among the first few, one whose memory the target can take as it is
        let near = droppable.len().min(SAME_SIZE_LOOKAHEAD);
        let same = target.and_then(|t| droppable[..near].iter().find(|a| inner.entries.get(a).is_some_and(|e| one_piece_of(e, t.reserved))));
        let Some(&addr) = same.or(droppable.first()) else { return false };
        let entry = inner.entries.get_mut(&addr).expect("a victim has an entry");
        let buf = entry.buf.clone();
        if !claim(&buf) {
            return false;
        }
        if !buf.is_clean() {
            buf.state.store(state::RESIDENT, Ordering::SeqCst);
            return false;
        }
        // (its handles stay in the entry until they are gone: a failure leaves it whole)
        let phys = entry.phys.clone();
        let (reserved, piece) = (entry.reserved, entry.piece);
        let hand_over = target.is_some_and(|t| one_piece_of(entry, t.reserved));
        let (streams, many) = streams_to_wait_for(&buf);
        inner.dropping = true;
        (addr, buf, reserved, piece, phys, hand_over, streams, many, inner.ctx)
    };
    let parts = vmm::pieces(reserved, piece);
    // phase 2, without it: the program's thread runs on meanwhile
    // (the pieces gone before a failure, if one comes)
    let mut gone = 0usize;
    let done = {
        let _scope = WorkScope::enter(ctx);
        let ready = buf.ready_event.load(Ordering::SeqCst);
        driver::wait_for_streams(&streams, many).and_then(|_| if ready != 0 { driver::wait_event(ready) } else { Ok(()) }).and_then(|_| {
            for (&(off, len), &h) in parts.iter().zip(&phys) {
                if hand_over { vmm::unmap(addr + off, len) } else { vmm::unback(addr + off, len, h) }?;
                gone += 1;
            }
            Ok(())
        })
    };
    // phase 3, under the lock again
    let mut inner = engine.inner.lock();
    inner.dropping = false;
    if let Some(entry) = inner.entries.get_mut(&addr) {
        entry.phys.drain(..gone);
    }
    // the pieces gone, gone from the budget too (a failure's `put_back` takes them again)
    engine.budget.give(Part::Resident, parts[..gone].iter().map(|&(_, len)| len).sum());
    let ok = match done {
        Ok(()) => {
            tracing::debug!("drop {addr:#x} ({} B) ahead at use {}, {} us{}", buf.size, crate::residency::seq_now(), crate::clock::precise_ns().saturating_sub(t0) / 1000, if hand_over { ", memory handed over" } else { "" });
            now_packed(engine.budget, &buf, true, t0);
            crate::stats::add(&crate::stats::C.packs_ahead, 1);
            crate::stats::add(&crate::stats::C.packs_clean, 1);
            if let Some(t) = target {
                if hand_over {
                    inner.handoff = Some(phys[0]);
                }
                restore_ahead(engine, &mut inner, t, hand_over);
                if let Some(h) = inner.handoff.take() {
                    // the target went meanwhile (freed, or restored by the program)
                    let _scope = WorkScope::enter(inner.ctx);
                    let _ = vmm::release(h);
                }
            }
            true
        }
        Err(e) => {
            {
                let _scope = WorkScope::enter(inner.ctx);
                let inner = &mut *inner;
                // the pieces gone come back from its copy (it is clean: the copy holds it),
                // before any call may reach it again
                let back = gone == 0
                    || match (inner.entries.get_mut(&addr), inner.backend.as_mut()) {
                        (Some(entry), Some(backend)) => super::put_back(engine.budget, backend, entry, &parts[..gone], &inner.access),
                        _ => false,
                    };
                if back {
                    // mapped again: a peer enabled while it was being dropped gets in as well
                    let _ = vmm::grant(addr, reserved, &inner.access);
                    buf.state.store(state::RESIDENT, Ordering::SeqCst);
                } else {
                    buf.state.store(state::RESTORING, Ordering::SeqCst); // lost: never RESIDENT again
                }
            }
            engine.fail(&mut inner, &format!("dropping a buffer ahead: {e}"));
            false
        }
    };
    super::DROPPED[engine.device() as usize].notify_all();
    ok
}

/// `e` is backed by one piece of `reserved` bytes: its memory can be handed over as it is to
/// a restore of that size (a buffer backed in pieces gives each back on its own).
fn one_piece_of(e: &super::Entry, reserved: u64) -> bool {
    e.reserved == reserved && e.piece == reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_predicted_one_period_on_until_it_goes_cold() {
        let none = crate::policy::Gaps::default();
        assert_eq!(predicted_next(100, 50, none, 120), Some(150));
        assert_eq!(predicted_next(100, 50, none, 200), Some(150), "late, not yet cold");
        assert_eq!(predicted_next(100, 50, none, 201), None, "idle past twice its period");
        assert_eq!(predicted_next(100, 0, none, 101), None, "never reused");
        // gaps 10, 40, 10, 40 in time order: after the long gap, the short one
        let pattern = [10u64, 40, 10, 40].iter().fold(none, |h, &x| h.after(x));
        assert_eq!(predicted_next(100, 50, pattern, 105), Some(110), "the short gap of its pattern");
    }

    #[test]
    fn the_window_is_twice_the_headroom() {
        assert_eq!(headroom(32 << 30), 512 << 20);
        assert_eq!(window(32 << 30), 1 << 30);
        assert_eq!(headroom(256 << 20), 32 << 20, "an eighth of a small limit");
    }
}
