//! A [`LockStore`] on a directory of files, guarded by `flock(2)`: one lock
//! per name, for processes that share a file system (one machine, or a
//! file system whose `flock` is honoured across clients).
//!
//! It is the example of a store written outside tenure's workspace: it
//! passes the whole conformance suite (`tests/conformance.rs`) and declares
//! its capabilities honestly: a token floor (the highest token ever written
//! is kept beside the record and survives its deletion), no watch
//! (candidates poll).
//!
//! Files of the lock `name` in the directory:
//! - `name.lock`: the record, the whole file: the version on the first
//!   line, the record's JSON (tenure's format) after it. Absent = no record.
//! - `name.meta`: the last version issued and the token floor; never
//!   deleted, so a version is never reused (no ABA after a deletion) and
//!   tokens rise across deletion.
//! - `name.guard`: the file every access `flock`s, exclusively to write,
//!   shared to read. Writes go to a temporary file renamed over the record,
//!   so a reader never sees half a record.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use tenure_core::{CancellationToken, LeaderElector};
//! let store = tenure_file_store::FileStore::open("/run/locks", "nightly-report")?;
//! let elector = LeaderElector::builder(store, "replica-1").build()?;
//! elector.run(CancellationToken::new(), |leadership| async move {
//!     leadership.cancelled().await;
//! }).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tenure_core::record::{self, LeaderRecord, Version, Versioned};
use tenure_core::{LockStore, StoreError, async_trait, validate_lock_name};

/// One lock in a directory. Cheap to clone; every clone and every process
/// opening the same directory and name shares the lock.
#[derive(Clone, Debug)]
pub struct FileStore {
    paths: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    name: String,
    record: PathBuf,
    meta: PathBuf,
    guard: PathBuf,
}

/// The last version issued and the highest token ever written.
#[derive(Clone, Copy, Default)]
struct Meta {
    version: u64,
    floor: Option<u64>,
}

impl FileStore {
    /// The lock `name` (a Kubernetes-style name: `a-z`, `0-9`, `-`, `.`)
    /// in `dir`, which is created if missing.
    pub fn open(dir: impl AsRef<Path>, name: &str) -> Result<FileStore, StoreError> {
        validate_lock_name(name)?;
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| io_error("create the lock directory", e))?;
        Ok(FileStore {
            paths: Arc::new(Paths {
                name: name.to_owned(),
                record: dir.join(format!("{name}.lock")),
                meta: dir.join(format!("{name}.meta")),
                guard: dir.join(format!("{name}.guard")),
            }),
        })
    }

    /// The raw content of the record file (version line and record), as
    /// another tool would read it.
    pub fn read_raw(&self) -> Result<Option<String>, StoreError> {
        let _guard = self.paths.lock(libc::LOCK_SH)?;
        self.paths.read_record()
    }

    /// Writes `raw` as the record's value at a new version, bypassing the
    /// record format, as another tool would (for tests: a foreign value, a
    /// blanked record).
    pub fn write_raw(&self, raw: &str) -> Result<Version, StoreError> {
        let _guard = self.paths.lock(libc::LOCK_EX)?;
        let mut meta = self.paths.read_meta()?;
        meta.version += 1;
        self.paths.write_meta(meta)?;
        self.paths.write_record(meta.version, raw)?;
        Ok(Version::from(meta.version))
    }

    /// Deletes the record (the token floor stays).
    pub fn delete(&self) -> Result<(), StoreError> {
        let _guard = self.paths.lock(libc::LOCK_EX)?;
        match fs::remove_file(&self.paths.record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("delete", e)),
            _ => Ok(()),
        }
    }

    /// Rewrites the record unchanged at a new version, as a tool that
    /// touches the lock without changing it would.
    pub fn touch(&self) -> Result<(), StoreError> {
        let _guard = self.paths.lock(libc::LOCK_EX)?;
        let Some(raw) = self.paths.read_record()? else {
            return Ok(());
        };
        let value = split(&raw)?.1.to_owned();
        let mut meta = self.paths.read_meta()?;
        meta.version += 1;
        self.paths.write_meta(meta)?;
        self.paths.write_record(meta.version, &value)
    }

    /// Runs `f` on a blocking thread: file locks and I/O block.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Paths) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || f(&paths))
            .await
            .map_err(|e| StoreError::unavailable(format!("file store task failed: {e}")))?
    }
}

impl Paths {
    /// Locks the guard file (`LOCK_SH` or `LOCK_EX`) until the file is dropped.
    fn lock(&self, how: libc::c_int) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.guard)
            .map_err(|e| io_error("open the guard file", e))?;
        // SAFETY: flock(2) on a descriptor we own, for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
            return Err(io_error("flock", io::Error::last_os_error()));
        }
        Ok(file)
    }

    fn read_record(&self) -> Result<Option<String>, StoreError> {
        match fs::read_to_string(&self.record) {
            Ok(raw) => Ok(Some(raw)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read the record", e)),
        }
    }

    /// The record and its version; a value that is not one is `Corrupt`.
    fn current(&self) -> Result<Option<Versioned>, StoreError> {
        let Some(raw) = self.read_record()? else {
            return Ok(None);
        };
        let (version, value) = split(&raw)?;
        Ok(Some(Versioned {
            record: record::from_json(value)?,
            version: Version::from(version),
        }))
    }

    fn read_meta(&self) -> Result<Meta, StoreError> {
        let raw = match fs::read_to_string(&self.meta) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Meta::default()),
            Err(e) => return Err(io_error("read the meta file", e)),
        };
        let mut parts = raw.split_whitespace().map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(version)), None) => Ok(Meta {
                version,
                floor: None,
            }),
            (Some(Ok(version)), Some(Ok(floor))) => Ok(Meta {
                version,
                floor: Some(floor),
            }),
            _ => Err(StoreError::corrupt(format!(
                "{} is not a version and a token floor",
                self.meta.display()
            ))),
        }
    }

    fn write_meta(&self, meta: Meta) -> Result<(), StoreError> {
        let text = match meta.floor {
            Some(floor) => format!("{} {floor}\n", meta.version),
            None => format!("{}\n", meta.version),
        };
        replace(&self.meta, &text)
    }

    fn write_record(&self, version: u64, value: &str) -> Result<(), StoreError> {
        replace(&self.record, &format!("{version}\n{value}"))
    }

    /// Writes `record` at the next version, raising the floor to its token.
    fn write(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let mut meta = self.read_meta()?;
        meta.version += 1;
        meta.floor = meta.floor.max(Some(record.leader_transitions));
        // The meta file first: a crash between the two writes leaves a
        // version and a floor that were never used, never a reused one.
        self.write_meta(meta)?;
        self.write_record(meta.version, &record::to_json(record))?;
        Ok(Version::from(meta.version))
    }
}

#[async_trait]
impl LockStore for FileStore {
    async fn get(&self) -> Result<Option<Versioned>, StoreError> {
        self.blocking(|p| {
            let _guard = p.lock(libc::LOCK_SH)?;
            p.current()
        })
        .await
    }

    async fn create(&self, record: &LeaderRecord) -> Result<Version, StoreError> {
        let record = record.clone();
        self.blocking(move |p| {
            let _guard = p.lock(libc::LOCK_EX)?;
            if p.read_record()?.is_some() {
                // What is there stays, readable or not.
                let current = p.current().ok().flatten().map(Box::new);
                return Err(StoreError::Conflict { current });
            }
            p.write(&record)
        })
        .await
    }

    async fn update(
        &self,
        record: &LeaderRecord,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let (record, expected) = (record.clone(), expected.clone());
        self.blocking(move |p| {
            let _guard = p.lock(libc::LOCK_EX)?;
            // Never overwrite what we cannot read: a foreign value is Corrupt.
            match p.current()? {
                Some(c) if c.version == expected => p.write(&record),
                current => Err(StoreError::Conflict {
                    current: current.map(Box::new),
                }),
            }
        })
        .await
    }

    async fn token_floor(&self) -> Result<Option<u64>, StoreError> {
        self.blocking(|p| {
            let _guard = p.lock(libc::LOCK_SH)?;
            Ok(p.read_meta()?.floor)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("file lock {:?} ({})", self.paths.name, self.paths.record.display())
    }
}

/// The version line and the value after it.
fn split(raw: &str) -> Result<(u64, &str), StoreError> {
    raw.split_once('\n')
        .and_then(|(v, rest)| Some((v.parse().ok()?, rest)))
        .ok_or_else(|| StoreError::corrupt("the lock file has no version line"))
}

/// Replaces `path` with `text` atomically (a temporary file renamed over it).
fn replace(path: &Path, text: &str) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error("write", e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("rename", e))
}

/// A file system error: transient as far as the elector can tell.
fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("file store: {what}: {e}"),
        source: Some(Arc::new(e)),
    }
}
