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
    let mut out = vec![0; encoded_bound(data.len())];
    let n = encode_into(data, level, &mut out);
    out.truncate(n);
    out
}

/// The most bytes [`encode_into`] writes for `len` input bytes.
pub fn encoded_bound(len: usize) -> usize {
    1 + zstd::zstd_safe::compress_bound(len).max(len)
}

/// A zstd context for `level`. Level 3 (the default) keeps its search and
/// hash table but uses a chain table of 2^15 entries (not 2^16) and finds
/// matches from 4 bytes (not 5). On the Rust toolchain that stores 1.1%
/// fewer bytes than level 2's tables with 5-byte matches, kept before, in
/// the same time (whole backups side by side, within 1%); standard level 3
/// stores 0.4% more than this and was 14% slower than those tables. zstd
/// still shrinks the tables for small inputs.
fn compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::new(level)?;
    if level == 3 {
        c.set_parameter(CParameter::ChainLog(15))?;
        c.set_parameter(CParameter::MinMatch(4))?;
    }
    Ok(c)
}

/// Blobs at least this long are sampled before they are compressed whole.
const SAMPLED_MIN: usize = 256 << 10;
/// Bytes in each of the [`SAMPLES`] samples.
const SAMPLE_LEN: usize = 2 << 10;
const SAMPLES: usize = 32;

/// Whether compressing `data` whole is not worth trying: every one of 32
/// small samples spread evenly over it (6% of a 1 MiB blob) saves less than
/// 1/128 on its own. Already-compressed data (media, archives) is where
/// this holds; there the failed attempt on the whole blob was a tenth of
/// the backup's CPU. Compressible data stops the check at its first sample.
/// Many small samples rather than a few big ones: over /usr/share and a
/// Python installation in 1 MiB blocks, 8 samples of 8 KiB skipped 3 blocks
/// that compress whole (450 KB lost), 32 of 2 KiB none. `scratch` holds
/// the samples' frames.
fn looks_incompressible(data: &[u8], c: &mut zstd::bulk::Compressor<'static>, scratch: &mut [u8]) -> bool {
    if data.len() < SAMPLED_MIN {
        return false;
    }
    (0..SAMPLES).all(|i| {
        let start = (data.len() - SAMPLE_LEN) * i / (SAMPLES - 1);
        let sample = &data[start..start + SAMPLE_LEN];
        // A frame that does not fit in the sample's own length is a
        // failure to compress, not an error.
        c.compress_to_buffer(sample, &mut scratch[..SAMPLE_LEN])
            .map_or(true, |n| n > SAMPLE_LEN - SAMPLE_LEN / 128)
    })
}

/// [`encode`] into `out` (at least [`encoded_bound`] long); returns the
/// length written. The zstd context is kept per thread and level: creating
/// one per blob cost a tenth of a first backup's CPU time.
pub fn encode_into(data: &[u8], level: i32, out: &mut [u8]) -> usize {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    if level > 0 && data.len() >= 64 {
        // The frame must save at least 1/32, or the raw bytes are kept.
        let limit = data.len() - data.len() / 32;
        let frame = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|(l, _)| *l != level) {
                *c = Some((level, compressor(level).ok()?));
            }
            let (_, compressor) = c.as_mut().expect("just created");
            if looks_incompressible(data, compressor, &mut out[1..]) {
                return None;
            }
            compressor.compress_to_buffer(data, &mut out[1..]).ok()
        });
        if let Some(n) = frame.filter(|&n| n < limit) {
            out[0] = ZSTD;
            return n + 1;
        }
    }
    out[0] = RAW;
    out[1..1 + data.len()].copy_from_slice(data);
    data.len() + 1
}

/// The plaintext length `frame` declares, checked before anything is
/// allocated for it: present, at most [`MAX_DECOMPRESSED`], and `frame`
/// one frame only. One frame is all a writer stores; zstd would go on into
/// a second (empty ones, skippable ones) and take it whole, where a
/// decoder in pieces stops at the first: both refuse it, one answer for
/// the same bytes (found by fuzzing the two against each other).
fn frame_content_size(frame: &[u8], object: &dyn Fn() -> String) -> Result<u64> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .ok_or_else(|| Error::corrupt(object(), "zstd frame without a valid content size"))?;
    if size > MAX_DECOMPRESSED as u64 {
        return Err(Error::corrupt(object(), format!("claims {size} decompressed bytes")));
    }
    if zstd::zstd_safe::find_frame_compressed_size(frame).ok() != Some(frame.len()) {
        return Err(Error::corrupt(object(), "data after the zstd frame"));
    }
    Ok(size)
}

/// Decompresses one zstd frame into `out` (replacing its contents).
fn decompress_into(frame: &[u8], out: &mut Vec<u8>, object: &dyn Fn() -> String) -> Result<()> {
    let size = frame_content_size(frame, object)?;
    // One decompression context per thread: creating one per blob costs
    // more than decompressing a small tree.
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    out.clear();
    out.reserve_exact(size as usize);
    DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            d.as_mut().expect("just created").decompress_to_buffer(frame, out)
        })
        .map_err(|e| Error::corrupt(object(), format!("zstd: {e}")))?;
    if out.len() as u64 != size {
        return Err(Error::corrupt(object(), "decompressed length differs from the frame header"));
    }
    Ok(())
}

/// Bytes handed on at a time by [`decode_pieces`].
const PIECE: usize = 128 << 10;
/// The largest zstd window [`decode_pieces`] accepts: 2^24, 16 MiB. A frame
/// is given a window no larger than its content, and no chunk is over 16
/// MiB; a bigger window asked for by damaged or hostile input is refused
/// instead of allocated.
const PIECES_WINDOW_LOG_MAX: u32 = 24;
/// How zstd words the refusal of such a window.
pub const WINDOW_TOO_LARGE: &str = "Frame requires too much memory for decoding";

/// The plaintext of `buf` (as [`decode`] reads it) handed to `sink` in
/// pieces, without ever holding it whole; returns its length. A frame's
/// content goes through a buffer of 128 KiB and zstd's window, which is no
/// larger than the content and 2 MiB at most for a chunk at level 3: a
/// verify hashing a 4 MiB chunk this way holds about 2 MiB where the whole
/// plaintext took 4. `sink` may see pieces of plaintext that later turn out
/// to be damaged (an error returned after them): use it for what can be
/// thrown away, such as a hash.
pub fn decode_pieces(buf: &[u8], object: &dyn Fn() -> String, sink: &mut dyn FnMut(&[u8])) -> Result<u64> {
    use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};
    let frame = match buf.first() {
        Some(&RAW) => {
            sink(&buf[1..]);
            return Ok(buf.len() as u64 - 1);
        }
        Some(&ZSTD) => &buf[1..],
        Some(&b) => return Err(Error::corrupt(object(), format!("unknown compression byte {b}"))),
        None => return Err(Error::corrupt(object(), "empty compressed object")),
    };
    let size = frame_content_size(frame, object)?;
    // A context and a piece buffer per thread, as for whole frames.
    thread_local! {
        static STREAM: std::cell::RefCell<Option<(DCtx<'static>, Vec<u8>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let zstd_error =
        |code| Error::corrupt(object(), format!("zstd: {}", zstd::zstd_safe::get_error_name(code)));
    STREAM.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            let mut dctx = DCtx::try_create().ok_or_else(|| Error::corrupt(object(), "zstd: no memory"))?;
            dctx.set_parameter(DParameter::WindowLogMax(PIECES_WINDOW_LOG_MAX)).map_err(zstd_error)?;
            *s = Some((dctx, vec![0; PIECE]));
        }
        let (dctx, piece) = s.as_mut().expect("just created");
        dctx.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
        let mut input = InBuffer::around(frame);
        let mut total = 0u64;
        loop {
            let mut out = OutBuffer::around(&mut piece[..]);
            let hint = dctx.decompress_stream(&mut out, &mut input).map_err(zstd_error)?;
            let n = out.pos();
            total += n as u64;
            if total > size {
                return Err(Error::corrupt(object(), "decompressed length differs from the frame header"));
            }
            if n > 0 {
                sink(&piece[..n]);
            }
            if hint == 0 {
                break;
            }
            // Nothing more to read and room left to write: the frame is cut short.
            if n < piece.len() && input.pos() == frame.len() {
                return Err(Error::corrupt(object(), "zstd: the frame is cut short"));
            }
        }
        if total != size {
            return Err(Error::corrupt(object(), "decompressed length differs from the frame header"));
        }
        Ok(total)
    })
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
            let mut out = Vec::new();
            decompress_into(&buf[1..], &mut out, object)?;
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
            prop_assert_eq!(pieces(&enc).unwrap(), data.clone());
            prop_assert_eq!(decode(enc, &|| "t".into()).unwrap(), data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = pieces(&data);
            let _ = decode(data, &|| "t".into());
        }
    }

    /// Decoding in pieces gives what decoding whole gives, and refuses what
    /// it refuses: a cut frame, bytes after it, a wrong content size.
    fn pieces(buf: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = decode_pieces(buf, &String::new, &mut |p| out.extend_from_slice(p))?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    proptest! {
        #[test]
        fn pieces_match_whole(data in proptest::collection::vec(0u8..4, 0..600_000), level in 0i32..6) {
            let enc = encode(&data, level);
            prop_assert_eq!(pieces(&enc).unwrap(), data.clone());
            // Any cut or extension of a frame is refused, as whole.
            if enc[0] == ZSTD {
                for cut in [1, 2, enc.len() / 2, enc.len() - 1] {
                    prop_assert!(pieces(&enc[..cut]).is_err(), "cut at {}", cut);
                    prop_assert!(decode(enc[..cut].to_vec(), &String::new).is_err());
                }
                let mut longer = enc.clone();
                longer.push(0);
                prop_assert!(pieces(&longer).is_err());
            }
        }

        #[test]
        fn pieces_of_garbage_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = vec![ZSTD];
            framed.extend_from_slice(&data);
            let _ = pieces(&framed);
        }
    }

    /// Two empty frames one after the other: zstd reads both as one
    /// object; a writer never stores that, and both decoders refuse it.
    #[test]
    fn a_second_frame_is_refused_whole_and_in_pieces() {
        let empty = encode_frame(&[]);
        for second in [empty.clone(), vec![0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]] {
            let mut two = vec![ZSTD];
            two.extend_from_slice(&empty);
            two.extend_from_slice(&second);
            let whole = decode(two.clone(), &String::new).unwrap_err().to_string();
            let streamed = pieces(&two).unwrap_err().to_string();
            assert!(whole.contains("data after the zstd frame"), "{whole}");
            assert!(streamed.contains("data after the zstd frame"), "{streamed}");
        }
    }

    /// A zstd frame of `data` as a writer makes it (with its content size).
    fn encode_frame(data: &[u8]) -> Vec<u8> {
        let mut c = compressor(3).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true)).unwrap();
        c.compress(data).unwrap()
    }

    #[test]
    fn pieces_refuse_a_frame_whose_header_lies_about_its_size() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 & 3).collect();
        let enc = encode(&data, 3);
        assert_eq!(enc[0], ZSTD);
        // Frame header: magic (4), descriptor (1); with a content size of
        // 300,000 the descriptor says 4 bytes of it follow the window byte.
        let mut lie = enc.clone();
        let fhd = lie[5];
        let at = 5 + 1 + usize::from(fhd & 0x20 == 0);
        assert_eq!(fhd >> 6, 2, "a 4-byte content size");
        lie[at] ^= 1;
        let whole = decode(lie.clone(), &String::new).unwrap_err().to_string();
        let streamed = pieces(&lie).unwrap_err().to_string();
        assert!(whole.contains("length differs") || whole.contains("zstd"), "{whole}");
        assert!(streamed.contains("length differs") || streamed.contains("zstd"), "{streamed}");
    }

    #[test]
    fn pieces_refuse_a_window_beyond_sixteen_mib() {
        // A frame of 40 MB made with a window of 2^27 (level 19, window
        // log set), as a hostile writer could.
        let mut c = zstd::bulk::Compressor::new(19).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27)).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true)).unwrap();
        let data = vec![7u8; 40 << 20];
        let mut enc = vec![ZSTD];
        enc.extend(c.compress(&data).unwrap());
        let e = pieces(&enc).unwrap_err().to_string();
        assert!(e.contains(WINDOW_TOO_LARGE), "{e}");
        // Whole, it decodes: a verify that doubts a blob reads it whole.
        assert_eq!(decode(enc, &String::new).unwrap().len(), data.len());
    }

    #[test]
    fn skips_incompressible() {
        let mut data = vec![0u8; 100_000];
        getrandom::getrandom(&mut data).unwrap();
        assert_eq!(encode(&data, 3)[0], RAW);
        assert_eq!(encode(&[7u8; 100_000], 3)[0], ZSTD);
    }

    #[test]
    fn sampling_skips_only_what_does_not_compress() {
        let mut random = vec![0u8; 1 << 20];
        getrandom::getrandom(&mut random).unwrap();
        let (mut compressor, mut scratch) = (compressor(3).unwrap(), vec![0u8; encoded_bound(1 << 20)]);
        assert!(looks_incompressible(&random, &mut compressor, &mut scratch));
        assert_eq!(encode(&random, 3), [&[RAW][..], &random].concat());
        // Too short to sample: tried whole (and kept raw).
        assert!(!looks_incompressible(&random[..SAMPLED_MIN - 1], &mut compressor, &mut scratch));
        // Text in the last sample's place (64 KiB: more than the 1/32 a
        // frame must save) is enough to try the whole blob.
        let mut mixed = random.clone();
        let text = b"fn main() { println!(\"hello\"); }\n".repeat((64 << 10) / 32);
        let at = mixed.len() - text.len();
        mixed[at..].copy_from_slice(&text);
        assert!(!looks_incompressible(&mixed, &mut compressor, &mut scratch));
        let enc = encode(&mixed, 3);
        assert_eq!(enc[0], ZSTD);
        assert_eq!(decode(enc, &|| "t".into()).unwrap(), mixed);
        // Compressible between the samples only: skipped, stored raw, intact.
        let mut between = random.clone();
        let gap = (between.len() - SAMPLE_LEN) / (SAMPLES - 1);
        between[SAMPLE_LEN..gap].fill(7);
        assert!(looks_incompressible(&between, &mut compressor, &mut scratch));
        assert_eq!(decode(encode(&between, 3), &|| "t".into()).unwrap(), between);
    }

    /// Level 3 finds matches of 4 bytes: 256 words of 4 bytes, each
    /// followed by a random byte (so few matches reach 5 bytes), are
    /// compressed; zstd's own level 3 (5-byte matches) keeps most of them
    /// as literals.
    #[test]
    fn level_three_matches_four_bytes() {
        let mut seed = [0u8; 256 * 4 + 60_000];
        getrandom::getrandom(&mut seed).unwrap();
        let (words, noise) = seed.split_at(256 * 4);
        let data: Vec<u8> = noise
            .iter()
            .enumerate()
            .flat_map(|(i, &b)| {
                let w = usize::from(noise[(i + 1) % noise.len()]);
                [words[w * 4], words[w * 4 + 1], words[w * 4 + 2], words[w * 4 + 3], b]
            })
            .collect();
        let ours = encode(&data, 3);
        let standard = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(ours[0], ZSTD);
        assert!(
            ours.len() < standard.len() * 95 / 100,
            "level 3 stored {} bytes, zstd's own level 3 {}",
            ours.len(),
            standard.len()
        );
        assert_eq!(decode(ours, &|| "t".into()).unwrap(), data);
    }

    #[test]
    fn levels_switch_per_thread() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 997) as u8).collect();
        let one = encode(&data, 1);
        let nineteen = encode(&data, 19);
        assert_ne!(one, nineteen, "the cached context kept its first level");
        assert_eq!(encode(&data, 1), one);
        assert_eq!(decode(nineteen, &|| "t".into()).unwrap(), data);
    }
}
