//! Journal storage in IndexedDB, for browsers whose pages cannot write OPFS files (see
//! [`crate::journal`] for what is stored). Two object stores: `manifests` keyed by live id,
//! `chunks` keyed by `[live_id, offset]` so one key range holds a live's chunks in order.
//! Every write waits for its transaction's `complete`, the point where IndexedDB has it.

use gloo_events::EventListener;
use js_sys::{Array, Uint8Array, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::error::{js_message, RecorderError};
use crate::journal::{Manifest, JOURNAL_DIR};

const MANIFESTS: &str = "manifests";
const CHUNKS: &str = "chunks";

fn journal_error(err: JsValue) -> RecorderError {
    RecorderError::Journal(js_message(&err))
}

/// Resolves with the request's result once it succeeds.
async fn request(req: &IdbRequest) -> Result<JsValue, RecorderError> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result().map_err(journal_error),
        Err(_) => Err(request_error(req)),
    }
}

fn request_error(req: &IdbRequest) -> RecorderError {
    match req.error() {
        Ok(Some(err)) => RecorderError::Journal(err.message()),
        _ => RecorderError::Journal("an IndexedDB request failed".into()),
    }
}

/// Resolves once the transaction committed.
async fn committed(tx: &IdbTransaction) -> Result<(), RecorderError> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onerror(Some(&reject));
        tx.set_onabort(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    tx.set_oncomplete(None);
    tx.set_onerror(None);
    tx.set_onabort(None);
    outcome
        .map(drop)
        .map_err(|_| RecorderError::Journal("an IndexedDB transaction failed".into()))
}

async fn open_db() -> Result<IdbDatabase, RecorderError> {
    let window = web_sys::window().ok_or_else(|| RecorderError::Journal("no window".into()))?;
    let factory = window
        .indexed_db()
        .ok()
        .flatten()
        .ok_or_else(|| RecorderError::Journal("this browser has no IndexedDB".into()))?;
    let open = factory
        .open_with_u32(JOURNAL_DIR, 1)
        .map_err(journal_error)?;
    let upgrade = {
        let open = open.clone();
        EventListener::once(&open.clone(), "upgradeneeded", move |_| {
            if let Ok(db) = open.result() {
                let db: IdbDatabase = db.unchecked_into();
                for store in [MANIFESTS, CHUNKS] {
                    if !db.object_store_names().contains(store) {
                        // A failure aborts the upgrade, and `open` reports it.
                        let _ = db.create_object_store(store);
                    }
                }
            }
        })
    };
    let db = request(&open).await?;
    drop(upgrade);
    Ok(db.unchecked_into())
}

fn store(
    db: &IdbDatabase,
    stores: &[&str],
    name: &str,
    mode: IdbTransactionMode,
) -> Result<(IdbTransaction, IdbObjectStore), RecorderError> {
    let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
    let tx = db
        .transaction_with_str_sequence_and_mode(&names, mode)
        .map_err(journal_error)?;
    let store = tx.object_store(name).map_err(journal_error)?;
    Ok((tx, store))
}

fn chunk_key(live_id: u64, offset: u64) -> JsValue {
    Array::of2(&(live_id as f64).into(), &(offset as f64).into()).into()
}

fn live_range(live_id: u64) -> Result<IdbKeyRange, RecorderError> {
    IdbKeyRange::bound(
        &chunk_key(live_id, 0),
        &Array::of2(&(live_id as f64).into(), &f64::INFINITY.into()),
    )
    .map_err(journal_error)
}

/// The journal of one live in IndexedDB.
pub struct IdbJournal {
    db: IdbDatabase,
    live_id: u64,
}

impl IdbJournal {
    /// Creates the journal of a new live and writes its first manifest.
    pub async fn create(manifest: &Manifest) -> Result<Self, RecorderError> {
        let journal = Self {
            db: open_db().await?,
            live_id: manifest.live_id,
        };
        journal.write_manifest(manifest).await?;
        Ok(journal)
    }

    /// Every journal left by an earlier page, with its manifest. Damaged ones are skipped.
    pub async fn pending() -> Result<Vec<(Self, Manifest)>, RecorderError> {
        let db = open_db().await?;
        let (_tx, manifests) = store(&db, &[MANIFESTS], MANIFESTS, IdbTransactionMode::Readonly)?;
        let all: Array = request(&manifests.get_all().map_err(journal_error)?)
            .await?
            .unchecked_into();
        let mut found = Vec::new();
        for text in all.iter() {
            let manifest = text
                .as_string()
                .and_then(|text| JSON::parse(&text).ok())
                .and_then(|json| serde_wasm_bindgen::from_value::<Manifest>(json).ok())
                .filter(|m| m.version == Manifest::VERSION);
            if let Some(manifest) = manifest {
                let journal = Self {
                    db: db.clone(),
                    live_id: manifest.live_id,
                };
                found.push((journal, manifest));
            }
        }
        Ok(found)
    }

    /// Writes the chunk starting at `offset`.
    pub async fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), RecorderError> {
        let (tx, chunks) = store(&self.db, &[CHUNKS], CHUNKS, IdbTransactionMode::Readwrite)?;
        chunks
            .put_with_key(&Uint8Array::from(bytes), &chunk_key(self.live_id, offset))
            .map_err(journal_error)?;
        committed(&tx).await?;
        Ok(())
    }

    /// Replaces the manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), RecorderError> {
        let value = serde_wasm_bindgen::to_value(manifest)
            .map_err(|e| RecorderError::Journal(e.to_string()))?;
        let text = JSON::stringify(&value).map_err(journal_error)?;
        let (tx, manifests) = store(
            &self.db,
            &[MANIFESTS],
            MANIFESTS,
            IdbTransactionMode::Readwrite,
        )?;
        manifests
            .put_with_key(&text, &(self.live_id as f64).into())
            .map_err(journal_error)?;
        committed(&tx).await
    }

    /// Deletes the chunk starting at `offset`.
    pub async fn delete_chunk(&self, offset: u64) -> Result<(), RecorderError> {
        let (tx, chunks) = store(&self.db, &[CHUNKS], CHUNKS, IdbTransactionMode::Readwrite)?;
        chunks
            .delete(&chunk_key(self.live_id, offset))
            .map_err(journal_error)?;
        committed(&tx).await
    }

    /// Every chunk, as (offset, bytes).
    pub async fn read_chunks(&self) -> Result<Vec<(u64, Vec<u8>)>, RecorderError> {
        let (_tx, chunks) = store(&self.db, &[CHUNKS], CHUNKS, IdbTransactionMode::Readonly)?;
        let range = live_range(self.live_id)?;
        let keys = chunks
            .get_all_keys_with_key(&range)
            .map_err(journal_error)?;
        let values = chunks.get_all_with_key(&range).map_err(journal_error)?;
        let keys: Array = request(&keys).await?.unchecked_into();
        let values: Array = request(&values).await?.unchecked_into();
        let mut found = Vec::new();
        for (key, value) in keys.iter().zip(values.iter()) {
            let offset = Array::from(&key).get(1).as_f64().unwrap_or(-1.0);
            if let (true, Some(bytes)) = (offset >= 0.0, value.dyn_ref::<Uint8Array>()) {
                found.push((offset as u64, bytes.to_vec()));
            }
        }
        Ok(found)
    }

    /// Deletes the whole journal of this live: the server has everything.
    pub async fn remove(&self) -> Result<(), RecorderError> {
        let (tx, manifests) = store(
            &self.db,
            &[MANIFESTS, CHUNKS],
            MANIFESTS,
            IdbTransactionMode::Readwrite,
        )?;
        manifests
            .delete(&(self.live_id as f64).into())
            .map_err(journal_error)?;
        let chunks = tx.object_store(CHUNKS).map_err(journal_error)?;
        chunks
            .delete(live_range(self.live_id)?.as_ref())
            .map_err(journal_error)?;
        committed(&tx).await
    }
}
