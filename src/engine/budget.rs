//! The physical memory the process holds through the library, against its limit.
//!
//! `held` = resident VMM buffers + packed copies + pass-through allocations + our scratch.
//! Every component is an atomic changed where the memory is taken or given back, so that
//! `cudaMemGetInfo` and the stats read them without the engine's lock. A reservation is taken
//! before the memory is (so two threads cannot both fit into the same room) and given back if
//! the allocation then fails.
//!
//! A pack has its new copy and the buffer's memory at once, so the last `reserve` bytes under
//! the limit are only for packed copies. Everything else fits under `limit - reserve`, so
//! whenever memory is needed there is room for a victim's copy of up to `reserve` bytes and
//! the limit is not passed. (A victim whose copy is larger waits for room; only as the
//! engine's last resort, counted in `packs_over_limit`, is it packed past the limit.)
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Budget {
    pub limit: AtomicU64,
    /// True when the user set the limit (cudaMemGetInfo then reports it).
    pub explicit: std::sync::atomic::AtomicBool,
    pub resident: AtomicU64,
    pub packed: AtomicU64,
    /// Bytes of the buffers that are packed now (what their copies stand for).
    pub packed_original: AtomicU64,
    pub passthrough: AtomicU64,
    pub scratch: AtomicU64,
    pub held_peak: AtomicU64,
    /// The most the held bytes passed the limit in force at the time (0 when they never did).
    /// Not `held_peak - limit`: without a set limit the limit is the card's room, learnt
    /// again as memory runs short (`engine::fit_card`), so a peak under the limit then may be
    /// above a later one.
    pub over_peak: AtomicU64,
    /// The bytes under the limit that only packed copies may take.
    pub reserve: AtomicU64,
    /// Host memory held by packed copies moved there (`Engine::move_copies_to_host`; on the GPU
    /// their chunks' pinned slabs, a little larger than the chunks: `ltgpu::packer::slab_for`):
    /// no part of the held bytes, bounded with the packers' spare slabs by `LTSHIM_HOST_COPIES`
    /// over every device.
    pub in_host: AtomicU64,
    pub in_host_peak: AtomicU64,
}

/// One a device (`engine::MAX_DEVICES`): `LTSHIM_DEVICE_LIMIT` applies to each device the
/// process uses.
pub static BUDGETS: [Budget; super::MAX_DEVICES] = [const { Budget::new(u64::MAX) }; super::MAX_DEVICES];

/// Which part of the held memory a change is about.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    Resident,
    Packed,
    Passthrough,
    Scratch,
}

impl Budget {
    pub const fn new(limit: u64) -> Budget {
        Budget {
            limit: AtomicU64::new(limit),
            explicit: std::sync::atomic::AtomicBool::new(false),
            resident: AtomicU64::new(0),
            packed: AtomicU64::new(0),
            packed_original: AtomicU64::new(0),
            passthrough: AtomicU64::new(0),
            scratch: AtomicU64::new(0),
            held_peak: AtomicU64::new(0),
            over_peak: AtomicU64::new(0),
            reserve: AtomicU64::new(0),
            in_host: AtomicU64::new(0),
            in_host_peak: AtomicU64::new(0),
        }
    }

    fn counter(&self, p: Part) -> &AtomicU64 {
        match p {
            Part::Resident => &self.resident,
            Part::Packed => &self.packed,
            Part::Passthrough => &self.passthrough,
            Part::Scratch => &self.scratch,
        }
    }

    pub fn held(&self) -> u64 {
        self.resident.load(Relaxed) + self.packed.load(Relaxed) + self.passthrough.load(Relaxed) + self.scratch.load(Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Relaxed)
    }

    /// What `part` may fill up to: the limit for packed copies, the limit less the reserve
    /// for everything else.
    fn cap(&self, part: Part) -> u64 {
        match part {
            Part::Packed => self.limit(),
            _ => self.limit().saturating_sub(self.reserve.load(Relaxed)),
        }
    }

    /// The room left for `part`.
    pub fn room(&self, part: Part) -> u64 {
        self.cap(part).saturating_sub(self.held())
    }

    /// Takes `bytes` into `part` if they fit under its cap (all or nothing).
    pub fn try_take(&self, part: Part, bytes: u64) -> bool {
        let c = self.counter(part);
        c.fetch_add(bytes, Relaxed);
        let held = self.held();
        if held > self.cap(part) {
            c.fetch_sub(bytes, Relaxed);
            return false;
        }
        self.held_peak.fetch_max(held, Relaxed);
        true
    }

    /// Takes `bytes` whatever the limit (memory that exists already, e.g. our scratch).
    pub fn take(&self, part: Part, bytes: u64) {
        self.counter(part).fetch_add(bytes, Relaxed);
        let held = self.held();
        self.held_peak.fetch_max(held, Relaxed);
        self.over_peak.fetch_max(held.saturating_sub(self.limit()), Relaxed);
    }

    /// Takes `bytes` whatever the limit, as the engine's last resort (a restore with no room
    /// left under the cap): true when the held bytes then pass the limit itself, which taking
    /// into the reserve for packed copies does not.
    pub fn take_as_last_resort(&self, part: Part, bytes: u64) -> bool {
        self.take(part, bytes);
        self.held() > self.limit()
    }

    pub fn give(&self, part: Part, bytes: u64) {
        saturating_sub(self.counter(part), bytes);
    }

    /// A buffer of `bytes` was packed (`packed_original` counts what the copies stand for; it
    /// is no part of the held bytes).
    pub fn take_original(&self, bytes: u64) {
        self.packed_original.fetch_add(bytes, Relaxed);
    }

    pub fn give_original(&self, bytes: u64) {
        saturating_sub(&self.packed_original, bytes);
    }

    /// `device` bytes of copies moved from device memory (given back to `Part::Packed`) to
    /// host memory, where they hold `host` bytes (on the GPU their pinned slabs, a little more).
    pub fn moved_to_host(&self, device: u64, host: u64) {
        self.give(Part::Packed, device);
        let now = self.in_host.fetch_add(host, Relaxed) + host;
        self.in_host_peak.fetch_max(now, Relaxed);
    }

    /// `device` bytes and `host` bytes of copies were given back.
    pub fn give_copy(&self, device: u64, host: u64) {
        self.give(Part::Packed, device);
        saturating_sub(&self.in_host, host);
    }
}

/// Bytes of copies in host memory over every device.
pub fn in_host_total() -> u64 {
    BUDGETS.iter().map(|b| b.in_host.load(Relaxed)).sum()
}

fn saturating_sub(c: &AtomicU64, bytes: u64) {
    let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64) -> Budget {
        Budget::new(limit)
    }

    #[test]
    fn takes_only_what_fits_and_tracks_the_peak() {
        let b = budget(100);
        assert!(b.try_take(Part::Resident, 60));
        assert!(!b.try_take(Part::Packed, 41));
        assert_eq!(b.held(), 60);
        assert!(b.try_take(Part::Packed, 40));
        assert!(!b.try_take(Part::Passthrough, 1), "full");
        b.give(Part::Resident, 60);
        assert_eq!(b.held(), 40);
        assert_eq!(b.held_peak.load(Relaxed), 100);
    }

    #[test]
    fn the_reserve_is_for_packed_copies_only() {
        let b = budget(100);
        b.reserve.store(20, Relaxed);
        assert!(b.try_take(Part::Resident, 80));
        assert!(!b.try_take(Part::Passthrough, 1), "the reserve is not for allocations");
        assert_eq!(b.room(Part::Resident), 0);
        assert_eq!(b.room(Part::Packed), 20);
        assert!(b.try_take(Part::Packed, 20), "a copy fits into it");
        assert!(!b.try_take(Part::Packed, 1), "and never past the limit");
    }

    #[test]
    fn a_last_resort_take_says_whether_it_passed_the_limit_not_the_reserve() {
        let b = budget(100);
        b.reserve.store(20, Relaxed);
        assert!(b.try_take(Part::Resident, 70));
        assert!(!b.try_take(Part::Resident, 20), "past the cap of resident bytes");
        assert!(!b.take_as_last_resort(Part::Resident, 20), "90 of 100: into the reserve, under the limit");
        assert!(b.take_as_last_resort(Part::Resident, 20), "110 of 100: over it");
        assert_eq!(b.held_peak.load(Relaxed), 110);
        assert_eq!(b.over_peak.load(Relaxed), 10);
        b.give(Part::Resident, 20);
        b.limit.store(80, Relaxed);
        b.take(Part::Scratch, 5);
        assert_eq!(b.over_peak.load(Relaxed), 15, "95 over a limit of 80 since: the most it passed the limit of its time");
    }

    #[test]
    fn a_copy_moved_to_host_memory_leaves_the_held_bytes_and_comes_off_both_counts_when_given_back() {
        let b = budget(100);
        assert!(b.try_take(Part::Packed, 50));
        b.moved_to_host(30, 30);
        assert_eq!((b.held(), b.in_host.load(Relaxed)), (20, 30), "host memory is no part of what the limit bounds");
        assert!(b.try_take(Part::Resident, 80), "the room it left");
        b.give_copy(20, 30);
        assert_eq!((b.held(), b.in_host.load(Relaxed), b.in_host_peak.load(Relaxed)), (80, 0, 30));
    }

    #[test]
    fn concurrent_takers_never_exceed_the_limit_together() {
        let b = std::sync::Arc::new(budget(1000));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|_| b.try_take(Part::Resident, 7)).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken as u64 * 7, b.held());
        assert!(b.held() <= 1000);
    }
}
