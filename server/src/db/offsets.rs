//! Committing upload offsets after their bytes are synced, and the other writes on a PATCH's
//! way to its acknowledgment: an upload's writer claimed by its first PATCH, a live's recording
//! dated by its first chunk.
//!
//! On SQLite every such write goes through one writer that batches the writes pending at once
//! into one transaction ([`GroupCommit`]): one WAL sync for all the PATCHes that finished their
//! own sync meanwhile, instead of one transaction each, whose collisions on SQLite's single
//! write lock sleep in its busy handler (bench/findings.md, finding 2). A write of its own
//! would queue every PATCH behind it: when hundreds of lives start together, their first
//! PATCHes' claims and dates did (finding 11). On PostgreSQL each write keeps its own
//! transaction: the server queues concurrent commits and groups their WAL flushes itself,
//! where a single writer would serialise this node's PATCHes on the round trips of one
//! connection.

use std::sync::Arc;

use anyhow::Context;
use sqlx::AnyConnection;
use tokio::sync::Mutex;

use super::{
    group_commit::GroupCommit,
    uploads::{self, IndexSave},
    Backend, Db,
};
use crate::domain::{PostId, UploadId};

/// Commits in one SQLite transaction at most: bounds how long a batch holds the write lock.
const MAX_BATCH: usize = 256;

/// A PATCH's new committed offset.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// The upload.
    pub id: UploadId,
    /// The node committing: the upload's writer, which the PATCH claimed (`uploads.writer`).
    pub writer: Arc<str>,
    /// The committed offset the PATCH began at.
    pub from: u64,
    /// Its new committed offset (every byte below it is synced).
    pub offset: u64,
    /// The length it learns with this PATCH, when it was deferred until now.
    pub length: Option<u64>,
    /// When the PATCH was stored (Unix ms): its last activity.
    pub now: i64,
    /// Its new expiry (Unix ms).
    pub expires_at: i64,
    /// The upload's index and SHA-256 as of the new offset, saved with it.
    pub index: IndexSave,
}

/// One write queued on SQLite's writer.
#[derive(Debug, Clone)]
pub enum Write {
    /// A PATCH's new committed offset.
    Offset(OffsetCommit),
    /// An upload's writer, claimed by this node before it stores anything.
    Claim {
        /// The upload.
        id: UploadId,
        /// The node claiming it.
        node: Arc<str>,
    },
    /// A live's recording dated (the first estimate is kept).
    RecordingStart {
        /// The live.
        post: PostId,
        /// Its media time 0 (Unix ms).
        at: i64,
    },
}

/// Where offsets are committed: the group-commit writer on SQLite, the pool on PostgreSQL.
#[derive(Debug, Clone)]
pub enum OffsetWriter {
    /// One writer task batching concurrent writes (SQLite).
    Grouped(GroupCommit<Write>),
    /// One transaction per commit (PostgreSQL).
    Direct(Db),
}

impl OffsetWriter {
    /// The writer suited to `db`'s engine; on SQLite it starts the writer task.
    pub fn for_db(db: &Db) -> Self {
        match super::backend(db) {
            Backend::Sqlite => {
                let connection = Arc::new(Mutex::new(DedicatedConnection {
                    db: db.clone(),
                    conn: None,
                }));
                Self::Grouped(GroupCommit::spawn(MAX_BATCH, move |batch| {
                    let connection = Arc::clone(&connection);
                    async move { connection.lock().await.apply(&batch).await }
                }))
            }
            Backend::Postgres => Self::Direct(db.clone()),
        }
    }

    /// Commits `commit`; returns once it is durable in the database, with whether the offset
    /// moved: not when another node claimed the upload since the PATCH began (its lock went
    /// with its database session). On an error nothing of it was committed (on SQLite,
    /// nothing of its whole batch).
    pub async fn commit(&self, commit: OffsetCommit) -> anyhow::Result<bool> {
        match self {
            // SQLite is one node's: its uploads have no other writer, and their offsets move
            // only under their lock, so the commit needs no condition.
            Self::Grouped(writer) => {
                writer.commit(Write::Offset(commit)).await?;
                Ok(true)
            }
            Self::Direct(db) => {
                let mut tx = super::begin_write(db).await?;
                if let Some(length) = commit.length {
                    uploads::set_length(&mut *tx, &commit.id, length).await?;
                }
                append_entries(&mut tx, &commit).await?;
                crate::fault::point("index_entries_appended");
                let moving = uploads::OffsetMove {
                    writer: &commit.writer,
                    from: commit.from,
                    to: commit.offset,
                    now: commit.now,
                    expires_at: commit.expires_at,
                    index: commit.index.states(),
                };
                let moved = uploads::commit_offset(&mut *tx, &commit.id, &moving).await?;
                if moved {
                    crate::fault::point("before_offsets_commit");
                    tx.commit().await?;
                    crate::fault::point("after_offsets_commit");
                }
                Ok(moved)
            }
        }
    }

    /// Makes `node` the writer of `upload` (whose row the caller read under the upload's lock)
    /// before it stores anything; returns the row as it now is, `None` if it is gone.
    pub async fn claim(
        &self,
        upload: uploads::UploadRow,
        node: &Arc<str>,
    ) -> anyhow::Result<Option<uploads::UploadRow>> {
        match self {
            // One node's database, and the row read under the lock: only the writer changes.
            Self::Grouped(writer) => {
                writer
                    .commit(Write::Claim {
                        id: upload.id.clone(),
                        node: Arc::clone(node),
                    })
                    .await?;
                Ok(Some(uploads::UploadRow {
                    writer: Some(node.to_string()),
                    ..upload
                }))
            }
            Self::Direct(db) => Ok(uploads::claim(db, &upload.id, node).await?),
        }
    }

    /// Dates the recording of `post` at `at` (its media time 0), unless it is dated already.
    pub async fn date_recording(&self, post: PostId, at: i64) -> anyhow::Result<()> {
        match self {
            Self::Grouped(writer) => writer.commit(Write::RecordingStart { post, at }).await?,
            Self::Direct(db) => super::posts::set_recording_start(db, post, at).await?,
        }
        Ok(())
    }
}

/// The SQLite writer's connection, outside the pool: taking one from the pool, each batch
/// would queue behind every PATCH waiting there to read its session and upload, hundreds under
/// load (bench/findings.md, finding 8). Opened at the first batch, and again after a failed one.
struct DedicatedConnection {
    db: Db,
    conn: Option<AnyConnection>,
}

impl DedicatedConnection {
    /// Applies `batch` on the connection, opening it first if needed.
    async fn apply(&mut self, batch: &[Write]) -> anyhow::Result<()> {
        // Taken out while the batch runs: a failure, a panic or a cancellation leaves none, and
        // the next batch starts on a fresh connection rather than one in an unknown state (a
        // transaction left open, a broken link).
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => super::dedicated_connection(&self.db)
                .await
                .context("opening the offset writer's connection")?,
        };
        apply(&mut conn, batch).await?;
        self.conn = Some(conn);
        Ok(())
    }
}

/// Applies `batch` atomically, in one transaction: the writers claimed (a claim comes before
/// its upload's first commit), the index entries appended, the offsets moved in one statement,
/// the index states saved beside them, the recordings dated. An upload's PATCHes are
/// serialised by its lock and each waits for its commit, so an upload's offset appears once in
/// a batch; were it there twice, its last commit wins.
async fn apply(conn: &mut AnyConnection, batch: &[Write]) -> anyhow::Result<()> {
    let commits: Vec<&OffsetCommit> = batch
        .iter()
        .filter_map(|write| match write {
            Write::Offset(commit) => Some(commit),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<&OffsetCommit> = commits
        .iter()
        .rev()
        .copied()
        .filter(|c| seen.insert(&c.id))
        .collect();
    last.reverse();
    let offsets: Vec<_> = last
        .iter()
        .map(|c| (&c.id, c.offset, c.now, c.expires_at))
        .collect();
    let mut tx = super::begin_write_on(conn).await?;
    for write in batch {
        if let Write::Claim { id, node } = write {
            uploads::claim(&mut *tx, id, node).await?;
        }
    }
    for commit in &commits {
        if let Some(length) = commit.length {
            uploads::set_length(&mut *tx, &commit.id, length).await?;
        }
        append_entries(&mut tx, commit).await?;
    }
    crate::fault::point("index_entries_appended");
    uploads::commit_offsets(&mut *tx, &offsets).await?;
    for commit in &last {
        uploads::save_index_states(&mut *tx, &commit.id, &commit.index.states()).await?;
    }
    for write in batch {
        if let Write::RecordingStart { post, at } = write {
            super::posts::set_recording_start(&mut *tx, *post, *at).await?;
        }
    }
    crate::fault::point("before_offsets_commit");
    tx.commit().await?;
    crate::fault::point("after_offsets_commit");
    Ok(())
}

/// Appends the index entries a commit learnt, if any.
async fn append_entries(tx: &mut AnyConnection, commit: &OffsetCommit) -> anyhow::Result<()> {
    if !commit.index.entries.is_empty() {
        uploads::append_index_entries(
            &mut *tx,
            &commit.id,
            commit.index.entries_start,
            &commit.index.entries,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A fresh SQLite database with `n` open uploads of one live.
    async fn database(n: usize) -> (tempfile::TempDir, Db, Vec<UploadId>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = super::super::connect(&url, std::time::Duration::from_secs(10))
            .await
            .expect("connect");
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'u', 'x', 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO posts (id, author_id, content, created_at) VALUES (1, 1, 'c', 0)")
            .execute(&db)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = UploadId::generate();
            uploads::insert(&db, &id, 1, crate::domain::PostId::new(1), None, 0, 10)
                .await
                .unwrap();
            ids.push(id);
        }
        (dir, db, ids)
    }

    fn commit(id: &UploadId, offset: u64, length: Option<u64>) -> OffsetCommit {
        OffsetCommit {
            id: id.clone(),
            writer: Arc::from("node"),
            from: 0,
            offset,
            length,
            now: 100 + offset as i64,
            expires_at: 1000 + offset as i64,
            index: IndexSave::default(),
        }
    }

    async fn row(db: &Db, id: &UploadId) -> (u64, Option<u64>, i64, i64) {
        let row = uploads::get(db, id).await.unwrap().unwrap();
        (row.offset, row.length, row.last_activity_at, row.expires_at)
    }

    #[tokio::test]
    async fn a_batch_commits_each_upload_s_offset_and_its_last_commit_wins() {
        let (_dir, db, ids) = database(3).await;
        let batch = [
            Write::Offset(commit(&ids[0], 10, None)),
            Write::Offset(commit(&ids[1], 20, None)),
            Write::Offset(commit(&ids[0], 30, None)),
        ];
        let mut conn = db.acquire().await.unwrap();
        apply(&mut conn, &batch).await.unwrap();
        assert_eq!(row(&db, &ids[0]).await, (30, None, 130, 1030));
        assert_eq!(row(&db, &ids[1]).await, (20, None, 120, 1020));
        assert_eq!(
            row(&db, &ids[2]).await,
            (0, None, 0, 10),
            "not in the batch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_and_recording_dates_go_through_the_writer_the_first_date_kept() {
        let (_dir, db, ids) = database(2).await;
        let writer = OffsetWriter::for_db(&db);
        let node: Arc<str> = Arc::from("node-a");
        let row = uploads::get(&db, &ids[0]).await.unwrap().unwrap();
        assert_eq!(row.writer, None);
        let claimed = writer.claim(row, &node).await.unwrap().unwrap();
        assert_eq!(
            claimed.writer.as_deref(),
            Some("node-a"),
            "the row answered"
        );
        let stored = uploads::get(&db, &ids[0]).await.unwrap().unwrap();
        assert_eq!(stored.writer.as_deref(), Some("node-a"), "the row stored");
        assert_eq!(
            uploads::get(&db, &ids[1]).await.unwrap().unwrap().writer,
            None,
            "another upload is not claimed"
        );
        let post = crate::domain::PostId::new(1);
        let dated = || async {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT recording_started_at FROM posts WHERE id = 1",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        };
        assert_eq!(dated().await, None);
        writer.date_recording(post, 1234).await.unwrap();
        writer.date_recording(post, 999).await.unwrap();
        assert_eq!(dated().await, Some(1234), "the first estimate is kept");
    }

    #[tokio::test]
    async fn a_deferred_length_is_set_with_its_offset() {
        let (_dir, db, ids) = database(2).await;
        let mut conn = db.acquire().await.unwrap();
        apply(
            &mut conn,
            &[
                Write::Offset(commit(&ids[0], 5, Some(50))),
                Write::Offset(commit(&ids[1], 7, None)),
            ],
        )
        .await
        .unwrap();
        assert_eq!(row(&db, &ids[0]).await, (5, Some(50), 105, 1005));
        assert_eq!(row(&db, &ids[1]).await, (7, None, 107, 1007));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_through_the_writer_all_land() {
        let (_dir, db, ids) = database(64).await;
        let writer = OffsetWriter::for_db(&db);
        assert!(matches!(writer, OffsetWriter::Grouped(_)));
        let mut commits = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (writer, id) = (writer.clone(), id.clone());
            commits.spawn(async move {
                for k in 1..=5u64 {
                    writer
                        .commit(commit(&id, 1000 * i as u64 + k, None))
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = commits.join_next().await {
            done.unwrap().unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(row(&db, id).await.0, 1000 * i as u64 + 5);
        }
    }

    #[tokio::test]
    async fn the_writer_commits_while_every_pool_connection_is_held() {
        let (_dir, db, ids) = database(1).await;
        let writer = OffsetWriter::for_db(&db);
        // Every connection of the pool busy (one of them in a read transaction, which WAL lets
        // a writer pass): a writer that took its connection from the pool would wait for one
        // until the pool's acquire timeout failed the commit.
        let mut held = Vec::new();
        for _ in 0..db.options().get_max_connections() {
            held.push(db.acquire().await.unwrap());
        }
        assert!(db.try_acquire().is_none());
        let mut reader = held.pop().unwrap();
        let mut reading = reader.begin().await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM uploads")
            .execute(&mut *reading)
            .await
            .unwrap();
        writer.commit(commit(&ids[0], 42, None)).await.unwrap();
        reading.rollback().await.unwrap();
        drop(held);
        assert_eq!(row(&db, &ids[0]).await.0, 42);
    }

    /// A trigger that makes the database refuse any upload's offset of 666.
    async fn refuse_offset_666(db: &Db) {
        sqlx::query(
            r#"CREATE TRIGGER refuse_666 BEFORE UPDATE OF "offset" ON uploads
               WHEN NEW."offset" = 666 BEGIN SELECT RAISE(ABORT, 'offset 666 refused'); END"#,
        )
        .execute(db)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_batch_the_database_refuses_commits_nothing_and_the_next_starts_on_a_new_connection()
    {
        let (_dir, db, ids) = database(2).await;
        let mut writer = DedicatedConnection {
            db: db.clone(),
            conn: None,
        };
        writer
            .apply(&[Write::Offset(commit(&ids[0], 1, None))])
            .await
            .unwrap();
        assert!(writer.conn.is_some(), "kept for the next batch");
        refuse_offset_666(&db).await;
        // One statement (no length), then one transaction (a length): nothing of either lands.
        for length in [None, Some(5000)] {
            let refused = writer
                .apply(&[
                    Write::Offset(commit(&ids[0], 10, length)),
                    Write::Offset(commit(&ids[1], 666, None)),
                ])
                .await
                .unwrap_err();
            assert!(
                format!("{refused:#}").contains("666 refused"),
                "{refused:#}"
            );
            assert!(
                writer.conn.is_none(),
                "a failed batch's connection is dropped"
            );
            assert_eq!(row(&db, &ids[0]).await, (1, None, 101, 1001));
            assert_eq!(row(&db, &ids[1]).await, (0, None, 0, 10));
        }
        writer
            .apply(&[
                Write::Offset(commit(&ids[0], 10, Some(5000))),
                Write::Offset(commit(&ids[1], 20, None)),
            ])
            .await
            .unwrap();
        assert!(writer.conn.is_some());
        assert_eq!(row(&db, &ids[0]).await, (10, Some(5000), 110, 1010));
        assert_eq!(row(&db, &ids[1]).await, (20, None, 120, 1020));
    }

    #[tokio::test]
    async fn a_writer_that_cannot_reach_the_database_fails_its_batch_and_reconnects_for_the_next() {
        let (dir, db, ids) = database(1).await;
        let writer = OffsetWriter::for_db(&db);
        let (file, away) = (dir.path().join("t.db"), dir.path().join("t.db.away"));
        // The writer's connection cannot be opened (the pool's stay open on the file).
        std::fs::rename(&file, &away).unwrap();
        let failed = writer.commit(commit(&ids[0], 7, None)).await.unwrap_err();
        assert!(
            format!("{failed:#}").contains("opening the offset writer's connection"),
            "{failed:#}"
        );
        std::fs::rename(&away, &file).unwrap();
        assert_eq!(row(&db, &ids[0]).await.0, 0);
        writer.commit(commit(&ids[0], 8, None)).await.unwrap();
        assert_eq!(row(&db, &ids[0]).await.0, 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_batch_fails_every_patch_in_it_through_the_writer_and_later_ones_land() {
        let (_dir, db, ids) = database(1).await;
        let writer = OffsetWriter::for_db(&db);
        writer.commit(commit(&ids[0], 5, None)).await.unwrap();
        refuse_offset_666(&db).await;
        assert!(writer.commit(commit(&ids[0], 666, None)).await.is_err());
        assert_eq!(row(&db, &ids[0]).await.0, 5);
        writer.commit(commit(&ids[0], 667, None)).await.unwrap();
        assert_eq!(row(&db, &ids[0]).await.0, 667);
    }
}
