//! The codecs of one block. Each `encode` takes the block's bytes; each `decode` takes the
//! payload and the block's original length and returns exactly that many bytes, or an error
//! when the payload's length disagrees with what it claims to hold.
pub mod expf;
pub mod int8g;
pub mod zvc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    Raw,
    Zvc,
    Int8g,
    Expf,
}

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Raw, Codec::Zvc, Codec::Int8g, Codec::Expf];

    pub fn id(self) -> u8 {
        match self {
            Codec::Raw => 0,
            Codec::Zvc => 1,
            Codec::Int8g => 2,
            Codec::Expf => 3,
        }
    }

    pub fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::Raw,
            1 => Codec::Zvc,
            2 => Codec::Int8g,
            3 => Codec::Expf,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zvc => "zvc",
            Codec::Int8g => "int8g",
            Codec::Expf => "expf",
        }
    }

    pub fn is_lossy(self) -> bool {
        self == Codec::Int8g
    }
}
