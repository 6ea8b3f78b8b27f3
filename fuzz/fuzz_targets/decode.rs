//! Any bytes given to the decoder, to `inspect`, to single-block decoding and to expf's
//! block decoder must give a value or an error, never a panic, an out-of-bounds read or an
//! unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ltblock::decode(data);
    let _ = ltblock::inspect(data);
    let _ = ltblock::decode_block(data, 0);
    if let Ok(out) = ltblock::decode(data) {
        // whatever decodes must re-encode and decode to the same bytes, as bytes and as each
        // float dtype in lossless mode (so expf's encoder sees the same inputs)
        for dtype in [ltblock::DType::U8, ltblock::DType::BF16, ltblock::DType::F16, ltblock::DType::F32] {
            let again = ltblock::encode(&out, &ltblock::EncodeOptions { dtype, ..Default::default() });
            assert_eq!(ltblock::decode(&again).unwrap(), out);
        }
    }
    // expf's block decoder alone, on the input as a payload of each float dtype and length
    if data.len() >= 3 {
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        for dtype in [ltblock::DType::BF16, ltblock::DType::F16, ltblock::DType::F32] {
            if let Some(out) = ltblock::codec::expf::decode(&data[2..], dtype, len) {
                assert_eq!(out.len(), len);
                // and what it decodes to goes through the encoder and back unchanged
                if let Some(p) = ltblock::codec::expf::encode(&out, dtype) {
                    assert_eq!(ltblock::codec::expf::decode(&p, dtype, len).unwrap(), out);
                }
            }
        }
    }
});
