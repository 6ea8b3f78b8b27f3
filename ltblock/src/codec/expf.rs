//! expf: lossless float coding of the exponents, for f16, bf16 and f32.
//!
//! In weights the exponent byte carries ~2.5 bits of information while sign and mantissa are
//! close to random, so each element is split into a *symbol* (bf16 and f32: the 8 exponent
//! bits; f16: the high byte, sign rotated to its low bit, i.e. exponent, two mantissa bits,
//! sign) coded with a length-limited canonical Huffman code carried in the block, and *rest*
//! bits stored as they are (bf16 and f16: one byte, f32: three). Payload (docs/FORMAT.md):
//! the rest plane, a small header with the code lengths, 256 stream lengths, 256 streams.
//!
//! Why 256 streams: a GPU CTA of 256 threads decodes a block, thread t its own stream,
//! sequentially, from a table in shared memory; stream t holds the symbols of the 16-byte
//! vectors v = t, t + 256, ... (the vectors thread t stores), so every store of a warp is
//! contiguous. Streams are byte-aligned and MSB-first; their lengths (bytes, one each) give
//! each thread its start. Why Huffman and not a fixed-width code with exceptions: the width
//! costs ~0.5 bit an element over the entropy on normal weights (3 bits + escapes against
//! 2.55), i.e. 3 points of ratio, and the target is 1.5 (docs/ARCHITECTURE.md). Code lengths
//! are at most `MAX_LEN` = 12 bits so that the decoder's table has 4096 entries. The code is
//! built the same way by the GPU's encoder: Moffat and Katajainen's in-place minimum-redundancy
//! lengths over the symbols sorted by (count, symbol), then length-limited by moving codes
//! (as zlib-style encoders do), then canonical codes in (length, symbol) order.
use crate::DType;

/// Longest code, in bits: the decoder's table has 2^MAX_LEN entries.
pub const MAX_LEN: u32 = 12;
/// Streams a block: one per thread of the GPU's CTA.
pub const STREAMS: usize = 256;
/// At most this many bytes of streams in a block (the GPU decoder stages them in shared
/// memory). A bf16 block with more is larger than raw anyway.
pub const MAX_STREAM_BYTES: usize = 32512;
/// Bytes of the code header before the code lengths.
const CODE_HEADER: usize = 4;

/// Bytes of rest a element (sign and mantissa, stored as they are).
pub fn rest_width(dtype: DType) -> usize {
    if dtype == DType::F32 {
        3
    } else {
        1
    }
}

/// An element's bits split into (symbol, rest).
#[inline]
pub fn split(dtype: DType, bits: u32) -> (u8, u32) {
    match dtype {
        DType::F16 => {
            let hi = (bits >> 8) as u8;
            (hi.rotate_left(1), bits & 0xff)
        }
        DType::BF16 => (((bits >> 7) & 0xff) as u8, (bits & 0x7f) | ((bits >> 8) & 0x80)),
        _ => (((bits >> 23) & 0xff) as u8, (bits & 0x7f_ffff) | ((bits >> 8) & 0x80_0000)),
    }
}

/// The inverse of `split`.
#[inline]
pub fn join(dtype: DType, sym: u8, rest: u32) -> u32 {
    match dtype {
        DType::F16 => ((sym.rotate_right(1) as u32) << 8) | (rest & 0xff),
        DType::BF16 => ((rest & 0x80) << 8) | ((sym as u32) << 7) | (rest & 0x7f),
        _ => ((rest & 0x80_0000) << 8) | ((sym as u32) << 23) | (rest & 0x7f_ffff),
    }
}

#[inline]
fn elem(bytes: &[u8], w: usize, i: usize) -> u32 {
    let b = &bytes[i * w..i * w + w];
    if w == 2 {
        u16::from_le_bytes([b[0], b[1]]) as u32
    } else {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// The elements of stream t, in order: those of the 16-byte vectors v = t, t + 256, ...
/// (the last vector may hold fewer than 16 / w whole elements).
pub fn stream_elements(n: usize, w: usize, t: usize) -> impl Iterator<Item = usize> {
    let per = 16 / w;
    (t..n.div_ceil(per)).step_by(STREAMS).flat_map(move |v| v * per..((v + 1) * per).min(n))
}

/// Number of symbols in stream t.
pub fn stream_count(n: usize, w: usize, t: usize) -> usize {
    let per = 16 / w;
    let vecs = n.div_ceil(per);
    if t >= vecs {
        return 0;
    }
    let mine = (vecs - 1 - t) / STREAMS + 1; // vectors t, t + 256, ... below vecs
    let last = t + (mine - 1) * STREAMS;
    (mine - 1) * per + (n - last * per).min(per)
}

/// Minimum-redundancy code lengths of `a` (frequencies sorted ascending), in place: after
/// the call a[i] is the length of the i-th. Moffat and Katajainen (1995): a first pass builds
/// the tree with parent pointers in the array, a second turns them into internal depths, a
/// third into leaf depths. a.len() >= 2.
pub fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len();
    a[0] += a[1];
    let (mut root, mut leaf) = (0usize, 2usize);
    for next in 1..n - 1 {
        // the first child: the smaller of the next internal node and the next leaf
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        // the second child
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    a[n - 2] = 0;
    for next in (0..n.saturating_sub(2)).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    let (mut avail, mut used, mut depth) = (1i64, 0i64, 0u32);
    let mut root = n as i64 - 2;
    let mut next = n as i64 - 1;
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}

/// How many codes of each length (index 0..=MAX_LEN) the lengths of `a` give, limited to
/// MAX_LEN: longer codes are cut to MAX_LEN, then while the code is over-full one code of
/// MAX_LEN is taken away and the longest shorter code split into two one bit longer. None if
/// no valid code results (cannot happen for at most 256 symbols, kept as a guard).
pub fn limit_lengths(lengths: &[u32]) -> Option<[u32; MAX_LEN as usize + 1]> {
    let l = MAX_LEN as usize;
    let mut bl = [0u32; MAX_LEN as usize + 1];
    for &d in lengths {
        bl[(d as usize).clamp(1, l)] += 1;
    }
    let mut total: u32 = (1..=l).map(|d| bl[d] << (l - d)).sum();
    while total > 1 << l {
        if bl[l] == 0 {
            return None;
        }
        bl[l] -= 1;
        let d = (1..l).rev().find(|&d| bl[d] > 0)?;
        bl[d] -= 1;
        bl[d + 1] += 2;
        total -= 1;
    }
    Some(bl)
}

/// The code length of each symbol (0: absent) for these counts, as the encoder (CPU and GPU)
/// builds it. None when no symbol is present.
pub fn code_lengths(counts: &[u32; 256]) -> Option<[u8; 256]> {
    let mut order: Vec<(u32, u8)> = (0..256).filter(|&s| counts[s] > 0).map(|s| (counts[s], s as u8)).collect();
    order.sort_unstable();
    let mut lengths = [0u8; 256];
    match order.len() {
        0 => return None,
        1 => {
            lengths[order[0].1 as usize] = 1;
            return Some(lengths);
        }
        _ => {}
    }
    let mut a: Vec<u32> = order.iter().map(|o| o.0).collect();
    minimum_redundancy(&mut a);
    let bl = limit_lengths(&a)?;
    // the most frequent symbols (the end of `order`) take the shortest codes
    let mut k = order.len();
    for (d, &count) in bl.iter().enumerate().skip(1) {
        for _ in 0..count {
            k -= 1;
            lengths[order[k].1 as usize] = d as u8;
        }
    }
    Some(lengths)
}

/// Canonical codes, in (length, symbol) order: each code is the MAX_LEN-bit position where
/// its interval starts, shifted down to its length. Also returns the end of the last interval
/// (2^MAX_LEN for a complete code). None when the lengths are over-full.
pub fn canonical_codes(lengths: &[u8; 256]) -> Option<([u16; 256], u32)> {
    let mut codes = [0u16; 256];
    let mut start = 0u32;
    for len in 1..=MAX_LEN as u8 {
        for s in 0..256 {
            if lengths[s] == len {
                codes[s] = (start >> (MAX_LEN - len as u32)) as u16;
                start += 1 << (MAX_LEN - len as u32);
            }
        }
    }
    (start <= 1 << MAX_LEN).then_some((codes, start))
}

struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, code: u32, len: u32) {
        self.acc = (self.acc << len) | code as u64;
        self.n += len;
        while self.n >= 8 {
            self.n -= 8;
            self.bytes.push((self.acc >> self.n) as u8);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push((self.acc << (8 - self.n)) as u8);
        }
        self.bytes
    }
}

/// The payload's length for a block of `n` elements whose symbols span `nsyms` values and
/// whose streams take `stream_bytes`.
pub fn payload_len(n: usize, dtype: DType, nsyms: usize, stream_bytes: usize, tail: usize) -> usize {
    n * rest_width(dtype) + CODE_HEADER + nsyms.div_ceil(2) + STREAMS + stream_bytes + tail
}

/// The smallest payload expf could have for this block (every symbol one bit).
pub fn min_payload_len(n: usize, dtype: DType, tail: usize) -> usize {
    let w = dtype.width();
    let streams: usize = (0..STREAMS).map(|t| stream_count(n, w, t).div_ceil(8)).sum();
    payload_len(n, dtype, 1, streams, tail)
}

/// The payload, or None when the codec does not apply (not a float dtype, no whole element,
/// streams over MAX_STREAM_BYTES, a stream over 255 bytes: only past 64 KiB blocks).
pub fn encode(bytes: &[u8], dtype: DType) -> Option<Vec<u8>> {
    if !dtype.is_float() {
        return None;
    }
    let w = dtype.width();
    let n = bytes.len() / w;
    if n == 0 {
        return None;
    }
    let r = rest_width(dtype);
    let mut out = Vec::with_capacity(bytes.len());
    let mut counts = [0u32; 256];
    let mut syms = Vec::with_capacity(n);
    for i in 0..n {
        let (s, rest) = split(dtype, elem(bytes, w, i));
        counts[s as usize] += 1;
        syms.push(s);
        out.extend_from_slice(&rest.to_le_bytes()[..r]);
    }
    let lengths = code_lengths(&counts)?;
    let (codes, _) = canonical_codes(&lengths)?;
    let first = lengths.iter().position(|&l| l > 0)?;
    let last = lengths.iter().rposition(|&l| l > 0)?;
    let nsyms = last - first + 1;
    out.push(first as u8);
    out.push((nsyms - 1) as u8);
    out.extend_from_slice(&[0, 0]);
    for j in (0..nsyms).step_by(2) {
        let hi = if j + 1 < nsyms { lengths[first + j + 1] } else { 0 };
        out.push(lengths[first + j] | (hi << 4));
    }
    let mut streams = Vec::with_capacity(STREAMS);
    for t in 0..STREAMS {
        let mut bw = BitWriter { bytes: Vec::new(), acc: 0, n: 0 };
        for i in stream_elements(n, w, t) {
            let s = syms[i] as usize;
            bw.put(codes[s] as u32, lengths[s] as u32);
        }
        streams.push(bw.finish());
    }
    let total: usize = streams.iter().map(Vec::len).sum();
    if total > MAX_STREAM_BYTES || streams.iter().any(|s| s.len() > 255) {
        return None;
    }
    out.extend(streams.iter().map(|s| s.len() as u8));
    for s in &streams {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&bytes[n * w..]);
    Some(out)
}

/// The decoder's table: entry v (the next MAX_LEN bits, MSB first) is `symbol << 4 | length`,
/// 0 where no code starts with those bits.
pub fn decode_table(lengths: &[u8; 256]) -> Option<Vec<u16>> {
    let (codes, end) = canonical_codes(lengths)?;
    let mut table = vec![0u16; 1 << MAX_LEN];
    for s in 0..256 {
        let len = lengths[s] as u32;
        if len > 0 {
            let start = (codes[s] as usize) << (MAX_LEN - len);
            table[start..start + (1 << (MAX_LEN - len))].fill(((s as u16) << 4) | len as u16);
        }
    }
    debug_assert!(end as usize <= table.len());
    Some(table)
}

/// The block's bytes, or None when the payload is malformed: lengths that disagree, a code
/// that is over-full or longer than MAX_LEN, a stream that decodes past its end, does not end
/// in its last byte, or has padding bits set.
pub fn decode(payload: &[u8], dtype: DType, original_len: usize) -> Option<Vec<u8>> {
    if !dtype.is_float() {
        return None;
    }
    let w = dtype.width();
    let n = original_len / w;
    let tail = original_len - n * w;
    let r = rest_width(dtype);
    let a = n * r;
    if n == 0 || payload.len() < a + CODE_HEADER {
        return None;
    }
    let (first, nsyms) = (payload[a] as usize, payload[a + 1] as usize + 1);
    if first + nsyms > 256 || payload[a + 2] != 0 || payload[a + 3] != 0 {
        return None;
    }
    let nib = a + CODE_HEADER;
    let lens_at = nib + nsyms.div_ceil(2);
    let streams_at = lens_at + STREAMS;
    if payload.len() < streams_at {
        return None;
    }
    let mut lengths = [0u8; 256];
    for j in 0..nsyms {
        let l = (payload[nib + j / 2] >> (4 * (j % 2))) & 15;
        if l as u32 > MAX_LEN {
            return None;
        }
        lengths[first + j] = l;
    }
    // the range starts and ends on a symbol that has a code, and no nibble lies past it
    if lengths[first] == 0 || lengths[first + nsyms - 1] == 0 || (nsyms % 2 == 1 && payload[nib + nsyms / 2] >> 4 != 0) {
        return None;
    }
    let stream_total: usize = payload[lens_at..streams_at].iter().map(|&b| b as usize).sum();
    if stream_total > MAX_STREAM_BYTES || payload.len() != streams_at + stream_total + tail {
        return None;
    }
    let table = decode_table(&lengths)?;
    let syms = decode_streams(&payload[lens_at..streams_at], &payload[streams_at..streams_at + stream_total], &table, n, w)?;
    let mut out = vec![0u8; original_len];
    join_all(dtype, &syms, &payload[..a], &mut out[..n * w]);
    out[n * w..].copy_from_slice(&payload[streams_at + stream_total..]);
    Some(out)
}

/// One stream's reading state: bits come through a 64-bit buffer refilled a whole byte at a
/// time to at least 56 bits, so four codes (at most 48 bits) decode between refills.
#[derive(Clone, Copy)]
struct Cursor {
    byte: usize,
    buf: u64,
    cnt: u32,
}

impl Cursor {
    #[inline(always)]
    fn refill(&mut self, padded: &[u8]) {
        self.buf |= u64::from_be_bytes(padded[self.byte..self.byte + 8].try_into().unwrap()) >> self.cnt;
        self.byte += (63 - self.cnt as usize) >> 3;
        self.cnt |= 56;
    }
    /// The next symbol; false when no code starts with the next bits.
    #[inline(always)]
    fn symbol(&mut self, table: &[u16]) -> (u8, bool) {
        let e = table[(self.buf >> (64 - MAX_LEN)) as usize];
        let l = (e & 15) as u32;
        self.buf <<= l;
        self.cnt -= l;
        ((e >> 4) as u8, l != 0)
    }
}

/// Every element's symbol, from the 256 streams (lengths `lens`, bytes `streams`): each
/// stream must hold exactly its elements' codes, end in its last byte, zero bits after.
/// Four streams are decoded side by side where they all have a whole vector (their chains of
/// table lookups are independent, so the processor overlaps them).
fn decode_streams(lens: &[u8], streams: &[u8], table: &[u16], n: usize, w: usize) -> Option<Vec<u8>> {
    // zero bytes after the streams: a refill may look 7 bytes a time past a (malformed)
    // stream's end, at most once per four codes of its at most 128
    const PAD: usize = 256;
    let mut padded = Vec::with_capacity(streams.len() + PAD);
    padded.extend_from_slice(streams);
    padded.extend_from_slice(&[0; PAD]);
    let mut syms = vec![0u8; n];
    let per = 16 / w;
    let (vecs, whole) = (n.div_ceil(per), n / per);
    let mut starts = [0usize; STREAMS + 1];
    for t in 0..STREAMS {
        starts[t + 1] = starts[t] + lens[t] as usize;
    }
    let mut ok = true;
    let one_vector = |c: &mut Cursor, v: usize, syms: &mut [u8], ok: &mut bool| {
        for quad in syms[v * per..((v + 1) * per).min(n)].chunks_mut(4) {
            c.refill(&padded);
            for s in quad {
                let (sym, good) = c.symbol(table);
                *s = sym;
                *ok &= good;
            }
        }
    };
    for t0 in (0..STREAMS).step_by(4) {
        let mut c = [0, 1, 2, 3].map(|j| Cursor { byte: starts[t0 + j], buf: 0, cnt: 0 });
        let mut v0 = t0;
        while v0 < vecs {
            if v0 + 3 < whole {
                for q in 0..per / 4 {
                    for cj in c.iter_mut() {
                        cj.refill(&padded);
                    }
                    for i in 0..4 {
                        for (j, cj) in c.iter_mut().enumerate() {
                            let (sym, good) = cj.symbol(table);
                            syms[(v0 + j) * per + q * 4 + i] = sym;
                            ok &= good;
                        }
                    }
                }
            } else {
                for (j, cj) in c.iter_mut().enumerate() {
                    if v0 + j < vecs {
                        one_vector(cj, v0 + j, &mut syms, &mut ok);
                    }
                }
            }
            v0 += STREAMS;
        }
        for (j, cj) in c.iter().enumerate() {
            // the stream ends in its last byte, and the bits after its last code are zero
            let (at, len) = (starts[t0 + j], lens[t0 + j] as usize);
            let used = (cj.byte - at) * 8 - cj.cnt as usize;
            if used.div_ceil(8) != len || (!used.is_multiple_of(8) && padded[at + used / 8] & (0xff >> (used % 8)) != 0) {
                return None;
            }
        }
    }
    ok.then_some(syms)
}

/// Elements from their symbols and rest bytes (one loop a dtype, so each is a tight one).
fn join_all(dtype: DType, syms: &[u8], rest: &[u8], out: &mut [u8]) {
    match dtype {
        DType::BF16 => {
            for ((o, &s), &r) in out.chunks_exact_mut(2).zip(syms).zip(rest) {
                o.copy_from_slice(&(join(DType::BF16, s, r as u32) as u16).to_le_bytes());
            }
        }
        DType::F16 => {
            for ((o, &s), &r) in out.chunks_exact_mut(2).zip(syms).zip(rest) {
                o.copy_from_slice(&(join(DType::F16, s, r as u32) as u16).to_le_bytes());
            }
        }
        _ => {
            for ((o, &s), r) in out.chunks_exact_mut(4).zip(syms).zip(rest.chunks_exact(3)) {
                o.copy_from_slice(&join(DType::F32, s, u32::from_le_bytes([r[0], r[1], r[2], 0])).to_le_bytes());
            }
        }
    }
}

/// The exponent-entropy bound of a block, in bytes: the rest bits as they are, each symbol at
/// its block's empirical entropy, the partial element raw (no code, no stream overhead).
pub fn entropy_bound(bytes: &[u8], dtype: DType) -> f64 {
    let w = dtype.width();
    let n = bytes.len() / w;
    let mut counts = [0u64; 256];
    for i in 0..n {
        counts[split(dtype, elem(bytes, w, i)).0 as usize] += 1;
    }
    let bits: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64) * (c as f64 / n as f64).log2()).sum();
    (n * rest_width(dtype)) as f64 + bits / 8.0 + (bytes.len() - n * w) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_are_inverse_for_every_16_bit_value_and_f32_samples() {
        for dtype in [DType::F16, DType::BF16] {
            for h in 0..=u16::MAX as u32 {
                let (s, r) = split(dtype, h);
                assert!(r < 256);
                assert_eq!(join(dtype, s, r), h, "{dtype:?} {h:#06x}");
            }
        }
        let mut x = 0x1234_5678u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (s, r) = split(DType::F32, x);
            assert!(r < 1 << 24);
            assert_eq!(join(DType::F32, s, r), x);
        }
        // bf16 and f32: the symbol is the exponent field
        assert_eq!(split(DType::BF16, 0x3f80).0, 127);
        assert_eq!(split(DType::F32, 1.0f32.to_bits()).0, 127);
        assert_eq!(split(DType::F16, 0x8000).0, 1, "f16: the sign is the symbol's low bit");
    }

    #[test]
    fn minimum_redundancy_lengths_match_a_huffman_tree() {
        // 1, 1, 2, 4: lengths 3, 3, 2, 1
        let mut a = vec![1, 1, 2, 4];
        minimum_redundancy(&mut a);
        assert_eq!(a, vec![3, 3, 2, 1]);
        // equal weights: a complete tree
        let mut a = vec![5; 8];
        minimum_redundancy(&mut a);
        assert_eq!(a, vec![3; 8]);
        let mut a = vec![3, 7];
        minimum_redundancy(&mut a);
        assert_eq!(a, vec![1, 1]);
    }

    /// The total cost equals that of a textbook Huffman built with a heap, for random counts.
    #[test]
    fn minimum_redundancy_cost_equals_a_heap_huffman() {
        let mut x = 0x9E37_79B9u64;
        for trial in 0..300 {
            let m = 2 + trial % 60;
            let mut w: Vec<u32> = (0..m)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 1000) as u32 + 1
                })
                .collect();
            w.sort_unstable();
            let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<u64>> = w.iter().map(|&v| std::cmp::Reverse(v as u64)).collect();
            let mut cost = 0u64;
            while heap.len() > 1 {
                let (a, b) = (heap.pop().unwrap().0, heap.pop().unwrap().0);
                cost += a + b;
                heap.push(std::cmp::Reverse(a + b));
            }
            let mut a = w.clone();
            minimum_redundancy(&mut a);
            let ours: u64 = w.iter().zip(&a).map(|(&f, &l)| f as u64 * l as u64).sum();
            assert_eq!(ours, cost, "weights {w:?}");
        }
    }

    #[test]
    fn long_codes_are_limited_to_max_len_and_the_code_stays_complete() {
        // Fibonacci counts give a maximally deep tree (lengths up to 24)
        let mut counts = [0u32; 256];
        let (mut a, mut b) = (1u32, 1u32);
        for c in counts.iter_mut().take(25) {
            *c = a;
            (a, b) = (b, a + b);
        }
        let lengths = code_lengths(&counts).unwrap();
        assert!(lengths.iter().all(|&l| l as u32 <= MAX_LEN));
        let kraft: u32 = lengths.iter().filter(|&&l| l > 0).map(|&l| 1u32 << (MAX_LEN - l as u32)).sum();
        assert_eq!(kraft, 1 << MAX_LEN);
        let (_, end) = canonical_codes(&lengths).unwrap();
        assert_eq!(end, 1 << MAX_LEN);
        // the most frequent symbol has the shortest code
        assert_eq!(lengths[24], 1);
    }

    #[test]
    fn stream_counts_cover_every_element_once() {
        for (n, w) in [(32768, 2), (16384, 4), (1, 2), (7, 2), (3, 4), (4095 * 8 + 5, 2), (300, 4)] {
            let mut seen = vec![0u8; n];
            for t in 0..STREAMS {
                let els: Vec<usize> = stream_elements(n, w, t).collect();
                assert_eq!(els.len(), stream_count(n, w, t), "n {n} w {w} t {t}");
                assert!(els.windows(2).all(|p| p[0] < p[1]));
                for i in els {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n {n} w {w}");
        }
    }
}
