//! The object-store backend against real servers, S3 (moto) and Azure Blob Storage (Azurite):
//! pieces, compaction at the part size, garbage past the committed offset, ranged reads across
//! object boundaries, streamed media, and the HTTP answers served from it. Each test is written
//! once and runs on every backend, as `on_s3::<test>` and `on_azure::<test>`.

use std::{
    io::{Read, Seek, SeekFrom, Write},
    sync::Arc,
};

use futures_util::TryStreamExt;
use livekeep_server::{
    domain::UploadId,
    storage::{self, Storage},
};
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt, PutPayload};
use reqwest::{Method, StatusCode};

use crate::helpers::{fixture, spawn_app_with, TestApp};

/// Part size of these tests: small, so compaction happens after a few pieces.
const PART: u64 = 1000;

/// An object store the tests run on, a real server on loopback started once per test binary.
#[derive(Debug, Clone, Copy)]
enum Backend {
    S3,
    #[cfg(feature = "azure")]
    Azure,
}

impl Backend {
    /// A fresh, empty bucket or container: its `scheme://name` URL, and a raw client on it.
    async fn fresh_store(self) -> (String, Arc<dyn ObjectStore>) {
        // The raw client may be built before any storage, which installs this otherwise:
        // reqwest has no default TLS provider here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        match self {
            Backend::S3 => {
                let moto = crate::s3::moto();
                let bucket = moto.bucket().await;
                (format!("s3://{bucket}"), moto.client(&bucket))
            }
            #[cfg(feature = "azure")]
            Backend::Azure => {
                let azurite = crate::azure::azurite();
                let container = azurite.container().await;
                (format!("az://{container}"), azurite.client(&container))
            }
        }
    }
}

/// Each test below as `on_s3::<test>` and `on_azure::<test>`, the body taking the backend.
/// A body left out of the list is dead code, which clippy refuses.
macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        mod on_s3 {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::S3).await
                }
            )*
        }
        #[cfg(feature = "azure")]
        mod on_azure {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Azure).await
                }
            )*
        }
    };
}

on_each_backend!(
    each_patch_is_one_piece_and_committed_pieces_are_compacted_into_parts,
    a_reader_opened_before_a_compaction_still_reads_the_bytes,
    compaction_leaves_alone_what_reaches_past_the_committed_offset,
    objects_past_the_committed_offset_are_garbage_and_leftover_pieces_are_removed,
    a_media_is_streamed_in_parts_of_at_least_5_mib_and_exists_only_once_committed,
    a_live_recorded_on_an_object_store_is_finalized_and_served_with_ranges,
);

struct Fixture {
    storage: Arc<dyn Storage>,
    /// A client on the whole bucket or container: keys include the storage's `lk/` prefix.
    raw: Arc<dyn ObjectStore>,
}

async fn object_storage(backend: Backend, part_size: u64) -> Fixture {
    let (url, raw) = backend.fresh_store().await;
    let storage = storage::open(&format!("{url}/lk"), part_size)
        .unwrap_or_else(|err| panic!("opening {url}/lk: {err}"));
    Fixture {
        storage: Arc::from(storage),
        raw,
    }
}

impl Fixture {
    /// Runs storage calls on a blocking thread, as the server does.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Storage) -> T + Send + 'static,
    ) -> T {
        let storage = Arc::clone(&self.storage);
        tokio::task::spawn_blocking(move || op(storage.as_ref()))
            .await
            .expect("storage task")
    }

    /// Appends `bytes` at `offset` as one PATCH would (one piece).
    async fn append(&self, id: &UploadId, offset: u64, bytes: Vec<u8>) {
        let id = id.clone();
        self.run(move |s| {
            let mut writer = s.upload_writer(&id, offset).expect("writer");
            writer.write(&bytes).expect("write");
            writer.sync().expect("sync");
        })
        .await;
    }

    /// Compacts what lies below `committed`, as the server does in the background after a
    /// commit.
    async fn compact(&self, id: &UploadId, committed: u64) {
        let id = id.clone();
        self.run(move |s| s.compact_upload(&id, committed).expect("compact"))
            .await;
    }

    /// The names of an upload's objects, as `start-end` pairs.
    async fn objects(&self, id: &UploadId) -> Vec<(u64, u64)> {
        let prefix = ObjectPath::from(format!("lk/uploads/{id}"));
        let listed: Vec<_> = self
            .raw
            .list(Some(&prefix))
            .try_collect()
            .await
            .expect("list");
        let mut names: Vec<(u64, u64)> = listed
            .iter()
            .map(|meta| {
                let name = meta.location.filename().expect("a name");
                let (start, end) = name.split_once('-').expect("start-end");
                (start.parse().expect("start"), end.parse().expect("end"))
            })
            .collect();
        names.sort();
        names
    }

    /// Puts an object by hand, as a crashed writer would have left it.
    async fn put_raw(&self, id: &UploadId, start: u64, bytes: Vec<u8>) {
        let end = start + bytes.len() as u64;
        let location = ObjectPath::from(format!("lk/uploads/{id}/{start:020}-{end:020}"));
        self.raw
            .put(&location, PutPayload::from(bytes))
            .await
            .expect("put");
    }

    /// Reads `len` bytes at `pos` through `open_upload`.
    async fn read_at(&self, id: &UploadId, pos: u64, len: usize) -> Vec<u8> {
        let id = id.clone();
        self.run(move |s| {
            let mut reader = s.open_upload(&id).expect("open");
            reader.seek(SeekFrom::Start(pos)).expect("seek");
            let mut bytes = vec![0; len];
            reader.read_exact(&mut bytes).expect("read");
            bytes
        })
        .await
    }

    async fn upload_len(&self, id: &UploadId) -> Option<u64> {
        let id = id.clone();
        self.run(move |s| s.upload_len(&id).expect("len")).await
    }
}

/// Bytes that differ at every offset, so a misplaced read shows.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

async fn each_patch_is_one_piece_and_committed_pieces_are_compacted_into_parts(backend: Backend) {
    let fx = object_storage(backend, PART).await;
    let id = UploadId::generate();
    let mut all = Vec::new();
    for (n, offset) in [0u64, 400, 800].into_iter().enumerate() {
        let bytes = pattern(400, n);
        all.extend_from_slice(&bytes);
        fx.append(&id, offset, bytes).await;
    }
    assert_eq!(fx.objects(&id).await, [(0, 400), (400, 800), (800, 1200)]);
    assert_eq!(fx.upload_len(&id).await, Some(1200));
    // A read across piece boundaries, before compaction.
    assert_eq!(fx.read_at(&id, 390, 420).await, all[390..810]);

    // 1200 committed bytes in small pieces: compaction makes them one part.
    fx.compact(&id, 1200).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200)]);
    let tail = pattern(100, 9);
    all.extend_from_slice(&tail);
    fx.append(&id, 1200, tail).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200), (1200, 1300)]);
    assert_eq!(fx.upload_len(&id).await, Some(1300));
    // Across the part / piece boundary, and the whole upload read sequentially.
    assert_eq!(fx.read_at(&id, 1150, 120).await, all[1150..1270]);
    assert_eq!(fx.read_at(&id, 0, 1300).await, all);

    // A writer at any other offset than the held length is refused.
    let other = id.clone();
    let refused = fx
        .run(move |s| s.upload_writer(&other, 1000).err().map(|e| e.to_string()))
        .await;
    assert!(
        refused.is_some_and(|e| e.contains("holds 1300 bytes, expected 1000")),
        "a misplaced writer must be refused"
    );

    let doomed = id.clone();
    fx.run(move |s| s.delete_upload(&doomed).expect("delete"))
        .await;
    assert!(fx.objects(&id).await.is_empty());
}

async fn a_reader_opened_before_a_compaction_still_reads_the_bytes(backend: Backend) {
    // A viewer's stream or another node lists the pieces, then a compaction merges them away.
    let fx = object_storage(backend, PART).await;
    let id = UploadId::generate();
    let mut all = Vec::new();
    for (n, offset) in [0u64, 600].into_iter().enumerate() {
        let bytes = pattern(600, n);
        all.extend_from_slice(&bytes);
        fx.append(&id, offset, bytes).await;
    }
    let (reader_id, writer_id) = (id.clone(), id.clone());
    let read = fx
        .run(move |s| {
            let mut reader = s.open_upload(&reader_id)?;
            let mut first = vec![0; 10];
            reader.read_exact(&mut first)?;
            // Compaction: the pieces the reader listed are deleted.
            s.compact_upload(&writer_id, 1200)?;
            reader.seek(SeekFrom::Start(590))?;
            let mut across = vec![0; 20];
            reader.read_exact(&mut across)?;
            anyhow::Ok((first, across))
        })
        .await
        .expect("reads around a compaction");
    assert_eq!(fx.objects(&id).await, [(0, 1200)]);
    assert_eq!(read.0, all[..10]);
    assert_eq!(read.1, all[590..610]);
}

async fn compaction_leaves_alone_what_reaches_past_the_committed_offset(backend: Backend) {
    // It runs without the upload's lock, beside a PATCH whose piece is put but not committed.
    let fx = object_storage(backend, PART).await;
    let id = UploadId::generate();
    let mut all = Vec::new();
    for (n, offset) in [0u64, 600, 1200].into_iter().enumerate() {
        let bytes = pattern(600, n);
        all.extend_from_slice(&bytes);
        fx.append(&id, offset, bytes).await;
    }
    // 1 000 committed: the second piece straddles the offset, so no run is wholly below it.
    fx.compact(&id, 1000).await;
    assert_eq!(fx.objects(&id).await, [(0, 600), (600, 1200), (1200, 1800)]);
    // 1 200 committed, the piece past it in flight: only the committed run is merged.
    fx.compact(&id, 1200).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200), (1200, 1800)]);
    assert_eq!(fx.read_at(&id, 0, 1800).await, all);
    // Nothing to merge: nothing changes.
    fx.compact(&id, 1800).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200), (1200, 1800)]);
}

async fn objects_past_the_committed_offset_are_garbage_and_leftover_pieces_are_removed(
    backend: Backend,
) {
    let fx = object_storage(backend, PART).await;
    let id = UploadId::generate();
    let committed = pattern(1200, 1);
    fx.append(&id, 0, committed[..600].to_vec()).await;
    fx.append(&id, 600, committed[600..].to_vec()).await;
    // A crash after a piece's put, before its offset commit; another after a compaction's
    // put, before its pieces were deleted; and a stray object after a gap.
    fx.put_raw(&id, 1200, pattern(50, 2)).await;
    fx.put_raw(&id, 1300, pattern(50, 3)).await;
    fx.put_raw(&id, 0, committed.clone()).await;
    assert_eq!(
        fx.upload_len(&id).await,
        Some(1250),
        "the contiguous bytes are reported, so reconciling sees more than the committed offset"
    );
    // What tus reconciliation does with a committed offset of 1200.
    let cut = id.clone();
    fx.run(move |s| s.truncate_upload(&cut, 1200).expect("truncate"))
        .await;
    assert_eq!(fx.upload_len(&id).await, Some(1200));
    assert_eq!(fx.objects(&id).await, [(0, 600), (0, 1200), (600, 1200)]);
    // Readers tolerate the part and its pieces side by side.
    assert_eq!(fx.read_at(&id, 0, 1200).await, committed);

    // Compaction removes the pieces the part covers.
    fx.compact(&id, 1200).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200)]);
    fx.append(&id, 1200, pattern(10, 4)).await;
    assert_eq!(fx.objects(&id).await, [(0, 1200), (1200, 1210)]);

    // A lost object lowers what is held; what lay past the gap is never read again.
    let lost = ObjectPath::from(format!("lk/uploads/{id}/{:020}-{:020}", 1200, 1210));
    fx.raw.delete(&lost).await.expect("delete");
    fx.put_raw(&id, 1250, pattern(100, 6)).await;
    assert_eq!(fx.upload_len(&id).await, Some(1200));
    let resent = pattern(100, 7);
    fx.append(&id, 1200, resent.clone()).await;
    fx.append(&id, 1300, pattern(1, 8)).await;
    assert_eq!(
        fx.objects(&id).await,
        [(0, 1200), (1200, 1300), (1300, 1301)]
    );
    assert_eq!(fx.read_at(&id, 1200, 100).await, resent);

    // A cut inside an object keeps the bytes below it.
    let cut = id.clone();
    fx.run(move |s| s.truncate_upload(&cut, 1100).expect("truncate"))
        .await;
    assert_eq!(fx.objects(&id).await, [(0, 1100)]);
    assert_eq!(fx.read_at(&id, 1000, 100).await, committed[1000..1100]);
}

async fn a_media_is_streamed_in_parts_of_at_least_5_mib_and_exists_only_once_committed(
    backend: Backend,
) {
    // S3 (and moto) refuses multipart parts under 5 MiB except the last; Azure takes them as
    // the blocks of a block blob. 11 MiB makes three.
    let fx = object_storage(backend, PART).await;
    let media = pattern(11 << 20, 5);
    let written = media.clone();
    fx.run(move |s| {
        let mut writer = s.media_writer("00000000000000000000000000000001.webm")?;
        for chunk in written.chunks(1 << 20) {
            writer.write_all(chunk)?;
        }
        assert!(
            s.open_media("00000000000000000000000000000001.webm")?
                .is_none(),
            "no object before the commit"
        );
        writer.commit()?;
        anyhow::Ok(())
    })
    .await
    .expect("media written");
    let (listed, read) = fx
        .run(|s| {
            let listed = s.list_media()?;
            let mut reader = s
                .open_media("00000000000000000000000000000001.webm")?
                .expect("committed");
            reader.seek(SeekFrom::Start(5 << 20))?;
            let mut read = Vec::new();
            reader.read_to_end(&mut read)?;
            anyhow::Ok((listed, read))
        })
        .await
        .expect("media read");
    assert_eq!(listed, ["00000000000000000000000000000001.webm"]);
    assert_eq!(read, media[5 << 20..]);

    // Dropped before its commit (a failed finalize): nothing appears.
    fx.run(|s| {
        let mut writer = s.media_writer("00000000000000000000000000000002.webm")?;
        writer.write_all(&[1; 4096])?;
        drop(writer);
        assert_eq!(s.list_media()?.len(), 1);
        assert!(s.list_staged()?.is_empty());
        s.check()?;
        anyhow::Ok(())
    })
    .await
    .expect("dropped writer");
}

/// The app on a fresh bucket or container, whatever `LIVEKEEP_TEST_STORAGE` says, with a part
/// size small enough for the fixture's PATCHes to be compacted.
async fn object_store_app(backend: Backend) -> (TestApp, Arc<dyn ObjectStore>) {
    let (url, raw) = backend.fresh_store().await;
    let app = spawn_app_with(|config| {
        config.storage_url = Some(format!("{url}/media"));
        config.storage_part_size = livekeep_server::domain::ByteSize(10_000);
    })
    .await;
    (app, raw)
}

async fn a_live_recorded_on_an_object_store_is_finalized_and_served_with_ranges(backend: Backend) {
    let (app, raw) = object_store_app(backend).await;
    let user = app.user().await;
    let live = app.start_live(&user, &format!("on {backend:?}")).await;
    let bytes = fixture();
    // Small PATCHes, as a recorder sends them.
    let mut offset = 0;
    for chunk in bytes.chunks(bytes.len() / 5 + 1) {
        let response = app
            .patch(&user.token, &live.upload_url, offset, chunk)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len() as u64;
    }
    let id = crate::helpers::upload_id(&live.upload_url);
    let prefix = ObjectPath::from(format!("media/uploads/{id}"));
    // Compaction runs in the background after the commits: wait for it to have put a part and
    // deleted the pieces it covers (between the two, objects overlap).
    let compacted = |sizes: &[u64]| {
        sizes.len() < 5
            && sizes.iter().any(|&size| size >= 10_000)
            && sizes.iter().sum::<u64>() == bytes.len() as u64
    };
    let started = std::time::Instant::now();
    let sizes = loop {
        let listed: Vec<_> = raw.list(Some(&prefix)).try_collect().await.expect("list");
        let sizes: Vec<u64> = listed.iter().map(|meta| meta.size).collect();
        if compacted(&sizes) || started.elapsed() > crate::helpers::EVENT_WAIT {
            break sizes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        compacted(&sizes),
        "five PATCHes of {} bytes, compacted into parts of at least 10 000 bytes: {sizes:?}",
        bytes.len()
    );
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let body: serde_json::Value = stopped.json().await.expect("JSON");
    let media_id = body["media_files"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a media id in {body}"));
    let path = format!("/media/{media_id}");

    let whole = app
        .request(Method::GET, &path, None)
        .send()
        .await
        .expect("GET");
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let etag = whole.headers()["etag"].clone();
    let whole = whole.bytes().await.expect("body");
    assert!(whole.len() > 1000);

    let ranged = app
        .request(Method::GET, &path, None)
        .header("Range", "bytes=100-1099")
        .send()
        .await
        .expect("GET range");
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 100-1099/{}", whole.len()).as_str()
    );
    assert_eq!(ranged.headers()["etag"], etag);
    assert_eq!(ranged.bytes().await.expect("body"), whole[100..1100]);

    let past_the_end = app
        .request(Method::GET, &path, None)
        .header("Range", format!("bytes={}-", whole.len()))
        .send()
        .await
        .expect("GET past the end");
    assert_eq!(past_the_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past_the_end.headers()["content-range"],
        format!("bytes */{}", whole.len()).as_str()
    );
    // The upload's objects are gone once the media is committed.
    let left: Vec<_> = raw.list(Some(&prefix)).try_collect().await.expect("list");
    assert!(left.is_empty(), "{left:?}");
}
