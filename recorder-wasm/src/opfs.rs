//! Journal storage in the Origin Private File System (see [`crate::journal`] for the layout).
//!
//! Every OPFS entry point is feature-checked first: calling a missing method through
//! web-sys would throw past Rust, and an insecure context or an old browser simply has no
//! journal (the recorder then uploads without one and says so through `onError`).

use js_sys::{Uint8Array, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemRemoveOptions, FileSystemWritableFileStream,
};

use crate::error::{js_message, RecorderError};
use crate::journal::{
    chunk_file_name, parse_chunk_file_name, Manifest, JOURNAL_DIR, MANIFEST_FILE,
};

fn journal_error(err: JsValue) -> RecorderError {
    RecorderError::Journal(js_message(&err))
}

fn has_method(object: &JsValue, name: &str) -> bool {
    js_sys::Reflect::get(object, &name.into())
        .map(|f| f.is_function())
        .unwrap_or(false)
}

async fn resolve(promise: js_sys::Promise) -> Result<JsValue, RecorderError> {
    JsFuture::from(promise).await.map_err(journal_error)
}

/// `livekeep-journal/` in OPFS, created if missing.
async fn journal_root() -> Result<FileSystemDirectoryHandle, RecorderError> {
    let window = web_sys::window().ok_or_else(|| RecorderError::Journal("no window".into()))?;
    let storage =
        js_sys::Reflect::get(&window.navigator(), &"storage".into()).unwrap_or(JsValue::UNDEFINED);
    if !has_method(&storage, "getDirectory") {
        return Err(RecorderError::Journal(
            "this browser has no Origin Private File System".into(),
        ));
    }
    let storage: web_sys::StorageManager = storage.unchecked_into();
    let root: FileSystemDirectoryHandle = resolve(storage.get_directory()).await?.unchecked_into();
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    Ok(
        resolve(root.get_directory_handle_with_options(JOURNAL_DIR, &options))
            .await?
            .unchecked_into(),
    )
}

async fn write_file(
    dir: &FileSystemDirectoryHandle,
    name: &str,
    bytes: &[u8],
) -> Result<(), RecorderError> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(true);
    let file: FileSystemFileHandle = resolve(dir.get_file_handle_with_options(name, &options))
        .await?
        .unchecked_into();
    if !has_method(&file, "createWritable") {
        return Err(RecorderError::Journal(
            "this browser cannot write OPFS files from a page".into(),
        ));
    }
    // `createWritable` writes to a swap file that `close` commits at once: a reader sees the
    // whole old file or the whole new one, never a torn write.
    let writable: FileSystemWritableFileStream =
        resolve(file.create_writable()).await?.unchecked_into();
    resolve(writable.write_with_u8_array(bytes).map_err(journal_error)?).await?;
    resolve(writable.close()).await?;
    Ok(())
}

async fn read_file(dir: &FileSystemDirectoryHandle, name: &str) -> Result<Vec<u8>, RecorderError> {
    let file: FileSystemFileHandle = resolve(dir.get_file_handle(name)).await?.unchecked_into();
    let blob: web_sys::Blob = resolve(file.get_file()).await?.unchecked_into();
    let buffer = resolve(blob.array_buffer()).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Every entry name of a directory.
async fn entry_names(dir: &FileSystemDirectoryHandle) -> Result<Vec<String>, RecorderError> {
    let iterator = dir.keys();
    let mut names = Vec::new();
    loop {
        let next = resolve(iterator.next().map_err(journal_error)?).await?;
        let done = js_sys::Reflect::get(&next, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        if done {
            return Ok(names);
        }
        if let Some(name) = js_sys::Reflect::get(&next, &"value".into())
            .ok()
            .and_then(|v| v.as_string())
        {
            names.push(name);
        }
    }
}

/// The journal of one live in OPFS.
pub struct OpfsJournal {
    dir: FileSystemDirectoryHandle,
    name: String,
}

impl OpfsJournal {
    /// Creates the journal of a new live and writes its first manifest.
    pub async fn create(manifest: &Manifest) -> Result<Self, RecorderError> {
        let root = journal_root().await?;
        let name = manifest.live_id.to_string();
        let options = FileSystemGetDirectoryOptions::new();
        options.set_create(true);
        let dir = resolve(root.get_directory_handle_with_options(&name, &options))
            .await?
            .unchecked_into();
        let journal = Self { dir, name };
        journal.write_manifest(manifest).await?;
        Ok(journal)
    }

    /// Every journal left by an earlier page, with its manifest. Damaged ones are skipped.
    pub async fn pending() -> Result<Vec<(Self, Manifest)>, RecorderError> {
        let root = journal_root().await?;
        let mut found = Vec::new();
        for name in entry_names(&root).await? {
            let Ok(dir) = resolve(root.get_directory_handle(&name)).await else {
                continue;
            };
            let dir: FileSystemDirectoryHandle = dir.unchecked_into();
            let Ok(bytes) = read_file(&dir, MANIFEST_FILE).await else {
                continue;
            };
            let manifest = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| JSON::parse(text).ok())
                .and_then(|json| serde_wasm_bindgen::from_value::<Manifest>(json).ok())
                .filter(|m| m.version == Manifest::VERSION);
            if let Some(manifest) = manifest {
                found.push((Self { dir, name }, manifest));
            }
        }
        Ok(found)
    }

    /// Writes the chunk starting at `offset`.
    pub async fn write_chunk(&self, offset: u64, bytes: &[u8]) -> Result<(), RecorderError> {
        write_file(&self.dir, &chunk_file_name(offset), bytes).await?;
        Ok(())
    }

    /// Replaces the manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), RecorderError> {
        let value = serde_wasm_bindgen::to_value(manifest)
            .map_err(|e| RecorderError::Journal(e.to_string()))?;
        let text: String = JSON::stringify(&value).map_err(journal_error)?.into();
        write_file(&self.dir, MANIFEST_FILE, text.as_bytes()).await
    }

    /// Deletes the chunk file starting at `offset`.
    pub async fn delete_chunk(&self, offset: u64) -> Result<(), RecorderError> {
        resolve(self.dir.remove_entry(&chunk_file_name(offset)))
            .await
            .map(drop)
    }

    /// Every chunk file, as (offset, bytes).
    pub async fn read_chunks(&self) -> Result<Vec<(u64, Vec<u8>)>, RecorderError> {
        let mut chunks = Vec::new();
        for name in entry_names(&self.dir).await? {
            if let Some(offset) = parse_chunk_file_name(&name) {
                chunks.push((offset, read_file(&self.dir, &name).await?));
            }
        }
        Ok(chunks)
    }

    /// Deletes the whole journal of this live: the server has everything.
    pub async fn remove(&self) -> Result<(), RecorderError> {
        let root = journal_root().await?;
        let options = FileSystemRemoveOptions::new();
        options.set_recursive(true);
        resolve(root.remove_entry_with_options(&self.name, &options))
            .await
            .map(drop)
    }

    /// The live id this journal belongs to (its directory name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Names of the journals on this origin (for tests and diagnostics).
pub async fn journal_names() -> Result<Vec<String>, RecorderError> {
    entry_names(&journal_root().await?).await
}
