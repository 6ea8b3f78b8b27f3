//! The buffer container: header, index, blocks. See docs/FORMAT.md for the bytes.
use crate::checksum::ltsum32;
use crate::codec::{expf, int8g, zvc, Codec};
use crate::{CodecError, DType};

pub const BUFFER_MAGIC: &[u8; 4] = b"LTBF";
pub const BLOCK_MAGIC: &[u8; 4] = b"LTBK";
pub const VERSION: u16 = 1;
pub const BUFFER_HEADER: usize = 40;
pub const BLOCK_HEADER: usize = 32;
pub const DEFAULT_BLOCK_SIZE: usize = 64 << 10;
/// Every block (and the first one, after the index) starts on this boundary; the bytes
/// between a payload's end and the next block are zero.
pub const ALIGN: usize = 16;

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Lossless,
    Lossy,
}

#[derive(Clone, Debug)]
pub struct EncodeOptions {
    pub mode: Mode,
    pub dtype: DType,
    /// int8g group size (elements).
    pub group: usize,
    /// Largest relative L2 error a lossy block may have.
    pub max_rel_l2: f32,
    pub block_size: usize,
    /// Leading bytes (a file header) that are only ever stored losslessly, in blocks of their own.
    pub lossless_prefix: usize,
    /// Threads that encode blocks at once (blocks are independent; the output is the same for
    /// any count). 1: the caller's thread only.
    pub threads: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { mode: Mode::Lossless, dtype: DType::U8, group: 128, max_rel_l2: 0.01, block_size: DEFAULT_BLOCK_SIZE, lossless_prefix: 0, threads: 1 }
    }
}

/// What one block holds (from its header).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockInfo {
    pub codec: Codec,
    pub dtype: DType,
    pub original_len: u32,
    pub payload_len: u32,
    pub rel_l2: f32,
    pub group: u16,
}

#[derive(Clone, Debug)]
pub struct Summary {
    pub dtype: DType,
    pub mode: Mode,
    pub original_len: u64,
    pub packed_len: u64,
    pub lossless_prefix: u64,
    pub blocks: Vec<BlockInfo>,
}

impl Summary {
    pub fn ratio(&self) -> f64 {
        self.original_len as f64 / self.packed_len.max(1) as f64
    }
}

/// The input spans of each block: the prefix in blocks of its own, then the rest.
fn spans(len: usize, prefix: usize, block: usize) -> Vec<(usize, usize, bool)> {
    let prefix = prefix.min(len);
    let mut out = Vec::new();
    let mut start = 0;
    while start < prefix {
        let end = (start + block).min(prefix);
        out.push((start, end, true));
        start = end;
    }
    while start < len {
        let end = (start + block).min(len);
        out.push((start, end, false));
        start = end;
    }
    out
}

/// Encodes a buffer. Each block gets the smallest codec the mode allows that passes its checks.
pub fn encode(data: &[u8], opts: &EncodeOptions) -> Vec<u8> {
    encode_with_progress(data, opts, |_, _, _| {})
}

/// What the encoder measured of one block, for callers that report it.
#[derive(Clone, Copy, Debug)]
pub struct BlockReport {
    pub codec: Codec,
    /// Relative L2 error of the decoded block (0 for lossless codecs; also in the header).
    pub rel_l2: f32,
    /// Largest |x' - x| / group scale (int8g only; quantisation alone gives at most 0.5, the
    /// dtype's rounding of the decoded value adds to it). Not stored in the format.
    pub max_abs_over_scale: f32,
}

/// One block, header and payload padded to 16 bytes: the smallest codec the mode allows that
/// passes its checks (a block of the lossless prefix is bytes, never lossy).
fn encode_block(bytes: &[u8], in_prefix: bool, opts: &EncodeOptions) -> (Vec<u8>, BlockReport) {
    let dtype = if in_prefix { DType::U8 } else { opts.dtype };
    let sum = ltsum32(bytes);
    let mut best = (Codec::Raw, bytes.to_vec(), sum, 0f32);
    let mut max_abs_over_scale = 0f32;
    let z = zvc::encode(bytes, dtype);
    if z.len() < best.1.len() {
        best = (Codec::Zvc, z, sum, 0.0);
    }
    let w = dtype.width();
    let (n, tail) = (bytes.len() / w, bytes.len() % w);
    let could_win = opts.group > 0 && int8g::payload_len(n, opts.group, tail) < best.1.len();
    if opts.mode == Mode::Lossy && !in_prefix && could_win {
        if let Some(q) = int8g::encode(bytes, dtype, opts.group, opts.max_rel_l2) {
            if q.payload.len() < best.1.len() {
                best = (Codec::Int8g, q.payload, ltsum32(&q.decoded), q.rel_l2);
                max_abs_over_scale = q.max_abs_over_scale;
            }
        }
    }
    // expf competes with raw and zvc; a block int8g took stays int8g (docs/FORMAT.md)
    if best.0 != Codec::Int8g && dtype.is_float() && n > 0 && expf::min_payload_len(n, dtype, tail) < best.1.len() {
        if let Some(e) = expf::encode(bytes, dtype) {
            if e.len() < best.1.len() {
                best = (Codec::Expf, e, sum, 0.0);
            }
        }
    }
    let (codec, payload, decoded_sum, err) = best;
    let mut h = Vec::with_capacity(align_up(BLOCK_HEADER + payload.len()));
    h.extend_from_slice(BLOCK_MAGIC);
    h.push(VERSION as u8);
    h.push(codec.id());
    h.push(dtype.id());
    h.push(codec.is_lossy() as u8);
    h.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&sum.to_le_bytes());
    h.extend_from_slice(&decoded_sum.to_le_bytes());
    h.extend_from_slice(&err.to_le_bytes());
    h.extend_from_slice(&(if codec == Codec::Int8g { opts.group as u16 } else { 0 }).to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&payload);
    h.resize(align_up(h.len()), 0);
    (h, BlockReport { codec, rel_l2: err, max_abs_over_scale })
}

/// As `encode`, calling `progress(done, total, report)` after each block (in the order blocks
/// finish when `opts.threads` > 1).
pub fn encode_with_progress(data: &[u8], opts: &EncodeOptions, mut progress: impl FnMut(usize, usize, &BlockReport)) -> Vec<u8> {
    let block = opts.block_size.max(1);
    let spans = spans(data.len(), opts.lossless_prefix, block);
    let total = spans.len();
    let mut blocks: Vec<Vec<u8>> = vec![Vec::new(); total];
    let encode_one = |&(s, e, in_prefix): &(usize, usize, bool)| encode_block(&data[s..e], in_prefix, opts);
    let threads = opts.threads.clamp(1, total.max(1));
    if threads == 1 {
        for (k, span) in spans.iter().enumerate() {
            let (b, report) = encode_one(span);
            blocks[k] = b;
            progress(k + 1, total, &report);
        }
    } else {
        // workers take blocks in turn and hand them to this thread, which keeps them in place
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (tx, next, spans, encode_one) = (tx.clone(), &next, &spans, &encode_one);
                scope.spawn(move || loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if k >= spans.len() || tx.send((k, encode_one(&spans[k]))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for (done, (k, (b, report))) in rx.iter().enumerate() {
                blocks[k] = b;
                progress(done + 1, total, &report);
            }
        });
    }
    let count = blocks.len();
    let mut offsets = Vec::with_capacity(count + 1);
    let mut off = align_up(BUFFER_HEADER + 8 * (count + 1)) as u64;
    for b in &blocks {
        offsets.push(off);
        off += b.len() as u64;
    }
    offsets.push(off);
    let mut out = Vec::with_capacity(off as usize);
    out.extend_from_slice(BUFFER_MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(opts.dtype.id());
    out.push((opts.mode == Mode::Lossy) as u8);
    out.extend_from_slice(&(block as u32).to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&(opts.lossless_prefix.min(data.len()) as u64).to_le_bytes());
    let mut index = Vec::with_capacity(8 * (count + 1));
    for o in &offsets {
        index.extend_from_slice(&o.to_le_bytes());
    }
    let mut check = out.clone();
    check.extend_from_slice(&index);
    out.extend_from_slice(&ltsum32(&check).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&index);
    out.resize(align_up(out.len()), 0);
    for b in blocks {
        out.extend_from_slice(&b);
    }
    out
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]])
}

/// A parsed, validated buffer header and index.
struct Parsed<'a> {
    buf: &'a [u8],
    dtype: DType,
    mode: Mode,
    block_size: usize,
    original_len: u64,
    prefix: u64,
    offsets: Vec<u64>,
}

fn parse(buf: &[u8]) -> Result<Parsed<'_>, CodecError> {
    let have = buf.len() as u64;
    if buf.len() < BUFFER_HEADER {
        return Err(CodecError::Truncated { block: None, needed: BUFFER_HEADER as u64, have });
    }
    if &buf[0..4] != BUFFER_MAGIC {
        return Err(CodecError::BadMagic { block: None });
    }
    let version = u16_at(buf, 4);
    if version != VERSION {
        return Err(CodecError::UnsupportedVersion { block: None, version: version as u32 });
    }
    let dtype = DType::from_id(buf[6]).ok_or(CodecError::UnknownDType { block: None, id: buf[6] })?;
    let mode = match buf[7] {
        0 => Mode::Lossless,
        1 => Mode::Lossy,
        _ => return Err(CodecError::Inconsistent { block: None, what: "mode" }),
    };
    let block_size = u32_at(buf, 8) as usize;
    let count = u32_at(buf, 12) as u64;
    let original_len = u64_at(buf, 16);
    let prefix = u64_at(buf, 24);
    let index_end = BUFFER_HEADER as u64 + 8 * (count + 1);
    let first_block = index_end.div_ceil(ALIGN as u64) * ALIGN as u64;
    if have < index_end {
        return Err(CodecError::Truncated { block: None, needed: index_end, have });
    }
    if u32_at(buf, 36) != 0 || block_size == 0 || prefix > original_len {
        return Err(CodecError::Inconsistent { block: None, what: "header fields" });
    }
    let mut check = buf[..32].to_vec();
    check.extend_from_slice(&buf[BUFFER_HEADER..index_end as usize]);
    if ltsum32(&check) != u32_at(buf, 32) {
        return Err(CodecError::Inconsistent { block: None, what: "header checksum" });
    }
    let offsets: Vec<u64> = (0..=count as usize).map(|i| u64_at(buf, BUFFER_HEADER + 8 * i)).collect();
    if offsets[0] != first_block || offsets.iter().any(|o| o % ALIGN as u64 != 0) || offsets.windows(2).any(|w| w[1] < w[0] + BLOCK_HEADER as u64) {
        return Err(CodecError::Inconsistent { block: None, what: "index offsets" });
    }
    if buf.len() as u64 >= first_block && buf[index_end as usize..first_block as usize].iter().any(|&b| b != 0) {
        return Err(CodecError::Inconsistent { block: None, what: "padding after the index" });
    }
    let end = *offsets.last().unwrap_or(&first_block);
    if end != have {
        return if end > have {
            Err(CodecError::Truncated { block: None, needed: end, have })
        } else {
            Err(CodecError::Inconsistent { block: None, what: "trailing bytes after the last block" })
        };
    }
    Ok(Parsed { buf, dtype, mode, block_size, original_len, prefix, offsets })
}

impl Parsed<'_> {
    fn count(&self) -> u32 {
        (self.offsets.len() - 1) as u32
    }

    fn info(&self, k: u32) -> Result<(BlockInfo, &[u8], u32, u32), CodecError> {
        let (s, e) = (self.offsets[k as usize] as usize, self.offsets[k as usize + 1] as usize);
        let h = &self.buf[s..e];
        let block = Some(k);
        if &h[0..4] != BLOCK_MAGIC {
            return Err(CodecError::BadMagic { block });
        }
        if h[4] as u16 != VERSION {
            return Err(CodecError::UnsupportedVersion { block, version: h[4] as u32 });
        }
        let codec = Codec::from_id(h[5]).ok_or(CodecError::UnknownCodec { block: k, id: h[5] })?;
        let dtype = DType::from_id(h[6]).ok_or(CodecError::UnknownDType { block, id: h[6] })?;
        let original_len = u32_at(h, 8);
        let payload_len = u32_at(h, 12);
        let padded = BLOCK_HEADER + align_up(payload_len as usize);
        if h[7] != codec.is_lossy() as u8 || u16_at(h, 30) != 0 || padded != h.len() || h[BLOCK_HEADER + payload_len as usize..].iter().any(|&b| b != 0) {
            return Err(CodecError::Inconsistent { block, what: "block header fields" });
        }
        if original_len as usize > self.block_size {
            return Err(CodecError::Inconsistent { block, what: "block length larger than the block size" });
        }
        if codec.is_lossy() && self.mode == Mode::Lossless {
            return Err(CodecError::Inconsistent { block, what: "a lossy block in a buffer packed lossless" });
        }
        let rel_l2 = f32::from_le_bytes([h[24], h[25], h[26], h[27]]);
        let info = BlockInfo { codec, dtype, original_len, payload_len, rel_l2, group: u16_at(h, 28) };
        Ok((info, &h[BLOCK_HEADER..BLOCK_HEADER + payload_len as usize], u32_at(h, 16), u32_at(h, 20)))
    }

    fn decode_block(&self, k: u32) -> Result<Vec<u8>, CodecError> {
        let (info, payload, original_sum, decoded_sum) = self.info(k)?;
        let len = info.original_len as usize;
        let out = match info.codec {
            Codec::Raw => (payload.len() == len).then(|| payload.to_vec()),
            Codec::Zvc => zvc::decode(payload, info.dtype, len),
            Codec::Int8g => int8g::decode(payload, info.dtype, info.group as usize, len),
            Codec::Expf => expf::decode(payload, info.dtype, len),
        }
        .ok_or(CodecError::Inconsistent { block: Some(k), what: "payload length for its codec" })?;
        let want = if info.codec.is_lossy() { decoded_sum } else { original_sum };
        if !info.codec.is_lossy() && original_sum != decoded_sum {
            return Err(CodecError::Inconsistent { block: Some(k), what: "checksums of a lossless block" });
        }
        if ltsum32(&out) != want {
            return Err(CodecError::Checksum { block: k });
        }
        Ok(out)
    }
}

/// Decodes a whole buffer.
pub fn decode(buf: &[u8]) -> Result<Vec<u8>, CodecError> {
    let p = parse(buf)?;
    let mut out = Vec::new(); // not sized from the header: a forged length must not allocate
    for k in 0..p.count() {
        out.extend_from_slice(&p.decode_block(k)?);
    }
    if out.len() as u64 != p.original_len {
        return Err(CodecError::Inconsistent { block: None, what: "total length of the blocks" });
    }
    Ok(out)
}

/// Decodes one block alone (random access through the index).
pub fn decode_block(buf: &[u8], k: u32) -> Result<Vec<u8>, CodecError> {
    let p = parse(buf)?;
    if k >= p.count() {
        return Err(CodecError::NoSuchBlock { block: k, count: p.count() });
    }
    p.decode_block(k)
}

/// Reads every header (no decoding).
pub fn inspect(buf: &[u8]) -> Result<Summary, CodecError> {
    let p = parse(buf)?;
    let blocks = (0..p.count()).map(|k| p.info(k).map(|i| i.0)).collect::<Result<Vec<_>, _>>()?;
    let total: u64 = blocks.iter().map(|b| b.original_len as u64).sum();
    if total != p.original_len {
        return Err(CodecError::Inconsistent { block: None, what: "total length of the blocks" });
    }
    Ok(Summary { dtype: p.dtype, mode: p.mode, original_len: p.original_len, packed_len: buf.len() as u64, lossless_prefix: p.prefix, blocks })
}
