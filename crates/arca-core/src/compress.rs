//! The compression layer inside every sealed blob: `0x00 || raw` or
//! `0x01 || zstd frame`. Compression is skipped when it does not pay.

use crate::error::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Upper bound on a decompressed object, so damaged or hostile input cannot
/// make us allocate without limit.
pub const MAX_DECOMPRESSED: usize = 512 << 20;

/// Compresses `data` with zstd at `level` (0 = never compress), keeping the
/// raw bytes when the frame would not save at least 1/32 of them.
pub fn encode(data: &[u8], level: i32) -> Vec<u8> {
    if level > 0 && data.len() >= 64 {
        if let Ok(frame) = zstd::bulk::compress(data, level) {
            if frame.len() + data.len() / 32 < data.len() {
                let mut out = Vec::with_capacity(frame.len() + 1);
                out.push(ZSTD);
                out.extend_from_slice(&frame);
                return out;
            }
        }
    }
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(RAW);
    out.extend_from_slice(data);
    out
}

/// Reverses [`encode`]. `object` names what is decoded, for the error.
pub fn decode(buf: Vec<u8>, object: &dyn Fn() -> String) -> Result<Vec<u8>> {
    match buf.first() {
        Some(&RAW) => {
            let mut buf = buf;
            buf.remove(0);
            Ok(buf)
        }
        Some(&ZSTD) => {
            let frame = &buf[1..];
            let size = zstd::zstd_safe::get_frame_content_size(frame)
                .ok()
                .flatten()
                .ok_or_else(|| Error::corrupt(object(), "zstd frame without a valid content size"))?;
            if size > MAX_DECOMPRESSED as u64 {
                return Err(Error::corrupt(object(), format!("claims {size} decompressed bytes")));
            }
            // One decompression context per thread: creating one per blob
            // costs more than decompressing a small tree.
            thread_local! {
                static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            let out = DECOMPRESSOR
                .with(|d| {
                    let mut d = d.borrow_mut();
                    if d.is_none() {
                        *d = Some(zstd::bulk::Decompressor::new()?);
                    }
                    d.as_mut().expect("just created").decompress(frame, size as usize)
                })
                .map_err(|e| Error::corrupt(object(), format!("zstd: {e}")))?;
            if out.len() as u64 != size {
                return Err(Error::corrupt(object(), "decompressed length differs from the frame header"));
            }
            Ok(out)
        }
        Some(&b) => Err(Error::corrupt(object(), format!("unknown compression byte {b}"))),
        None => Err(Error::corrupt(object(), "empty compressed object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(data in proptest::collection::vec(0u8..4, 0..20000), level in 0i32..6) {
            let enc = encode(&data, level);
            prop_assert_eq!(decode(enc, &|| "t".into()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(data, &|| "t".into());
        }
    }

    #[test]
    fn skips_incompressible() {
        let mut data = vec![0u8; 100_000];
        getrandom::getrandom(&mut data).unwrap();
        assert_eq!(encode(&data, 3)[0], RAW);
        assert_eq!(encode(&[7u8; 100_000], 3)[0], ZSTD);
    }
}
