//! Pure arithmetic of multipart assembly: which bytes of which stored objects make each part
//! of the blob. Every part but the last has the same size (R2 requires it; S3 requires at
//! least 5 MiB), and the part size grows with the blob so that 10,000 parts always suffice.

/// The part size of blobs up to 10,000 × 8 MiB (78 GiB): a whole number of MiB above S3's
/// 5 MiB minimum, small enough that one buffered part per request keeps memory low.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's (and R2's) cap on the parts of one multipart upload.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// S3's cap on one part, one `PutObject` and one `CopyObject`.
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// A range of one stored object: `[start, end)` of `source` (an index into the sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub source: usize,
    pub start: u64,
    pub end: u64,
}

impl Piece {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// One part of the blob, numbered from 1 as S3 numbers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedPart {
    pub number: i32,
    pub pieces: Vec<Piece>,
}

impl PlannedPart {
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(Piece::len).sum()
    }
}

/// The part size for a blob of `total` bytes: [`PART_SIZE`], or more (in whole MiB) when
/// 10,000 parts of it would not hold the blob. `None` beyond what S3 can store.
pub(crate) fn part_size(total: u64) -> Option<u64> {
    let needed = total.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    let size = needed.max(PART_SIZE);
    (size <= MAX_PART_SIZE).then_some(size)
}

/// Splits the concatenation of objects of `sizes` into parts of `part_size` bytes (the last
/// one shorter); part `n` (from 0) covers bytes `[n × part_size, (n + 1) × part_size)`.
pub(crate) fn plan(sizes: &[u64], part_size: u64) -> Vec<PlannedPart> {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut filled = 0;
    for (source, &size) in sizes.iter().enumerate() {
        let mut start = 0;
        while start < size {
            let take = (size - start).min(part_size - filled);
            current.push(Piece {
                source,
                start,
                end: start + take,
            });
            start += take;
            filled += take;
            if filled == part_size {
                parts.push(std::mem::take(&mut current));
                filled = 0;
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
        .into_iter()
        .zip(1..)
        .map(|(pieces, number)| PlannedPart { number, pieces })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_size_grows_only_past_ten_thousand_parts() {
        assert_eq!(part_size(0), Some(PART_SIZE));
        assert_eq!(part_size(MAX_PARTS * PART_SIZE), Some(PART_SIZE));
        assert_eq!(part_size(MAX_PARTS * PART_SIZE + 1), Some(PART_SIZE + MIB));
        let five_tib = 5 * 1024 * 1024 * MIB;
        let size = part_size(five_tib).unwrap();
        assert!(size * MAX_PARTS >= five_tib && size.is_multiple_of(MIB));
        assert_eq!(part_size(MAX_PARTS * MAX_PART_SIZE + 1), None);
    }

    #[test]
    fn parts_have_equal_sizes_and_cover_every_byte_once() {
        let kib = 1024;
        let sizes = [kib, 3 * MIB, 7 * MIB, kib, 3 * MIB, 7 * MIB, 5];
        let total: u64 = sizes.iter().sum();
        let parts = plan(&sizes, PART_SIZE);
        assert_eq!(parts.len() as u64, total.div_ceil(PART_SIZE));
        for part in &parts[..parts.len() - 1] {
            assert_eq!(part.len(), PART_SIZE);
        }
        // Pieces follow each other without gap or overlap, across parts.
        let mut next = (0, 0);
        for piece in parts.iter().flat_map(|p| &p.pieces) {
            if piece.source != next.0 {
                assert_eq!(next.1, sizes[next.0], "source {} not finished", next.0);
                next = (piece.source, 0);
            }
            assert_eq!(piece.start, next.1);
            next.1 = piece.end;
        }
        assert_eq!(next, (sizes.len() - 1, 5));
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            (1..=parts.len() as i32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_part_inside_one_object_is_one_piece() {
        let parts = plan(&[20 * MIB], PART_SIZE);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[1].pieces,
            vec![Piece {
                source: 0,
                start: PART_SIZE,
                end: 2 * PART_SIZE
            }]
        );
        assert_eq!(parts[2].len(), 4 * MIB);
        assert!(plan(&[], PART_SIZE).is_empty());
        assert!(plan(&[0, 0], PART_SIZE).is_empty());
    }
}
