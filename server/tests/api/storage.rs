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
    storage::{self, PreviousWriter, Stores},
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
    an_append_after_this_nodes_own_piece_lists_nothing_and_a_reconciliation_always_lists,
    an_upload_nobody_wrote_is_appended_to_without_a_listing,
    a_new_writer_lists_until_the_previous_writers_last_put_can_have_landed,
    a_media_is_streamed_in_parts_of_at_least_5_mib_and_exists_only_once_committed,
    a_live_recorded_on_an_object_store_is_finalized_and_served_with_ranges,
    a_layout_reads_as_one_file_and_is_assembled_into_one_object_of_the_same_bytes,
    a_compaction_that_ends_after_the_stop_leaves_the_recording_its_bytes,
);

struct Fixture {
    stores: Stores,
    /// A client on the whole bucket or container: keys include the storage's `lk/` prefix.
    raw: Arc<dyn ObjectStore>,
}

async fn object_storage(backend: Backend, part_size: u64) -> Fixture {
    let settings = storage::StorageSettings {
        part_size,
        ..storage::StorageSettings::default()
    };
    object_storage_with(backend, settings).await
}

async fn object_storage_with(backend: Backend, settings: storage::StorageSettings) -> Fixture {
    let (url, raw) = backend.fresh_store().await;
    let stores = storage::open(&format!("{url}/lk"), &settings)
        .unwrap_or_else(|err| panic!("opening {url}/lk: {err}"));
    Fixture { stores, raw }
}

impl Fixture {
    /// Runs storage calls on a blocking thread, as the server does.
    async fn run<T: Send + 'static>(&self, op: impl FnOnce(&Stores) -> T + Send + 'static) -> T {
        let stores = self.stores.clone();
        tokio::task::spawn_blocking(move || op(&stores))
            .await
            .expect("storage task")
    }

    /// Appends `bytes` at `offset` as one PATCH would (one piece), after reconciling the
    /// upload with `offset` as its committed offset.
    async fn append(&self, id: &UploadId, offset: u64, bytes: Vec<u8>) {
        let id = id.clone();
        self.run(move |s| {
            assert_eq!(s.uploads.reconcile(&id, offset).expect("reconcile"), offset);
            let mut writer = s.uploads.writer(&id, offset).expect("writer");
            writer.write(&bytes).expect("write");
            writer.sync().expect("sync");
        })
        .await;
    }

    /// Compacts what lies below `committed`, as the server does in the background after a
    /// commit.
    async fn compact(&self, id: &UploadId, committed: u64) {
        let id = id.clone();
        self.run(move |s| s.uploads.compact(&id, committed).expect("compact"))
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
            let mut reader = s.uploads.open(&id).expect("open");
            reader.seek(SeekFrom::Start(pos)).expect("seek");
            let mut bytes = vec![0; len];
            reader.read_exact(&mut bytes).expect("read");
            bytes
        })
        .await
    }

    async fn upload_len(&self, id: &UploadId) -> Option<u64> {
        let id = id.clone();
        self.run(move |s| s.uploads.len(&id).expect("len")).await
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

    // An offset beyond what is held (lost objects) is reported as held, nothing deleted.
    let other = id.clone();
    let held = fx
        .run(move |s| s.uploads.reconcile(&other, 1500).expect("reconcile"))
        .await;
    assert_eq!(held, 1300);
    assert_eq!(fx.objects(&id).await, [(0, 1200), (1200, 1300)]);

    let doomed = id.clone();
    fx.run(move |s| s.uploads.delete(&doomed).expect("delete"))
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
            let mut reader = s.uploads.open(&reader_id)?;
            let mut first = vec![0; 10];
            reader.read_exact(&mut first)?;
            // Compaction: the pieces the reader listed are deleted.
            s.uploads.compact(&writer_id, 1200)?;
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
    // Reconciliation with a committed offset of 1200: what lies past it goes, in one listing.
    let cut = id.clone();
    let held = fx
        .run(move |s| s.uploads.reconcile(&cut, 1200).expect("reconcile"))
        .await;
    assert_eq!(held, 1200);
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
    fx.run(move |s| s.uploads.truncate(&cut, 1100).expect("truncate"))
        .await;
    assert_eq!(fx.objects(&id).await, [(0, 1100)]);
    assert_eq!(fx.read_at(&id, 1000, 100).await, committed[1000..1100]);

    // An offset inside an object (a database restored to an earlier point than the store):
    // reconciliation keeps the committed bytes that object holds, and cuts the rest.
    let restored = id.clone();
    let held = fx
        .run(move |s| s.uploads.reconcile(&restored, 1050).expect("reconcile"))
        .await;
    assert_eq!(held, 1050);
    assert_eq!(fx.objects(&id).await, [(0, 1050)]);
    assert_eq!(fx.read_at(&id, 1000, 50).await, committed[1000..1050]);
}

/// What a PATCH does to an object store: reconcile for the append (after `previous` wrote the
/// upload), put the piece.
async fn patch(fx: &Fixture, id: &UploadId, offset: u64, bytes: Vec<u8>, previous: PreviousWriter) {
    let id = id.clone();
    fx.run(move |s| {
        let held = s
            .uploads
            .reconcile_for_append(&id, offset, previous)
            .unwrap();
        assert_eq!(held, offset);
        let mut writer = s.uploads.writer(&id, offset).unwrap();
        writer.write(&bytes).unwrap();
        writer.sync().unwrap();
    })
    .await;
}

async fn an_append_after_this_nodes_own_piece_lists_nothing_and_a_reconciliation_always_lists(
    backend: Backend,
) {
    let fx = object_storage(backend, PART).await;
    let requests = fx
        .stores
        .requests
        .clone()
        .expect("an object store counts its requests");
    let lists = || requests.get(storage::requests::Operation::List);
    let id = UploadId::generate();
    let patch = |offset, bytes| patch(&fx, &id, offset, bytes, PreviousWriter::ThisNode);
    let before = lists();
    patch(0, pattern(300, 1)).await;
    assert_eq!(
        lists() - before,
        1,
        "an upload this node knows nothing of is listed"
    );
    patch(300, pattern(300, 2)).await;
    patch(600, pattern(300, 3)).await;
    assert_eq!(lists() - before, 1, "its own pieces' ends are known");

    // Another node's put that failed past the committed offset: a HEAD's reconciliation
    // lists whatever this node knows, and removes it.
    fx.put_raw(&id, 900, pattern(50, 4)).await;
    let head = id.clone();
    let held = fx
        .run(move |s| s.uploads.reconcile(&head, 900).unwrap())
        .await;
    assert_eq!((held, lists() - before), (900, 2));
    assert_eq!(fx.objects(&id).await, [(0, 300), (300, 600), (600, 900)]);
    // An offset this node did not write (another node committed since) is listed again.
    fx.put_raw(&id, 900, pattern(100, 5)).await;
    patch(1000, pattern(10, 6)).await;
    assert_eq!(lists() - before, 3);
}

async fn an_upload_nobody_wrote_is_appended_to_without_a_listing(backend: Backend) {
    let fx = object_storage(backend, PART).await;
    let requests = fx
        .stores
        .requests
        .clone()
        .expect("an object store counts its requests");
    let lists = || requests.get(storage::requests::Operation::List);
    let id = UploadId::generate();
    let before = lists();
    let patch = |offset, bytes, previous| patch(&fx, &id, offset, bytes, previous);
    // A live's first PATCH: no node ever claimed the upload, so nothing of it is stored.
    patch(0, pattern(300, 1), PreviousWriter::Nobody).await;
    patch(300, pattern(300, 2), PreviousWriter::ThisNode).await;
    assert_eq!(lists() - before, 0);
    assert_eq!(fx.objects(&id).await, [(0, 300), (300, 600)]);
}

async fn a_new_writer_lists_until_the_previous_writers_last_put_can_have_landed(backend: Backend) {
    // A put is given twice the store timeout to land. Every request of the test is bounded by
    // it too: at 1 s, a listing from Azurite (Node, on the cores the other tests share) timed
    // out in a full run.
    let timeout = std::time::Duration::from_secs(3);
    let settings = storage::StorageSettings {
        part_size: PART,
        timeout,
    };
    let fx = object_storage_with(backend, settings).await;
    let requests = fx
        .stores
        .requests
        .clone()
        .expect("an object store counts its requests");
    let lists = || requests.get(storage::requests::Operation::List);
    let id = UploadId::generate();
    let patch = |offset, bytes, took_over: bool| {
        let previous = if took_over {
            PreviousWriter::Another
        } else {
            PreviousWriter::ThisNode
        };
        patch(&fx, &id, offset, bytes, previous)
    };
    let before = lists();
    patch(0, pattern(300, 1), false).await;
    patch(300, pattern(300, 2), false).await;
    assert_eq!(lists() - before, 1);

    // This node becomes the writer again after another node: it lists although it knows where
    // its own pieces ended, and goes on listing while that node's last put may still land.
    let claimed_at = std::time::Instant::now();
    patch(600, pattern(100, 3), true).await;
    patch(700, pattern(100, 4), false).await;
    assert_eq!(lists() - before, 3);
    // It lands late, past the committed offset, with bytes that are not the recording's.
    fx.put_raw(&id, 800, pattern(150, 5)).await;
    let settled = claimed_at + 2 * timeout + std::time::Duration::from_millis(200);
    tokio::time::sleep_until(settled.into()).await;
    patch(800, pattern(100, 6), false).await;
    assert_eq!(
        lists() - before,
        4,
        "the first listing after it can have landed"
    );
    assert_eq!(
        fx.objects(&id).await,
        [(0, 300), (300, 600), (600, 700), (700, 800), (800, 900)]
    );
    patch(900, pattern(100, 7), false).await;
    assert_eq!(lists() - before, 4, "known again");
    assert_eq!(
        fx.read_at(&id, 800, 200).await,
        [pattern(100, 6), pattern(100, 7)].concat()
    );
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
        let mut writer = s.media.writer("00000000000000000000000000000001.webm")?;
        for chunk in written.chunks(1 << 20) {
            writer.write_all(chunk)?;
        }
        assert!(
            s.media
                .open("00000000000000000000000000000001.webm")?
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
            let listed = s.media.list()?;
            let mut reader = s
                .media
                .open("00000000000000000000000000000001.webm")?
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
        let mut writer = s.media.writer("00000000000000000000000000000002.webm")?;
        writer.write_all(&[1; 4096])?;
        drop(writer);
        assert_eq!(s.media.list()?.len(), 1);
        assert!(s.media.list_staged()?.is_empty());
        s.uploads.check()?;
        s.media.check()?;
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

/// Uploads `bytes` in five small PATCHes, as a recorder sends them; returns the offset reached.
async fn patch_in_five(
    app: &TestApp,
    user: &crate::helpers::TestUser,
    live: &crate::helpers::TestLive,
    bytes: &[u8],
) -> u64 {
    let mut offset = 0;
    for chunk in bytes.chunks(bytes.len() / 5 + 1) {
        let response = app
            .patch(&user.token, &live.upload_url, offset, chunk)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len() as u64;
    }
    offset
}

async fn a_live_recorded_on_an_object_store_is_finalized_and_served_with_ranges(backend: Backend) {
    let (app, raw) = object_store_app(backend).await;
    let user = app.user().await;
    let live = app.start_live(&user, &format!("on {backend:?}")).await;
    let bytes = fixture();
    patch_in_five(&app, &user, &live, &bytes).await;
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
    // The stop stored a layout over the upload's own objects; they go once the layout is
    // assembled into one object (in the background, with server-side copies on S3), and the
    // media keeps its bytes and its ETag.
    let files = ObjectPath::from("media/files");
    let deadline = std::time::Instant::now() + crate::helpers::EVENT_WAIT;
    let (left, stored) = loop {
        let left: Vec<_> = raw.list(Some(&prefix)).try_collect().await.expect("list");
        let stored: Vec<String> = raw
            .list(Some(&files))
            .map_ok(|meta| meta.location.filename().unwrap_or_default().to_owned())
            .try_collect()
            .await
            .expect("list");
        if (left.is_empty() && stored.len() == 1) || std::time::Instant::now() > deadline {
            break (left, stored);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(stored.len(), 1, "one object: {stored:?}");
    assert!(stored[0].ends_with(".webm"), "{stored:?}");
    let again = app
        .request(Method::GET, &path, None)
        .send()
        .await
        .expect("GET");
    assert_eq!(again.headers()["etag"], etag);
    assert_eq!(again.bytes().await.expect("body"), whole);
}

/// A compaction that read the committed offset while the live recorded and put its parts
/// after the stop: the recording (a layout over the upload's objects) keeps them, is served
/// whole, and is assembled from them.
async fn a_compaction_that_ends_after_the_stop_leaves_the_recording_its_bytes(backend: Backend) {
    let (app, raw) = object_store_app(backend).await;
    let user = app.user().await;
    let live = app.start_live(&user, "compacted late").await;
    let id = crate::helpers::upload_id(&live.upload_url);
    // Held as that compaction holds it: the PATCHes' own compactions skip, the assembly waits.
    let compacting = app
        .state
        .locks
        .lock(&livekeep_server::locks::compaction_key(&id))
        .await
        .expect("the compaction lock");
    let bytes = fixture();
    let offset = patch_in_five(&app, &user, &live, &bytes).await;
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let body: serde_json::Value = stopped.json().await.expect("JSON");
    let path = format!("/media/{}", body["media_files"][0]["id"]);
    let get = || async {
        let response = app
            .request(Method::GET, &path, None)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.expect("the whole body")
    };
    let before = get().await;

    livekeep_server::uploads::compaction::compact_below(&app.state, &id, offset)
        .await
        .expect("the compaction");
    let prefix = ObjectPath::from(format!("media/uploads/{id}"));
    let listed: Vec<_> = raw.list(Some(&prefix)).try_collect().await.expect("list");
    let sizes: Vec<u64> = listed.iter().map(|meta| meta.size).collect();
    assert_eq!(sizes.iter().sum::<u64>(), offset, "{sizes:?}");
    assert!(sizes.len() < 5, "the pieces were compacted: {sizes:?}");
    assert_eq!(get().await, before);
    drop(compacting);

    app.layouts_assembled(0).await;
    assert_eq!(get().await, before);
}

async fn a_layout_reads_as_one_file_and_is_assembled_into_one_object_of_the_same_bytes(
    backend: Backend,
) {
    use livekeep_server::storage::{Piece, Source, StoredLayout};
    const MIB: u64 = 1 << 20;
    // Parts of 6 MiB: what compaction leaves can be copied part by part.
    let store = object_storage(backend, 6 * MIB).await;
    let id = UploadId::generate();
    let upload = pattern(21 * MIB as usize + 12_345, 3);
    let mut at = 0;
    for piece in upload.chunks(2 * MIB as usize) {
        store.append(&id, at, piece.to_vec()).await;
        at += piece.len() as u64;
        store.compact(&id, at).await;
    }
    let objects = store.objects(&id).await;
    assert!(
        objects.iter().filter(|(s, e)| e - s >= 5 * MIB).count() >= 2,
        "{objects:?}"
    );
    // A head, the upload from 100 with an 8-byte patch at 7 MiB, and a tail.
    let head = [pattern(3000, 9), b"PATCHED!".to_vec(), b"the tail".to_vec()].concat();
    let (from, split, end) = (100, 7 * MIB, upload.len() as u64 - 50);
    let layout = StoredLayout {
        extension: "mp4".to_owned(),
        upload: None,
        pieces: vec![
            Piece {
                source: Source::Head,
                offset: 0,
                len: 3000,
            },
            Piece {
                source: Source::Upload,
                offset: from,
                len: split - from,
            },
            Piece {
                source: Source::Head,
                offset: 3000,
                len: 8,
            },
            Piece {
                source: Source::Upload,
                offset: split + 8,
                len: end - split - 8,
            },
            Piece {
                source: Source::Head,
                offset: 3008,
                len: 8,
            },
        ],
    };
    let expected = [
        &head[..3000],
        &upload[from as usize..split as usize],
        b"PATCHED!",
        &upload[split as usize + 8..end as usize],
        b"the tail",
    ]
    .concat();
    let stem = "0123456789abcdef0123456789abcdef";
    let (id2, head2, layout2) = (id.clone(), head.clone(), layout.clone());
    let put = store
        .run(move |s| {
            s.media
                .put_layout(stem, &id2, &head2, &layout2)
                .expect("put")
        })
        .await;
    assert_eq!(put.key, format!("{stem}.layout"));
    assert!(put.holds_upload);
    let read_all = |key: String| async {
        store
            .run(move |s| {
                let mut bytes = Vec::new();
                s.media
                    .open(&key)
                    .expect("open")
                    .expect("present")
                    .read_to_end(&mut bytes)
                    .expect("read");
                bytes
            })
            .await
    };
    assert!(
        read_all(put.key.clone()).await == expected,
        "the layout reads as its pieces"
    );
    let listed = store.run(|s| s.media.list().expect("list")).await;
    assert_eq!(
        listed,
        std::slice::from_ref(&put.key),
        "the head is part of its layout"
    );
    let key = put.key.clone();
    let upload_of = store
        .run(move |s| s.media.layout_upload(&key).expect("layout"))
        .await;
    assert_eq!(upload_of, Some(id.clone()));

    let key = put.key.clone();
    let assembled = store
        .run(move |s| s.media.assemble(&key).expect("assemble"))
        .await
        .expect("an object store assembles");
    assert_eq!(assembled, format!("{stem}.mp4"));
    assert!(
        read_all(assembled.clone()).await == expected,
        "the same bytes, in one object"
    );
    let meta = store
        .raw
        .head(&ObjectPath::from(format!("lk/files/{assembled}")))
        .await
        .expect("the object");
    assert_eq!(meta.size, expected.len() as u64);
    if matches!(backend, Backend::S3) {
        // A multipart upload of several parts: the head's, then copies of the upload's objects.
        let etag = meta.e_tag.unwrap_or_default();
        let parts: usize = etag
            .trim_matches('"')
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        assert!(parts >= 3, "ETag {etag}");
    }
    // The layout goes with the upload objects it held; the assembled object stays.
    let key = put.key.clone();
    store
        .run(move |s| s.media.delete(&key).expect("delete"))
        .await;
    assert!(store.objects(&id).await.is_empty());
    let listed = store.run(|s| s.media.list().expect("list")).await;
    assert_eq!(listed, [assembled]);

    // A layout no row names is discarded without its upload, which may still be recording.
    let other = UploadId::generate();
    store.append(&other, 0, pattern(1000, 5)).await;
    let (other2, layout3) = (
        other.clone(),
        StoredLayout {
            pieces: vec![Piece {
                source: Source::Upload,
                offset: 0,
                len: 1000,
            }],
            ..layout
        },
    );
    store
        .run(move |s| {
            let put = s
                .media
                .put_layout("fedcba9876543210fedcba9876543210", &other2, b"", &layout3)
                .expect("put");
            s.media.discard(&put.key).expect("discard");
        })
        .await;
    assert_eq!(store.objects(&other).await, [(0, 1000)]);
}
