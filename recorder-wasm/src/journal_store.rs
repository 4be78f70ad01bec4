//! Where the journal lives: OPFS when the page can write files there, IndexedDB otherwise.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::error::RecorderError;
use crate::idb::IdbJournal;
use crate::journal::Manifest;
use crate::opfs::OpfsJournal;
use crate::options::JournalKind;

/// The journal of one live, in one of the two stores.
pub struct JournalStore {
    backend: Backend,
    /// Chunks written by this page and not deleted yet: (offset, length), in order.
    written: RefCell<VecDeque<(u64, u64)>>,
}

enum Backend {
    Opfs(OpfsJournal),
    IndexedDb(IdbJournal),
}

macro_rules! each {
    ($self:ident, $journal:ident => $call:expr) => {
        match &$self.backend {
            Backend::Opfs($journal) => $call,
            Backend::IndexedDb($journal) => $call,
        }
    };
}

impl JournalStore {
    /// Creates the journal of a new live in the store `kind` asks for (`Auto`: OPFS, else
    /// IndexedDB); `Ok(None)` when the journal is off.
    pub async fn create(
        kind: JournalKind,
        manifest: &Manifest,
    ) -> Result<Option<Self>, RecorderError> {
        let backend = match kind {
            JournalKind::Off => return Ok(None),
            JournalKind::Opfs => Backend::Opfs(OpfsJournal::create(manifest).await?),
            JournalKind::IndexedDb => Backend::IndexedDb(IdbJournal::create(manifest).await?),
            JournalKind::Auto => match OpfsJournal::create(manifest).await {
                Ok(journal) => Backend::Opfs(journal),
                Err(_) => Backend::IndexedDb(IdbJournal::create(manifest).await?),
            },
        };
        Ok(Some(Self::over(backend)))
    }

    fn over(backend: Backend) -> Self {
        Self {
            backend,
            written: RefCell::new(VecDeque::new()),
        }
    }

    /// Every journal left in either store. A store this browser lacks simply has none.
    pub async fn pending() -> Vec<(Self, Manifest)> {
        let mut found: Vec<(Self, Manifest)> = Vec::new();
        if let Ok(journals) = OpfsJournal::pending().await {
            found.extend(
                journals
                    .into_iter()
                    .map(|(j, m)| (Self::over(Backend::Opfs(j)), m)),
            );
        }
        if let Ok(journals) = IdbJournal::pending().await {
            found.extend(
                journals
                    .into_iter()
                    .map(|(j, m)| (Self::over(Backend::IndexedDb(j)), m)),
            );
        }
        found
    }

    /// Which store holds this journal.
    pub fn kind(&self) -> JournalKind {
        match self.backend {
            Backend::Opfs(_) => JournalKind::Opfs,
            Backend::IndexedDb(_) => JournalKind::IndexedDb,
        }
    }

    /// Writes the chunk starting at `offset`.
    pub async fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), RecorderError> {
        each!(self, j => j.write_chunk(offset, bytes).await)?;
        self.written
            .borrow_mut()
            .push_back((offset, bytes.len() as u64));
        Ok(())
    }

    /// Replaces the manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), RecorderError> {
        each!(self, j => j.write_manifest(manifest).await)
    }

    /// Deletes the chunks this page wrote that end at or below `acked` (call it only after
    /// a manifest with that `acked` is written).
    pub async fn forget_below(&self, acked: u64) -> Result<(), RecorderError> {
        loop {
            let front = self.written.borrow().front().copied();
            match front {
                Some((offset, len)) if offset + len <= acked => {
                    self.delete_chunk(offset).await?;
                    self.written.borrow_mut().pop_front();
                }
                _ => return Ok(()),
            }
        }
    }

    /// Deletes the chunk starting at `offset`.
    pub async fn delete_chunk(&self, offset: u64) -> Result<(), RecorderError> {
        each!(self, j => j.delete_chunk(offset).await)
    }

    /// Every chunk, as (offset, bytes).
    pub async fn read_chunks(&self) -> Result<Vec<(u64, Vec<u8>)>, RecorderError> {
        each!(self, j => j.read_chunks().await)
    }

    /// Deletes the whole journal of this live.
    pub async fn remove(&self) -> Result<(), RecorderError> {
        each!(self, j => j.remove().await)
    }
}
