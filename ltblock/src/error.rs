use std::fmt;

/// What is wrong with packed data. Every variant names where; decoding never panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The data ends before a structure it needs (`block` None: the buffer header or index).
    Truncated { block: Option<u32>, needed: u64, have: u64 },
    BadMagic { block: Option<u32> },
    UnsupportedVersion { block: Option<u32>, version: u32 },
    UnknownCodec { block: u32, id: u8 },
    UnknownDType { block: Option<u32>, id: u8 },
    /// A length, offset or count that contradicts another.
    Inconsistent { block: Option<u32>, what: &'static str },
    /// The decoded bytes do not match the stored checksum.
    Checksum { block: u32 },
    /// `decode_block` asked for a block that does not exist.
    NoSuchBlock { block: u32, count: u32 },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |b: &Option<u32>| b.map_or("buffer header".to_string(), |b| format!("block {b}"));
        match self {
            CodecError::Truncated { block, needed, have } => write!(f, "{}: truncated (needs {needed} bytes, has {have})", at(block)),
            CodecError::BadMagic { block } => write!(f, "{}: bad magic (not LT-Block data)", at(block)),
            CodecError::UnsupportedVersion { block, version } => write!(f, "{}: unsupported version {version}", at(block)),
            CodecError::UnknownCodec { block, id } => write!(f, "block {block}: unknown codec id {id}"),
            CodecError::UnknownDType { block, id } => write!(f, "{}: unknown dtype id {id}", at(block)),
            CodecError::Inconsistent { block, what } => write!(f, "{}: inconsistent {what}", at(block)),
            CodecError::Checksum { block } => write!(f, "block {block}: checksum mismatch (corrupted data)"),
            CodecError::NoSuchBlock { block, count } => write!(f, "block {block} does not exist (the buffer has {count})"),
        }
    }
}

impl std::error::Error for CodecError {}
