//! Which buffers to pack when memory is needed: pure logic over what the registry knows, so
//! that it is tested with made-up use sequences (no clock, no CUDA).
//!
//! Eligibility (safety first) is decided by the engine; this orders the eligible ones. Time is
//! counted in use sequence numbers (one per hooked call that names buffers), and each buffer
//! keeps a reuse period: the long gaps between its uses (`next_period`: a gap longer than the
//! period becomes it, one of at least a quarter of it moves it slowly, the short gaps of a
//! burst of uses leave it). LRU is the worst choice for the loop every forward pass is (each
//! weight used once a step in the same order: LRU evicts exactly the buffer needed next, so
//! every access misses). So the order approximates Belady's (evict what is needed furthest in
//! the future): a buffer idle for longer than twice its period (or used once only) is cold and
//! goes first, oldest first; among the periodic ones the one whose next use, predicted as last
//! use + period, is furthest goes first. On a loop that predicts the buffers used just before
//! as needed last, so a stable set stays resident and only the rest cycles: about N - C
//! restores a step for N buffers of which C fit, where LRU makes N.
#![forbid(unsafe_code)]

/// What the policy knows of an eligible buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    pub size: u64,
    pub last_seq: u64,
    pub period: u64,
    /// It has a kept copy that can serve its pack: dropping it needs no encode.
    pub kept: bool,
}

/// The reuse period after a use `gap` sequence numbers after the previous one.
pub fn next_period(period: u64, gap: u64) -> u64 {
    if gap >= period {
        gap
    } else if gap >= period / 4 {
        (period * 7 + gap) / 8
    } else {
        period // a burst
    }
}

/// Uses closer to now than this are "the last few calls": a kernel may have built pointers
/// into such a buffer that the next kernel, which names only the pointer table, then reads.
pub const RECENT: u64 = 2;

/// A periodic victim without a kept copy counts its next use as this many times nearer: its
/// pack is an encode and a verify on the program's thread besides the decode at that use,
/// where one with a copy costs only that decode (the GPU codecs encode at 15-27 GB/s and decode
/// at 43-63, docs/PERF.md P22, and the verify is one more decode). On a loop the furthest next
/// use is the buffer used just before the last few calls; taking it whatever it costs, the
/// policy took the buffers the engine keeps resident without copies (survivors whose copies it
/// threw away, `engine::Entry::survivor`) as often as ones that cycle: the resident set drifted
/// a buffer or two a step, and each buffer taken was an encode. With the weight a buffer that
/// cycles goes instead, and the stable set stays; a buffer without a copy whose next use is
/// several times further off (used every few steps) still goes first.
pub const ENCODE_COST: i128 = 4;

/// Ranks `c` for eviction at sequence `now`: smaller first.
fn rank(c: &Candidate, now: u64) -> (u8, i128, i128, i128) {
    let idle = now.saturating_sub(c.last_seq);
    if c.period == 0 || idle > 2 * c.period {
        // cold: oldest first, larger first among equals (whether it has a copy or not: a
        // buffer gone cold must not hold its memory because packing it costs an encode)
        (0, c.last_seq as i128, 0, -(c.size as i128))
    } else {
        // periodic: furthest predicted next use first (the time to it shrunk for a buffer
        // that would be encoded; among those already late, the latest prediction first)
        let next = c.last_seq as i128 + c.period as i128;
        let ahead = (next - now as i128).max(0);
        let ahead = if c.kept { ahead } else { ahead / ENCODE_COST };
        (1, -ahead, -next, -(c.size as i128))
    }
}

/// The eligible candidates in eviction order; buffers used in the last `RECENT` sequence
/// numbers are left out.
pub fn victims(mut cands: Vec<Candidate>, now: u64) -> Vec<Candidate> {
    cands.retain(|c| now.saturating_sub(c.last_seq) > RECENT);
    cands.sort_by_key(|c| rank(c, now));
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of `capacity` buffers under an access sequence (one use a sequence number),
    /// with eviction by `victims` (or by LRU): the number of misses.
    fn simulate(order: &[u64], capacity: usize, lru: bool) -> usize {
        use std::collections::HashMap;
        let mut state: HashMap<u64, Candidate> = HashMap::new();
        let mut resident: Vec<u64> = Vec::new();
        let mut misses = 0;
        for (i, &id) in order.iter().enumerate() {
            let seq = i as u64 + 1;
            if !resident.contains(&id) {
                misses += 1;
                if resident.len() == capacity {
                    let cands: Vec<Candidate> = resident.iter().map(|r| state[r]).collect();
                    let out = if lru {
                        cands.iter().min_by_key(|c| c.last_seq).unwrap().id
                    } else {
                        victims(cands, seq).first().expect("a victim").id
                    };
                    resident.retain(|&r| r != out);
                }
                resident.push(id);
            }
            let c = state.entry(id).or_insert(Candidate { id, size: 1, last_seq: 0, period: 0, kept: true });
            if c.last_seq != 0 {
                c.period = next_period(c.period, seq - c.last_seq);
            }
            c.last_seq = seq;
        }
        misses
    }

    #[test]
    fn a_repeated_loop_misses_far_less_than_lru() {
        let n = 20u64;
        let steps = 50;
        let order: Vec<u64> = (0..steps).flat_map(|_| 1..=n).collect();
        let capacity = 14;
        let ours = simulate(&order, capacity, false);
        let lru = simulate(&order, capacity, true);
        assert_eq!(lru, order.len(), "LRU misses every access of a loop larger than the cache");
        // after the first pass, Belady's n - capacity misses a step, plus at most one a step for
        // each of the last RECENT uses, which may not be evicted (the ideal victim is among them)
        let per_step = (ours - n as usize) as f64 / (steps - 1) as f64;
        assert!(per_step <= (n as usize - capacity) as f64 + RECENT as f64, "ours: {per_step} misses a step");
    }

    #[test]
    fn a_loop_in_bursts_keeps_a_stable_set_too() {
        // each buffer used three times in a row (a layer's weights by several kernels), the
        // buffers in a loop
        let n = 12u64;
        let order: Vec<u64> = (0..40).flat_map(|_| (1..=n).flat_map(|b| [b, b, b])).collect();
        let ours = simulate(&order, 8, false);
        let per_step = (ours - n as usize) as f64 / 39.0;
        let lru = simulate(&order, 8, true);
        assert!(per_step <= (n - 8 + RECENT) as f64, "ours: {per_step} misses a step (LRU: {lru} in all)");
    }

    #[test]
    fn the_period_follows_long_gaps_and_ignores_bursts() {
        assert_eq!(next_period(0, 100), 100);
        assert_eq!(next_period(100, 1), 100, "a burst");
        assert_eq!(next_period(100, 60), (700 + 60) / 8);
        assert_eq!(next_period(100, 400), 400);
    }

    #[test]
    fn a_buffer_gone_cold_goes_before_the_periodic_ones() {
        let periodic = Candidate { id: 1, size: 10, last_seq: 900, period: 100, kept: true };
        let cold = Candidate { id: 2, size: 10, last_seq: 300, period: 100, kept: false };
        let once = Candidate { id: 3, size: 10, last_seq: 850, period: 0, kept: false };
        let order: Vec<u64> = victims(vec![periodic, cold, once], 1000).iter().map(|c| c.id).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    #[test]
    fn buffers_named_by_the_last_few_calls_are_never_victims() {
        let recent = Candidate { id: 1, size: 10, last_seq: 1000 - RECENT, period: 0, kept: true };
        let old = Candidate { id: 2, size: 10, last_seq: 10, period: 0, kept: true };
        let v = victims(vec![recent, old], 1000);
        assert_eq!(v.iter().map(|c| c.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_periodic_buffer_that_would_be_encoded_counts_as_needed_sooner() {
        // the one without a copy is taken only if it is due ENCODE_COST times as far off as the
        // one with a copy
        let kept = Candidate { id: 1, size: 10, last_seq: 950, period: 100, kept: true }; // due 1050
        let encode = Candidate { id: 2, size: 10, last_seq: 990, period: 100, kept: false }; // due 1090
        assert_eq!(victims(vec![kept, encode], 1000)[0].id, 1);
        let far = Candidate { id: 3, size: 10, last_seq: 990, period: 400, kept: false }; // due 1390
        assert_eq!(victims(vec![kept, far], 1000)[0].id, 3);
        // and a cold one goes first whatever it costs
        let cold = Candidate { id: 4, size: 10, last_seq: 500, period: 100, kept: false };
        assert_eq!(victims(vec![kept, cold], 1000)[0].id, 4);
    }

    #[test]
    fn among_equally_cold_buffers_the_larger_goes_first() {
        let small = Candidate { id: 1, size: 10, last_seq: 100, period: 0, kept: true };
        let large = Candidate { id: 2, size: 99, last_seq: 100, period: 0, kept: true };
        assert_eq!(victims(vec![small, large], 1000)[0].id, 2);
    }
}
