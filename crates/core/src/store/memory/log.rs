//! A rollout's decision log in memory: JSON lines, compressed a block at a time.
//!
//! Records of one rollout repeat themselves (the same split, analysis names, field names), so
//! a block of them compresses several times over; the memory store keeps many thousands of
//! logs, and this is most of what it holds.

/// Lines are sealed into a compressed block once the open lines reach this many bytes.
const SEAL_AT: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct Log {
    /// Compressed blocks of lines, oldest first.
    sealed: Vec<Block>,
    /// The lines after the sealed blocks, uncompressed.
    open: Vec<u8>,
    /// Records in the log.
    len: u64,
}

#[derive(Debug)]
struct Block {
    /// Records in the block.
    count: u64,
    /// The lines, LZ4-compressed with their length in front.
    bytes: Box<[u8]>,
}

impl Log {
    /// Records in the log.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Appends one record's JSON (without a newline).
    pub(super) fn push(&mut self, json: &[u8]) {
        self.open.extend_from_slice(json);
        self.open.push(b'\n');
        self.len += 1;
        if self.open.len() >= SEAL_AT {
            let count = self.len - self.sealed.iter().map(|b| b.count).sum::<u64>();
            let bytes = lz4_flex::compress_prepend_size(&self.open).into_boxed_slice();
            self.sealed.push(Block { count, bytes });
            self.open = Vec::new();
        }
    }

    /// Calls `f` with the seq and JSON of up to `limit` records after `after`, in order.
    pub(super) fn read<E>(
        &self,
        after: u64,
        limit: usize,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut left = limit;
        let mut first = 1;
        let mut visit = |first: u64, lines: &[u8], left: &mut usize| -> Result<(), E> {
            for (seq, line) in (first..).zip(lines.split(|&b| b == b'\n')) {
                if *left == 0 || line.is_empty() {
                    break;
                }
                if seq > after {
                    f(seq, line)?;
                    *left -= 1;
                }
            }
            Ok(())
        };
        for block in &self.sealed {
            if first + block.count > after + 1 && left > 0 {
                // Blocks are compressed by this module; one that does not decompress would be
                // memory corruption, and reads as no lines.
                let lines = lz4_flex::decompress_size_prepended(&block.bytes).unwrap_or_default();
                visit(first, &lines, &mut left)?;
            }
            first += block.count;
        }
        if left > 0 {
            visit(first, &self.open, &mut left)?;
        }
        Ok(())
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.open.capacity() + self.sealed.iter().map(|b| b.bytes.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(log: &Log, after: u64, limit: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        log.read::<()>(after, limit, |seq, json| {
            out.push((seq, String::from_utf8(json.to_vec()).unwrap()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn reads_back_across_sealed_blocks_with_a_cursor() {
        let mut log = Log::default();
        let lines: Vec<String> = (1..=500)
            .map(|i| format!("{{\"seq\":{i},\"summary\":\"record number {i} of many\"}}"))
            .collect();
        for line in &lines {
            log.push(line.as_bytes());
        }
        assert!(log.sealed.len() > 3, "blocks were sealed");
        assert!(log.bytes() < lines.iter().map(String::len).sum::<usize>() / 2);
        assert_eq!(log.len(), 500);
        let all = collect(&log, 0, usize::MAX);
        assert_eq!(all.len(), 500);
        for (i, (seq, json)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(json, &lines[i]);
        }
        for after in [0, 1, 57, 100, 250, 499, 500, 600] {
            for limit in [0, 1, 3, 1000] {
                let page = collect(&log, after, limit);
                let want: Vec<u64> = (after + 1..=500).take(limit).collect();
                let got: Vec<u64> = page.iter().map(|(s, _)| *s).collect();
                assert_eq!(got, want, "after {after} limit {limit}");
            }
        }
    }
}
