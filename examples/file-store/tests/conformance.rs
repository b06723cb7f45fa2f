//! The whole conformance suite on [`FileStore`], through the published
//! `tenure-conformance`: the scenarios every store must pass, plus the
//! token floor's (this store keeps one). No watch: candidates poll.

use std::sync::Arc;

use tenure_conformance::{FaultSwitch, FaultyStore, StoreFactory, switch_of};
use tenure_core::{LockStore, StoreError, async_trait};
use tenure_file_store::FileStore;

/// Every lock of a test in one fresh directory, removed after the test.
struct FileFactory {
    dir: tempfile::TempDir,
}

async fn factory() -> FileFactory {
    FileFactory {
        dir: tempfile::tempdir().expect("a temporary directory"),
    }
}

impl FileFactory {
    fn store(&self, lock: &str) -> FileStore {
        FileStore::open(self.dir.path(), lock).expect("a valid lock name")
    }
}

#[async_trait]
impl StoreFactory for FileFactory {
    async fn open(&self, lock: &str) -> Result<Arc<dyn LockStore>, StoreError> {
        Ok(Arc::new(FileStore::open(self.dir.path(), lock)?))
    }

    /// An in-process store has no connection to cut: the suite's
    /// [`FaultyStore`] wraps it and fails, hangs or slows its calls.
    async fn open_faulty(
        &self,
        lock: &str,
    ) -> Result<(Arc<dyn LockStore>, Arc<dyn FaultSwitch>), StoreError> {
        let store = FaultyStore::new(self.open(lock).await?);
        let switch = switch_of(&store);
        Ok((store, switch))
    }

    async fn put_raw(&self, lock: &str, raw: &str) {
        self.store(lock).write_raw(raw).expect("write raw");
    }

    async fn get_raw(&self, lock: &str) -> Option<String> {
        let raw = self.store(lock).read_raw().expect("read raw")?;
        Some(raw.split_once('\n').map_or(raw.clone(), |(_, v)| v.to_owned()))
    }

    async fn delete(&self, lock: &str) {
        self.store(lock).delete().expect("delete");
    }

    async fn touch(&self, lock: &str) {
        self.store(lock).touch().expect("touch");
    }

    fn supports_watch(&self) -> bool {
        false
    }
}

tenure_conformance::conformance_tests!(factory);
