//! Any bytes given to the decoder, to `inspect` and to single-block decoding must give a
//! value or an error, never a panic, an out-of-bounds read or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ltblock::decode(data);
    let _ = ltblock::inspect(data);
    let _ = ltblock::decode_block(data, 0);
    if let Ok(out) = ltblock::decode(data) {
        // whatever decodes must re-encode and decode to the same bytes (lossless, u8)
        let again = ltblock::encode(&out, &ltblock::EncodeOptions::default());
        assert_eq!(ltblock::decode(&again).unwrap(), out);
    }
});
