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
//!
//! One period cannot predict a buffer used at several points of a step: a tied embedding
//! (read at a step's start and by the LM head at its end: gaps long, short, long, ...), or a
//! weight in training (forward, then backward: gaps that differ by layer and alternate). Its
//! period is the long gap, so after the use that ends the long gap the policy predicts the
//! next use a whole step away, and such a buffer is a victim just before it is needed (for
//! one with no copy, an encode and a restore). So each buffer also keeps its last few gaps
//! (`Gaps`): when they repeat with a cycle of one, two or three gaps, the next gap is the one
//! a cycle back (`next_gap`). (The harness's 3B model has its embedding and LM head apart:
//! its two 788 MB buffers move each step for lack of room, not by misprediction, P44-P48.)
#![forbid(unsafe_code)]

/// A buffer's last `Gaps::LEN` gaps between uses, newest first (0: not seen), in sequence
/// numbers saturating at `u32::MAX`. Gaps of a burst (`BURST` or less: a GEMM and the
/// kernel it launches, the queries before a launch) are not gaps of the pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gaps(pub [u32; Gaps::LEN]);

/// Gaps this short are one use in a burst, not a step of the pattern.
pub const BURST: u64 = 4;

impl Gaps {
    pub const LEN: usize = 4;

    /// The history after a use `gap` sequence numbers after the previous one.
    pub fn after(self, gap: u64) -> Gaps {
        if gap <= BURST {
            return self;
        }
        let mut g = [0u32; Gaps::LEN];
        g[0] = gap.min(u32::MAX as u64) as u32;
        g[1..].copy_from_slice(&self.0[..Gaps::LEN - 1]);
        Gaps(g)
    }

    /// Packed into two words (newest two in the first), as the registry stores it.
    pub fn to_words(self) -> [u64; 2] {
        let g = self.0.map(u64::from);
        [g[0] | g[1] << 32, g[2] | g[3] << 32]
    }

    pub fn from_words(w: [u64; 2]) -> Gaps {
        Gaps([w[0] as u32, (w[0] >> 32) as u32, w[1] as u32, (w[1] >> 32) as u32])
    }
}

/// Two gaps are the same step of a pattern when they differ by at most an eighth (a step's
/// calls vary little: the gaps of a loop repeat nearly exactly).
fn alike(a: u64, b: u64) -> bool {
    a != 0 && b != 0 && a.abs_diff(b) <= a.max(b) / 8
}

/// The gap to a buffer's next use: where its last gaps repeat with a cycle of c gaps (each
/// like the one c before it, every such pair of the history: one pair alike by chance, as a
/// layer's backward-to-optimizer gap may be like its optimizer-to-forward one, is no cycle;
/// the shortest cycle first), the gap that followed the use c uses back; otherwise (no pattern
/// yet, or a saturated gap) its period.
pub fn next_gap(period: u64, gaps: Gaps) -> u64 {
    let g = gaps.0.map(u64::from);
    for c in 1..Gaps::LEN {
        if (0..Gaps::LEN - c).all(|k| alike(g[k], g[k + c])) {
            let next = g[c - 1];
            return if next == u32::MAX as u64 { period } else { next };
        }
    }
    period
}

/// The use a buffer last used at `last` is predicted to be needed at, at `now`: `last` plus
/// its next gap; once a gap shorter than its period has passed with no use (the end of a run of
/// short gaps: a buffer named by several calls in a row, then not for a step), plus its period.
pub fn next_use(last: u64, period: u64, gaps: Gaps, now: u64) -> u64 {
    let gap = next_gap(period, gaps);
    if gap < period && last.saturating_add(gap) < now {
        last.saturating_add(period)
    } else {
        last.saturating_add(gap)
    }
}

/// Uses from `now` to a buffer's predicted next use: 0 once that is past (late: its next use
/// is not known, so it may be now), `u64::MAX` for a cold buffer (no period, or idle for more
/// than twice it: no use is expected). The same coldness as `rank`'s.
pub fn ahead(last: u64, period: u64, gaps: Gaps, now: u64) -> u64 {
    if period == 0 || now.saturating_sub(last) > 2 * period {
        return u64::MAX;
    }
    next_use(last, period, gaps, now).saturating_sub(now)
}

/// A packed buffer's copy goes to host memory instead of an encode of the first victim when
/// its next use is predicted this many times further off than the victim's
/// (`engine::Engine::move_far_copies_to_host`). Its restores then cross the bus while the copy
/// stays there (18x slower than a decode from device memory, docs/PERF.md P82); the victim's
/// pack would cost an encode and a verify, free only what its copy saves (a sixth of an fp32
/// buffer), and come back sooner.
/// Twice, so that a prediction's error (the gaps are matched within an eighth) never tips a
/// loop's buffers, which are all about a period off, into host memory.
pub const FAR: u64 = 2;

/// ... and when that victim's last copy was at least this fraction of it: a pack that frees
/// more than half of a buffer on the device is cheaper than a copy's round trip over the bus
/// (sparse_mlp's activations, which zvc packs to ~11%; training's fp32 buffers pack to ~84%).
/// Measured: not shown either way (sparse_mlp's single runs, docs/PERF.md P80-P83).
pub const FAR_SHRINKS_TO: f32 = 0.5;

/// Beyond how many uses from now a packed buffer's next use must be for its copy to go to host
/// memory instead of the first victim's pack (`FAR`, `FAR_SHRINKS_TO`); None when that pack is
/// the better way: the victim's kept copy serves (`kept`: dropping it costs nothing), it is
/// clean (`clean`: nothing wrote it since its restore, so the copy its encode makes serves its
/// later drops: one encode on the device, where a move costs a read over the bus at every
/// restore of the moved buffer for as long as its copy stays in host memory; the 3B decode in
/// lossy mode moved the copies of its weights rather than make a weight's copy int8g, and ran
/// at 0.77x of native for it, docs/PERF.md P88), it is cold or late (`ahead` 0 or `u64::MAX`:
/// no use of it is predicted), or its last copy was under `FAR_SHRINKS_TO` of it (`shrinks_to`;
/// 0 when it has had none).
pub fn far_beyond(kept: bool, clean: bool, ahead: u64, shrinks_to: f32) -> Option<u64> {
    (!kept && !clean && ahead != 0 && ahead != u64::MAX && shrinks_to >= FAR_SHRINKS_TO).then(|| ahead.saturating_mul(FAR))
}

/// What the policy knows of an eligible buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    pub size: u64,
    pub last_seq: u64,
    pub period: u64,
    /// Its last gaps (`next_gap`).
    pub gaps: Gaps,
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
        let next = next_use(c.last_seq, c.period, c.gaps, now) as i128;
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

    #[test]
    fn ahead_is_the_distance_to_the_predicted_use_unknown_once_late_and_endless_when_cold() {
        let none = Gaps::default();
        // used at 100 with a period of 50: due at 150
        assert_eq!(ahead(100, 50, none, 120), 30);
        assert_eq!(ahead(100, 50, none, 150), 0);
        assert_eq!(ahead(100, 50, none, 170), 0, "late: its next use may be now");
        assert_eq!(ahead(100, 50, none, 201), u64::MAX, "idle for more than two periods: cold");
        assert_eq!(ahead(100, 0, none, 101), u64::MAX, "used once: no use expected");
    }

    #[test]
    fn copies_go_far_only_ahead_of_an_encode_of_a_periodic_victim_that_shrinks_little() {
        assert_eq!(far_beyond(false, false, 30, 0.84), Some(60), "an fp32 activation needed in 30 uses");
        assert_eq!(far_beyond(true, false, 30, 0.84), None, "its kept copy serves: dropping it is free");
        assert_eq!(far_beyond(false, true, 30, 0.66), None, "a weight: its new copy serves from then on");
        assert_eq!(far_beyond(false, false, 0, 0.84), None, "late: it may be needed now");
        assert_eq!(far_beyond(false, false, u64::MAX, 0.84), None, "cold: the best victim there is");
        assert_eq!(far_beyond(false, false, 30, 0.11), None, "zvc frees most of it on the device");
        assert_eq!(far_beyond(false, false, 30, 0.0), None, "no copy yet: how much it frees is not known");
    }

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
            let c = state.entry(id).or_insert(Candidate { id, size: 1, last_seq: 0, period: 0, gaps: Gaps::default(), kept: true });
            if c.last_seq != 0 {
                c.period = next_period(c.period, seq - c.last_seq);
                c.gaps = c.gaps.after(seq - c.last_seq);
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

    /// Over `steps` repeats of `step`, the share of uses (after the first two steps, bursts
    /// left out) whose gap from the buffer's previous use was predicted within 10% (by its
    /// gaps, or by its period alone).
    fn predicted_share(step: &[u64], steps: usize, gaps: bool) -> f64 {
        use std::collections::HashMap;
        let mut known: HashMap<u64, (u64, u64, Gaps)> = HashMap::new(); // last, period, gaps
        let (mut right, mut all) = (0, 0);
        for (i, &id) in (0..steps).flat_map(|_| step.iter()).enumerate() {
            let seq = i as u64 + 1;
            if let Some((last, period, g)) = known.get(&id).copied() {
                let gap = seq - last;
                if i >= 2 * step.len() && gap > BURST {
                    let predicted = if gaps { next_gap(period, g) } else { period };
                    all += 1;
                    right += (predicted.abs_diff(gap) * 10 <= gap) as usize;
                }
                known.insert(id, (seq, next_period(period, gap), g.after(gap)));
            } else {
                known.insert(id, (seq, 0, Gaps::default()));
            }
        }
        right as f64 / all as f64
    }

    #[test]
    fn a_buffer_used_at_several_points_of_a_step_has_its_next_use_predicted() {
        // a decode step's tied embedding (0): read at a step's start and by the LM head at its
        // end, a few sampling calls after; with the period alone its use after the short gap
        // is predicted a step away
        let mut decode: Vec<u64> = vec![0];
        decode.extend(1..=40);
        decode.extend([0, 101, 102, 103, 104, 105, 106]);
        let (old, ours) = (predicted_share(&decode, 30, false), predicted_share(&decode, 30, true));
        assert!(old < 0.99, "the period alone predicts {old} of the uses");
        assert!(ours > 0.99, "the gaps predict {ours} of the uses");
        // training: each layer's weight in the forward pass, the backward pass (in reverse) and
        // the optimizer's step: three gaps a step, different for each layer
        let n = 24u64;
        let train: Vec<u64> = (1..=n).chain((1..=n).rev()).chain(1..=n).collect();
        let (old, ours) = (predicted_share(&train, 30, false), predicted_share(&train, 30, true));
        assert!(old < 0.5, "the period alone predicts {old} of the uses");
        assert!(ours > 0.9, "the gaps predict {ours} of the uses");
    }

    #[test]
    fn the_next_gap_is_the_one_a_cycle_back() {
        let g = |v: &[u64]| v.iter().rev().fold(Gaps::default(), |h, &x| h.after(x));
        // newest first: one gap repeating, two alternating, three in turn
        assert_eq!(next_gap(500, g(&[100, 100, 110, 100])), 100);
        assert_eq!(next_gap(1000, g(&[20, 1000, 22, 1000])), 1000, "after the short gap, the long one");
        assert_eq!(next_gap(1000, g(&[1000, 20, 1000, 22])), 20, "after the long gap, the short one");
        assert_eq!(next_gap(900, g(&[300, 500, 100, 300])), 100, "three in turn: 300, 100, 500, 300, then 100");
        // no pattern yet, or none at all: the period
        assert_eq!(next_gap(777, g(&[100])), 777);
        assert_eq!(next_gap(777, g(&[100, 100, 100])), 777, "not yet seen four times");
        assert_eq!(next_gap(777, g(&[100, 300, 900, 2700])), 777);
        // two gaps alike by chance are no cycle of one: 48, 12, 47, 48 is a cycle of three
        assert_eq!(next_gap(777, g(&[48, 47, 12, 48])), 12);
        // a burst is not a gap of the pattern, and a saturated gap predicts nothing
        assert_eq!(g(&[1000, BURST, 20]), g(&[1000, 20]));
        assert_eq!(next_gap(5000, g(&[u32::MAX as u64; 4])), 5000);
        // a run of short gaps predicts the next short one until it has passed, then the period
        let run = g(&[6, 6, 6, 6]);
        assert_eq!(next_gap(306, run), 6);
        assert_eq!(next_use(1000, 306, run, 1003), 1006);
        assert_eq!(next_use(1000, 306, run, 1010), 1306, "the run is over");
        assert_eq!(next_use(1000, 306, g(&[20, 1000, 22, 1000]), 1500), 2000, "the long gap is not overdue");
        // what the registry stores comes back as it was
        let h = g(&[7, 1 << 40, 9, 11]);
        assert_eq!(Gaps::from_words(h.to_words()), h);
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
        let periodic = Candidate { id: 1, size: 10, last_seq: 900, period: 100, gaps: Gaps::default(), kept: true };
        let cold = Candidate { id: 2, size: 10, last_seq: 300, period: 100, gaps: Gaps::default(), kept: false };
        let once = Candidate { id: 3, size: 10, last_seq: 850, period: 0, gaps: Gaps::default(), kept: false };
        let order: Vec<u64> = victims(vec![periodic, cold, once], 1000).iter().map(|c| c.id).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    #[test]
    fn buffers_named_by_the_last_few_calls_are_never_victims() {
        let recent = Candidate { id: 1, size: 10, last_seq: 1000 - RECENT, period: 0, gaps: Gaps::default(), kept: true };
        let old = Candidate { id: 2, size: 10, last_seq: 10, period: 0, gaps: Gaps::default(), kept: true };
        let v = victims(vec![recent, old], 1000);
        assert_eq!(v.iter().map(|c| c.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_periodic_buffer_that_would_be_encoded_counts_as_needed_sooner() {
        // the one without a copy is taken only if it is due ENCODE_COST times as far off as the
        // one with a copy
        let kept = Candidate { id: 1, size: 10, last_seq: 950, period: 100, gaps: Gaps::default(), kept: true }; // due 1050
        let encode = Candidate { id: 2, size: 10, last_seq: 990, period: 100, gaps: Gaps::default(), kept: false }; // due 1090
        assert_eq!(victims(vec![kept, encode], 1000)[0].id, 1);
        let far = Candidate { id: 3, size: 10, last_seq: 990, period: 400, gaps: Gaps::default(), kept: false }; // due 1390
        assert_eq!(victims(vec![kept, far], 1000)[0].id, 3);
        // and a cold one goes first whatever it costs
        let cold = Candidate { id: 4, size: 10, last_seq: 500, period: 100, gaps: Gaps::default(), kept: false };
        assert_eq!(victims(vec![kept, cold], 1000)[0].id, 4);
    }

    #[test]
    fn among_equally_cold_buffers_the_larger_goes_first() {
        let small = Candidate { id: 1, size: 10, last_seq: 100, period: 0, gaps: Gaps::default(), kept: true };
        let large = Candidate { id: 2, size: 99, last_seq: 100, period: 0, gaps: Gaps::default(), kept: true };
        assert_eq!(victims(vec![small, large], 1000)[0].id, 2);
    }
}
