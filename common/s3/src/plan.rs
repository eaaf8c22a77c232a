//! Pure arithmetic of multipart assembly: which bytes of which stored objects make each part
//! of the blob. Every part but the last has the same size (R2 requires it; S3 requires at
//! least 5 MiB), and the part size grows with the blob so that 10,000 parts always suffice.
//! Where the stored objects' boundaries allow it, the parts are larger and each lies inside
//! one object ([`aligned_part_size`]), so that the whole blob is made by server-side copies.

/// The part size of blobs up to 10,000 × 8 MiB (78 GiB): a whole number of MiB above S3's
/// 5 MiB minimum, small enough that one buffered part per request keeps memory low.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's (and R2's) cap on the parts of one multipart upload.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// S3's cap on one part, one `PutObject` and one `CopyObject`.
pub(crate) const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The largest part [`aligned_part_size`] picks: a 6 GiB body sent in one `PATCH` becomes 6
/// copies rather than 768, still several at once, and a server that reads a copy's source
/// past the range (s3s-fs does) reads tens of GiB rather than terabytes.
pub(crate) const COPY_PART_SIZE: u64 = 1024 * 1024 * 1024;
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

/// A part size with which every part of the blob made of objects of `sizes` lies inside one
/// object, so that every part is an `UploadPartCopy`: the largest size up to
/// [`COPY_PART_SIZE`] (or the blob's [`part_size`], if larger) that divides every boundary
/// between the objects, if it is at least the blob's [`part_size`]. `None` where no such size
/// exists (small chunks, or boundaries that share no large divisor): then parts spanning objects
/// are read and uploaded.
pub(crate) fn aligned_part_size(sizes: &[u64]) -> Option<u64> {
    let total: u64 = sizes.iter().sum();
    let floor = part_size(total)?;
    let cap = COPY_PART_SIZE.max(floor);
    let mut boundaries: Vec<u64> = sizes
        .iter()
        .filter(|&&size| size > 0)
        .scan(0, |end, &size| {
            *end += size;
            Some(*end)
        })
        .collect();
    // The end of the last object is the end of the blob, not a boundary.
    boundaries.pop();
    let common = boundaries.into_iter().fold(0, gcd);
    if common == 0 {
        // One object: any size will do.
        return Some(cap);
    }
    // The largest divisor of `common` that is at most `cap`: `common / k` for the smallest
    // such `k` (at most `cap / floor` tries before the quotient drops below the floor).
    let mut k = common.div_ceil(cap);
    while common / k >= floor {
        if common.is_multiple_of(k) {
            return Some(common / k);
        }
        k += 1;
    }
    None
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
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

    /// Every part of a plan with an aligned size is one piece (one server-side copy).
    fn every_part_is_a_copy(sizes: &[u64], size: u64) -> usize {
        let total: u64 = sizes.iter().sum();
        let parts = plan(sizes, size);
        assert!(
            parts.iter().all(|p| p.pieces.len() == 1),
            "{sizes:?} at {size}"
        );
        assert!(parts.len() as u64 <= MAX_PARTS && size <= MAX_PART_SIZE);
        assert_eq!(parts.iter().map(PlannedPart::len).sum::<u64>(), total);
        parts.len()
    }

    #[test]
    fn large_objects_are_copied_in_large_parts() {
        let gib = 1024 * MIB;
        // A 6 GiB body in one PATCH (and an empty final PUT): six 1 GiB copies.
        let one = [6 * gib, 0];
        assert_eq!(aligned_part_size(&one), Some(COPY_PART_SIZE));
        assert_eq!(every_part_is_a_copy(&one, COPY_PART_SIZE), 6);
        // PATCHes of 64 MiB then a shorter last one: 64 MiB parts, all copies.
        let even = [64 * MIB, 64 * MIB, 64 * MIB, 10 * MIB];
        assert_eq!(aligned_part_size(&even), Some(64 * MIB));
        every_part_is_a_copy(&even, 64 * MIB);
        // Boundaries at 3 GiB and 4.5 GiB: the largest common divisor up to 1 GiB.
        let odd = [3 * gib, 3 * gib / 2, gib];
        let size = aligned_part_size(&odd).unwrap();
        assert_eq!(size, 768 * MIB);
        every_part_is_a_copy(&odd, size);
        // Past 10,000 GiB the floor rises above 1 GiB, and one object still aligns.
        let huge = [10_001 * gib];
        let size = aligned_part_size(&huge).unwrap();
        assert_eq!(size, part_size(10_001 * gib).unwrap());
        assert!(size > COPY_PART_SIZE);
    }

    #[test]
    fn small_or_unaligned_objects_have_no_aligned_size() {
        // 1 MiB chunks: parts span objects.
        assert_eq!(aligned_part_size(&[MIB; 100]), None);
        // 3 MiB then 7 MiB: the boundaries share only 1 MiB.
        assert_eq!(
            aligned_part_size(&[3 * MIB, 7 * MIB, 3 * MIB, 7 * MIB]),
            None
        );
        // Boundaries at 10 MiB and 21 MiB share only 1 MiB.
        assert_eq!(aligned_part_size(&[10 * MIB, 11 * MIB, 5 * MIB]), None);
        // One boundary at an odd byte count past 8 MiB is a part size of its own.
        let size = aligned_part_size(&[8 * MIB + 7, 20 * MIB]).unwrap();
        assert_eq!(size, 8 * MIB + 7);
        every_part_is_a_copy(&[8 * MIB + 7, 20 * MIB], size);
        assert_eq!(aligned_part_size(&[]), Some(COPY_PART_SIZE));
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
