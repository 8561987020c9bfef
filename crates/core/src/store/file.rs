use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{StateStore, StoreError, Stored, check_version, decode, encode};
use crate::state::RolloutState;
use crate::{ProviderError, RolloutId};

/// A [`StateStore`] of JSON files in a directory, one per rollout (`<id>.json`).
///
/// A save takes an exclusive lock on `<id>.lock` (so engines in different processes on one
/// machine exclude each other), compares the stored version, writes a temporary file, syncs
/// it, renames it over the old one and syncs the directory: after a crash at any moment the
/// file holds either the old or the new state, never a mix.
///
/// ```no_run
/// use cutover_core::FileStateStore;
/// let store = FileStateStore::new("/var/lib/my-deployer/rollouts")?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
}

impl FileStateStore {
    /// A store in `dir`, which is created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FileStateStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a rollout.
    pub fn path(&self, id: &RolloutId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

fn io_error(what: String, err: std::io::Error) -> StoreError {
    let kind = match err.kind() {
        IoErrorKind::Interrupted | IoErrorKind::WouldBlock | IoErrorKind::TimedOut => {
            ProviderError::transient(what)
        }
        _ => ProviderError::permanent(what),
    };
    StoreError::Provider(kind.with_source(err))
}

fn read(path: &Path, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == IoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("cannot read {}", path.display()), e)),
    };
    let (version, state) = split_file(&bytes).ok_or_else(|| StoreError::Corrupt {
        id: id.clone(),
        source: serde::de::Error::custom(format!(
            "{} does not start with a version line",
            path.display()
        )),
    })?;
    Ok(Some(Stored {
        version,
        state: decode(id, state)?,
    }))
}

/// A file is `<version>\n<state json>`: the version can be read without parsing the state.
fn split_file(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let version = std::str::from_utf8(&bytes[..newline])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((version, &bytes[newline + 1..]))
}

fn write(
    dir: &Path,
    path: &Path,
    id: &RolloutId,
    bytes: &[u8],
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    let lock_path = dir.join(format!("{id}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error(format!("cannot open {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| io_error(format!("cannot lock {}", lock_path.display()), e))?;

    let found = match fs::read(path) {
        Ok(current) => {
            Some(
                split_file(&current)
                    .map(|(v, _)| v)
                    .ok_or_else(|| StoreError::Corrupt {
                        id: id.clone(),
                        source: serde::de::Error::custom(format!(
                            "{} does not start with a version line",
                            path.display()
                        )),
                    })?,
            )
        }
        Err(e) if e.kind() == IoErrorKind::NotFound => None,
        Err(e) => return Err(io_error(format!("cannot read {}", path.display()), e)),
    };
    let version = check_version(id, expected, found)?;

    let tmp = dir.join(format!(".{id}.json.tmp"));
    let mut file =
        File::create(&tmp).map_err(|e| io_error(format!("cannot create {}", tmp.display()), e))?;
    file.write_all(format!("{version}\n").as_bytes())
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(format!("cannot write {}", tmp.display()), e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| {
        io_error(
            format!("cannot rename {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("cannot sync {}", dir.display()), e))?;
    Ok(version)
    // The lock is released when `lock` is dropped.
}

#[async_trait]
impl StateStore for FileStateStore {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn load(&self, id: &RolloutId) -> Result<Option<Stored>, StoreError> {
        let path = self.path(id);
        let id = id.clone();
        tokio::task::spawn_blocking(move || read(&path, &id))
            .await
            .map_err(|e| {
                StoreError::Provider(
                    ProviderError::transient("file store task failed").with_source(e),
                )
            })?
    }

    async fn save(
        &self,
        id: &RolloutId,
        state: &RolloutState,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let bytes = encode(id, state)?;
        let (dir, path, id) = (self.dir.clone(), self.path(id), id.clone());
        tokio::task::spawn_blocking(move || write(&dir, &path, &id, &bytes, expected))
            .await
            .map_err(|e| {
                StoreError::Provider(
                    ProviderError::transient("file store task failed").with_source(e),
                )
            })?
    }
}
