//! Content-defined chunking (FastCDC 2020) over a reader, in bounded memory.
//!
//! The cut-point search is fastcdc's `cut_gear` with a gear table seeded from
//! the repository secret; the buffering is ours because the crate's
//! `StreamCDC` moves its whole buffer after every chunk.

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, Normalization, MASKS};
use serde::{Deserialize, Serialize};

/// Chunk size bounds, stored in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is shorter, in bytes (except a file's last).
    pub min_size: u32,
    /// The size chunks tend to, in bytes.
    pub avg_size: u32,
    /// No chunk is longer, in bytes: a cut is forced there.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 4 MiB. With normalized chunking a chunk over 4x
    /// the average is rare, and the smaller maximum halves the buffers every
    /// worker holds (chunker and sealing scratch); repositories made with
    /// another maximum keep theirs (it is in the config).
    fn default() -> Self {
        ChunkerParams { min_size: 512 << 10, avg_size: 1 << 20, max_size: 4 << 20 }
    }
}

impl ChunkerParams {
    /// Checks the bounds fastcdc accepts, so a damaged config cannot panic it.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!("invalid chunker sizes {}/{}/{}", self.min_size, self.avg_size, self.max_size))
        }
    }
}

/// Precomputed tables for one repository; cheap to share between threads.
pub struct Gear {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
}

impl Gear {
    pub fn new(params: ChunkerParams, seed: u64) -> Gear {
        let bits = fastcdc::v2020::logarithm2(params.avg_size);
        let norm = Normalization::Level1.bits();
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Gear {
            params,
            gear,
            gear_ls,
            mask_s: MASKS[(bits + norm) as usize],
            mask_l: MASKS[(bits - norm) as usize],
        }
    }

    /// Length of the first chunk of `data` (all of it when `data` is short).
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, n) = cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n
    }
}

/// Bytes a run of [`Chunker::runs`] is cut from (the buffer holds this
/// plus `max_size` of look-ahead, and so does the read-ahead buffer): about
/// one average chunk per worker thread, so that one big file keeps every
/// worker busy, from half the maximum chunk to the maximum. Runs of the
/// maximum on two threads held 5.4 MiB more at a first backup's peak (the
/// toolchain: 60.9 against 55.5 MiB) for no speed: these runs take 1.02x
/// the time (10 alternating pairs), 0.97x for a 2 GiB file.
fn run_len(params: &ChunkerParams, threads: usize) -> usize {
    let max = params.max_size as usize;
    (params.avg_size as usize).saturating_mul(threads).clamp(max / 2, max)
}

/// Reads into `buf[end..]` until it is full or the source ends; returns the
/// new end and whether the source ended.
fn read_full(reader: &mut impl Read, buf: &mut [u8], mut end: usize) -> io::Result<(usize, bool)> {
    while end < buf.len() {
        match reader.read(&mut buf[end..]) {
            Ok(0) => return Ok((end, true)),
            Ok(n) => end += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((end, false))
}

impl<R> Drop for Chunker<'_, R> {
    fn drop(&mut self) {
        return_buffer(std::mem::take(&mut self.buf));
    }
}

/// Buffers of finished chunkers, kept per thread for the next file: reading
/// into pages already touched saves a page fault per 4 KiB, which made up
/// a fifth of a first backup's CPU time when every file got a new buffer.
const POOLED_BUFFERS: usize = 1;
thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn pooled_buffer(len: usize) -> Vec<u8> {
    let reused = POOL.with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()));
    match reused {
        Some(mut buf) => {
            if buf.len() < len {
                buf.reserve_exact(len - buf.len());
                buf.resize(len, 0);
            }
            buf
        }
        None => vec![0; len],
    }
}

fn return_buffer(buf: Vec<u8>) {
    POOL.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < POOLED_BUFFERS {
                p.push(buf);
            } else if let Some(small) = p.iter_mut().min_by_key(|b| b.len()).filter(|b| b.len() < buf.len()) {
                *small = buf;
            }
        }
    });
}

/// Splits a reader into chunks. Memory: one buffer of `max_size` plus a
/// run (see [`run_len`]) at most, less for a source known to be small;
/// buffers are reused per thread.
pub struct Chunker<'g, R> {
    gear: &'g Gear,
    reader: R,
    buf: Vec<u8>,
    /// The most `buf` grows to: `max_size` of look-ahead plus a run.
    cap: usize,
    start: usize,
    end: usize,
    eof: bool,
}

impl<'g, R: Read> Chunker<'g, R> {
    /// `size_hint` (e.g. the file size) keeps the buffer small for small files.
    pub fn new(gear: &'g Gear, reader: R, size_hint: u64) -> Self {
        let cap = gear.params.max_size as usize + run_len(&gear.params, rayon::current_num_threads());
        let first = (size_hint as usize).saturating_add(1).clamp(4096, cap);
        Chunker { gear, reader, buf: pooled_buffer(first), cap, start: 0, end: 0, eof: false }
    }

    fn fill(&mut self) -> io::Result<()> {
        let max = self.gear.params.max_size as usize;
        if self.eof || self.end - self.start >= max {
            return Ok(());
        }
        // Move the tail to the front, growing the buffer if the size hint
        // was too small (a file that grew while being read).
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < self.cap && self.buf.len() - self.end < max {
            self.buf.resize((self.buf.len() * 2).min(self.cap), 0);
        }
        (self.end, self.eof) = read_full(&mut self.reader, &mut self.buf, self.end)?;
        Ok(())
    }

    /// Cuts the source into runs of chunks, about [`run_len`] bytes' worth
    /// each, calling `process` on each run (in order, with the chunks as
    /// slices of the internal buffer, so they can be processed in parallel
    /// without copies) and returning its results. The cut points are the
    /// same as [`Chunker::next_chunk`]'s. While a
    /// run is processed the next one is read into a second buffer, so a big
    /// file's reading overlaps its hashing and sealing instead of leaving the
    /// other workers idle between runs. Small sources never get the second
    /// buffer.
    pub fn runs<T: Send>(mut self, process: impl Fn(&[&[u8]]) -> T + Sync) -> io::Result<Vec<T>>
    where
        R: Send,
    {
        let mut results = Vec::new();
        let mut spare: Option<Vec<u8>> = None;
        let outcome = loop {
            let run = match self.cut_run() {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if run.is_empty() {
                break Ok(());
            }
            if self.eof {
                let chunks: Vec<&[u8]> = run.into_iter().map(|r| &self.buf[r]).collect();
                results.push(process(&chunks));
                continue;
            }
            // As large as the current buffer, which may have grown since the
            // spare was made (a source without a size hint, or one that
            // grew): the tail and a full read-ahead must fit.
            let mut next = spare.take().unwrap_or_default();
            if next.len() < self.buf.len() {
                next.resize(self.buf.len(), 0);
            }
            let Chunker { buf, reader, start, end, .. } = &mut self;
            let (current, tail) = (&buf[..], &buf[*start..*end]);
            let chunks: Vec<&[u8]> = run.into_iter().map(|r| &current[r]).collect();
            let (result, read) = rayon::join(
                || process(&chunks),
                || {
                    next[..tail.len()].copy_from_slice(tail);
                    read_full(reader, &mut next, tail.len())
                },
            );
            results.push(result);
            let (filled, eof) = match read {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            spare = Some(std::mem::replace(&mut self.buf, next));
            (self.start, self.end, self.eof) = (0, filled, eof);
        };
        outcome.map(|()| results)
    }

    /// Cuts the next run in the buffer (refilling it first); returns the
    /// chunks' ranges, empty at the end of the source.
    fn cut_run(&mut self) -> io::Result<Vec<std::ops::Range<usize>>> {
        let max = self.gear.params.max_size as usize;
        let mut cuts = Vec::new();
        self.fill()?;
        let mut pos = self.start;
        // A cut needs `max` bytes ahead of it (or the end of the source) to
        // land where an unbuffered reader would put it.
        while pos < self.end && (self.eof || self.end - pos >= max) {
            let n = self.gear.cut(&self.buf[pos..self.end]);
            cuts.push(pos..pos + n);
            pos += n;
        }
        if cuts.is_empty() && pos < self.end {
            // The buffer is smaller than a full look-ahead (a file that grew
            // past its size hint): cut as `next_chunk` does.
            let n = self.gear.cut(&self.buf[pos..self.end]);
            cuts.push(pos..pos + n);
            pos += n;
        }
        self.start = pos;
        Ok(cuts)
    }

    /// The next chunk, or `None` at the end of the source.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        if self.start == self.end {
            return Ok(None);
        }
        let n = self.gear.cut(&self.buf[self.start..self.end]);
        let chunk = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 }
    }

    fn chunks(gear: &Gear, data: &[u8], hint: u64) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(gear, data, hint);
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    /// A pipe's reads: a stream without a size hint, in small pieces.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(65536);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_long_stream_without_a_size_hint_is_cut_in_runs_as_one_chunk_at_a_time() {
        // The buffer grows while the stream is read; the read-ahead buffer
        // must grow with it (it was left smaller, and a tail longer than it
        // panicked: a 100 MB pg_dump did).
        let gear = Gear::new(ChunkerParams::default(), 7);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let data: Vec<u8> = (0..40_000_000)
            .map(|i| {
                // Long runs of repeated bytes (no cut point for a while),
                // between stretches of noise.
                if (i / 3_000_000) % 2 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 56) as u8
                } else {
                    b' '
                }
            })
            .collect();
        let mut one = Chunker::new(&gear, Trickle(&data), 0);
        let mut expected = Vec::new();
        while let Some(c) = one.next_chunk().unwrap() {
            expected.push(c);
        }
        let runs = Chunker::new(&gear, Trickle(&data), 0);
        let got: Vec<Vec<u8>> =
            runs.runs(|run| run.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap().concat();
        assert_eq!(got.concat(), data);
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the same cut points");
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input_within_bounds(data in proptest::collection::vec(any::<u8>(), 0..40000), hint in 0u64..50000) {
            let gear = Gear::new(small(), 42);
            let cs = chunks(&gear, &data, hint);
            prop_assert_eq!(cs.concat(), data.clone());
            for (i, c) in cs.iter().enumerate() {
                prop_assert!(c.len() <= 4096);
                if i + 1 < cs.len() { prop_assert!(c.len() >= 256); }
            }
            // Buffering does not change the cut points.
            prop_assert_eq!(chunks(&gear, &data, 0), cs.clone());
            // Nor does cutting in runs and reading ahead into a second
            // buffer, whatever the run's length (it follows the threads).
            for threads in [1, 3, 8] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let ahead: Vec<Vec<u8>> = pool.install(|| {
                    let c = Chunker::new(&gear, &data[..], hint);
                    c.runs(|run| run.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap().concat()
                });
                prop_assert_eq!(&ahead, &cs);
            }
        }
    }

    /// A run is about one average chunk per worker thread, from half the
    /// maximum chunk to the maximum, and the buffers stay within the
    /// maximum plus a run: on two threads 6 MiB each, where they were 8.
    #[test]
    fn runs_follow_the_threads_and_the_buffers_stay_bounded() {
        let p = ChunkerParams::default();
        let runs = [1, 2, 3, 4, 64].map(|t| run_len(&p, t) >> 10);
        assert_eq!(runs, [2048, 2048, 3072, 4096, 4096], "KiB per run for 1, 2, 3, 4 and 64 threads");
        let gear = Gear::new(p, 7);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let data: Vec<u8> = (0..(40 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (runs, kept) = pool.install(|| {
            let c = Chunker::new(&gear, &data[..], data.len() as u64);
            assert_eq!(c.cap, 6 << 20);
            let runs = c.runs(|run| run.iter().map(|r| r.len()).sum::<usize>()).unwrap();
            let kept = POOL.with(|p| p.borrow().iter().map(Vec::len).max());
            (runs, kept)
        });
        assert_eq!(runs.iter().sum::<usize>(), data.len());
        // A run ends at the first cut past `run_len` bytes (one chunk of 4
        // MiB at most past it).
        assert!(runs.iter().all(|&n| n <= (6 << 20)), "{runs:?}");
        let mean = runs.iter().sum::<usize>() / runs.len();
        assert!(mean < (3 << 20), "runs of {mean} bytes on average: {runs:?}");
        assert_eq!(kept, Some(6 << 20), "the buffer the chunker leaves for the next file");
    }

    #[test]
    fn insert_changes_few_chunks() {
        let mut data = vec![0u8; 200_000];
        let mut x: u64 = 1;
        for b in data.iter_mut() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (x >> 56) as u8;
        }
        let gear = Gear::new(small(), 7);
        let a = chunks(&gear, &data, 0);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, b"inserted bytes".iter().copied());
        let b = chunks(&gear, &edited, 0);
        let common = b.iter().filter(|c| a.contains(c)).count();
        assert!(common + 3 >= b.len(), "{common} of {} chunks shared", b.len());
        // A different seed cuts elsewhere.
        assert_ne!(chunks(&Gear::new(small(), 8), &data, 0), a);
    }
}
