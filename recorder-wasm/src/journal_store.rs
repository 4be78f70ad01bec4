//! Where the journal lives: OPFS when the page can write files there, IndexedDB otherwise.

use crate::error::RecorderError;
use crate::idb::IdbJournal;
use crate::journal::Manifest;
use crate::opfs::OpfsJournal;
use crate::options::JournalKind;

/// The journal of one live, in one of the two stores.
pub enum JournalStore {
    /// Origin Private File System.
    Opfs(OpfsJournal),
    /// IndexedDB.
    IndexedDb(IdbJournal),
}

macro_rules! each {
    ($self:ident, $journal:ident => $call:expr) => {
        match $self {
            JournalStore::Opfs($journal) => $call,
            JournalStore::IndexedDb($journal) => $call,
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
        match kind {
            JournalKind::Off => Ok(None),
            JournalKind::Opfs => Ok(Some(Self::Opfs(OpfsJournal::create(manifest).await?))),
            JournalKind::IndexedDb => {
                Ok(Some(Self::IndexedDb(IdbJournal::create(manifest).await?)))
            }
            JournalKind::Auto => match OpfsJournal::create(manifest).await {
                Ok(journal) => Ok(Some(Self::Opfs(journal))),
                Err(_) => Ok(Some(Self::IndexedDb(IdbJournal::create(manifest).await?))),
            },
        }
    }

    /// Every journal left in either store. A store this browser lacks simply has none.
    pub async fn pending() -> Vec<(Self, Manifest)> {
        let mut found: Vec<(Self, Manifest)> = Vec::new();
        if let Ok(journals) = OpfsJournal::pending().await {
            found.extend(journals.into_iter().map(|(j, m)| (Self::Opfs(j), m)));
        }
        if let Ok(journals) = IdbJournal::pending().await {
            found.extend(journals.into_iter().map(|(j, m)| (Self::IndexedDb(j), m)));
        }
        found
    }

    /// Writes the chunk starting at `offset`.
    pub async fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), RecorderError> {
        each!(self, j => j.write_chunk(offset, bytes).await)
    }

    /// Replaces the manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), RecorderError> {
        each!(self, j => j.write_manifest(manifest).await)
    }

    /// Deletes the chunks this page wrote that end at or below `acked`.
    pub async fn forget_below(&self, acked: u64) -> Result<(), RecorderError> {
        each!(self, j => j.forget_below(acked).await)
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
