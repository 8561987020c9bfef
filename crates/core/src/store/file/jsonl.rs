//! Append-only JSON-lines files: the decision log and the inbox.
//!
//! Line `n` (from 1) holds the entry with `seq` `n`. A line is written with its newline and
//! synced; a last line without a newline is the remains of a write cut short by a crash, is
//! never read, and is cut off before the next append.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{io_error, sync_dir};
use crate::RolloutId;
use crate::store::StoreError;

/// Something kept in a JSON-lines file, numbered by its line.
pub(super) trait Line: Serialize + DeserializeOwned {
    fn seq(&self) -> u64;
}

impl Line for crate::record::DecisionRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Line for crate::command::QueuedCommand {
    fn seq(&self) -> u64 {
        self.seq
    }
}

fn corrupt(id: &RolloutId, path: &Path, line: &str, source: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        id: id.clone(),
        location: format!("{} {line}", path.display()),
        source,
    }
}

/// Entries with `seq > after`, at most `limit`, in order. A line that does not parse (or holds
/// the wrong `seq`) is an error naming the file and line; reading after it works.
pub(super) fn read_after<T: Line>(
    id: &RolloutId,
    path: &Path,
    after: u64,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot open {}", path.display()), e)),
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    while out.len() < limit {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break; // the end, or a torn last line
        }
        line_no += 1;
        if line_no <= after {
            continue;
        }
        let entry: T = serde_json::from_slice(&buf)
            .map_err(|e| corrupt(id, path, &format!("line {line_no}"), e))?;
        if entry.seq() != line_no {
            return Err(corrupt(
                id,
                path,
                &format!("line {line_no}"),
                serde::de::Error::custom(format!(
                    "holds seq {} where seq {line_no} belongs",
                    entry.seq()
                )),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

/// The `seq` of the last complete line (0 for an empty or missing file), and the length of the
/// file up to that line's end. Reads only the end of the file.
pub(super) fn last_line<T: Line>(id: &RolloutId, path: &Path) -> Result<(u64, u64), StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io_error(format!("cannot open {}", path.display()), e)),
    };
    let len = file
        .metadata()
        .map_err(|e| io_error(format!("cannot stat {}", path.display()), e))?
        .len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_to_end(&mut tail))
            .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
        // The end of the last complete line.
        let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok((0, 0)); // only a torn line
            }
            window *= 4;
            continue;
        };
        // The start of that line.
        let begin = match tail[..end].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if start == 0 => 0,
            None => {
                window *= 4;
                continue;
            }
        };
        let complete = start + end as u64 + 1;
        let entry: T = serde_json::from_slice(&tail[begin..=end])
            .map_err(|e| corrupt(id, path, "last line", e))?;
        return Ok((entry.seq(), complete));
    }
}

/// Appends entries as lines after the first `keep` bytes (cutting off a torn last line), then
/// syncs the file.
pub(super) fn append<T: Line>(path: &Path, keep: u64, entries: &[T]) -> Result<(), StoreError> {
    let mut bytes = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut bytes, entry).map_err(|e| {
            io_error(
                format!("cannot encode an entry for {}", path.display()),
                std::io::Error::other(e),
            )
        })?;
        bytes.push(b'\n');
    }
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error(format!("cannot open {}", path.display()), e))?;
    if let (true, Some(dir)) = (created, path.parent()) {
        sync_dir(dir)?;
    }
    let len = file
        .metadata()
        .map_err(|e| io_error(format!("cannot stat {}", path.display()), e))?
        .len();
    if len != keep {
        file.set_len(keep)
            .map_err(|e| io_error(format!("cannot cut {}", path.display()), e))?;
    }
    file.seek(SeekFrom::Start(keep))
        .and_then(|_| file.write_all(&bytes))
        .and_then(|()| file.sync_data())
        .map_err(|e| io_error(format!("cannot append to {}", path.display()), e))
}
