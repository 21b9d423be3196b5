//! Where a file's bytes are: which chunks cover a byte range, worked out
//! from the plaintext lengths the index records (no data is read to know
//! where a chunk starts), so that a read at any offset fetches only the
//! chunks it needs.

use std::ops::Range;

use crate::format::id::DataId;
use crate::format::index::Index;

/// The end offset of each chunk of a file: `ends[i]` is where chunk `i`
/// ends (and chunk `i + 1` starts), the last one is the file's length.
/// An error names the first chunk the index does not know.
pub(super) fn chunk_ends(index: &Index, content: &[DataId]) -> Result<Vec<u64>, String> {
    let mut end = 0u64;
    let mut ends = Vec::with_capacity(content.len());
    for (i, id) in content.iter().enumerate() {
        let loc = index.get(id).ok_or_else(|| format!("chunk {i} ({}) is not in the index", id.short()))?;
        end += u64::from(loc.raw_length);
        ends.push(end);
    }
    Ok(ends)
}

/// The start of chunk `i`.
pub(super) fn chunk_start(ends: &[u64], i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        ends[i - 1]
    }
}

/// The pieces of the chunks that hold bytes `offset .. offset + len` of
/// the file (cut at its end), in order: each a chunk's position and the
/// byte range within that chunk. Empty at or past the end.
pub(super) fn pieces(ends: &[u64], offset: u64, len: u64) -> Vec<(usize, Range<usize>)> {
    let total = ends.last().copied().unwrap_or(0);
    let end = offset.saturating_add(len).min(total);
    let mut out = Vec::new();
    // The first chunk that ends after `offset` holds it (binary search:
    // a large file has hundreds of thousands of chunks).
    let mut i = ends.partition_point(|&e| e <= offset);
    let mut pos = offset;
    while pos < end {
        let start = chunk_start(ends, i);
        let stop = ends[i].min(end);
        out.push((i, (pos - start) as usize..(stop - start) as usize));
        pos = stop;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_exactly_the_range_asked() {
        // Chunks of 10, 15, 1 and 4 bytes: 0..10, 10..25, 25..26, 26..30.
        let ends = [10, 25, 26, 30];
        assert_eq!(pieces(&ends, 0, 4), vec![(0, 0..4)]);
        assert_eq!(pieces(&ends, 3, 7), vec![(0, 3..10)]);
        // Starting exactly on a boundary starts in the next chunk.
        assert_eq!(pieces(&ends, 10, 2), vec![(1, 0..2)]);
        assert_eq!(pieces(&ends, 25, 1), vec![(2, 0..1)]);
        // Across every boundary.
        assert_eq!(pieces(&ends, 9, 19), vec![(0, 9..10), (1, 0..15), (2, 0..1), (3, 0..2)]);
        // Cut at the end of the file, and nothing at or past it.
        assert_eq!(pieces(&ends, 27, 100), vec![(3, 1..4)]);
        assert_eq!(pieces(&ends, 30, 10), vec![]);
        assert_eq!(pieces(&ends, 31, 10), vec![]);
        assert_eq!(pieces(&ends, u64::MAX, u64::MAX), vec![]);
        assert_eq!(pieces(&ends, 5, 0), vec![]);
        // An empty file has no chunks.
        assert_eq!(pieces(&[], 0, 10), vec![]);
    }

    #[test]
    fn pieces_add_up_to_the_bytes_at_every_offset() {
        // Random-ish chunk lengths; every (offset, len) must map to the
        // same bytes as slicing the concatenation.
        let lens = [7u64, 1, 13, 2, 9, 1, 1, 30];
        let mut end = 0;
        let ends: Vec<u64> = lens
            .iter()
            .map(|l| {
                end += l;
                end
            })
            .collect();
        let chunks: Vec<Vec<u8>> = ends
            .iter()
            .enumerate()
            .map(|(i, _)| (chunk_start(&ends, i)..ends[i]).map(|b| b as u8).collect())
            .collect();
        let whole: Vec<u8> = chunks.concat();
        for offset in 0..whole.len() as u64 + 3 {
            for len in 0..whole.len() as u64 + 3 {
                let got: Vec<u8> =
                    pieces(&ends, offset, len).into_iter().flat_map(|(i, r)| chunks[i][r].to_vec()).collect();
                let from = (offset as usize).min(whole.len());
                let to = ((offset + len) as usize).min(whole.len());
                assert_eq!(got, whole[from..to], "offset {offset} len {len}");
            }
        }
    }
}
