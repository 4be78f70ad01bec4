//! What serving a media needs (its file's key, type, size and poster), kept for the media
//! served lately so that a player's Range requests cost no database query.
//!
//! A stored file never changes under its key (a new file gets a new key: refinalize, a new
//! poster), so an entry can only become stale by pointing at a key that was replaced or
//! deleted. This node forgets an entry when it replaces or deletes its files itself; a change
//! made elsewhere (another node, the `admin` command) deletes the old file after its commit, so
//! the serving path that finds a cached key's file missing asks the database again
//! ([`MediaCache::reload`]) and answers from what it says.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, PoisonError,
};

use hashlink::LruCache;

use crate::{
    db::{self, Db},
    domain::MediaId,
};

/// Media remembered at most; beyond, the least recently served is forgotten.
const CAPACITY: usize = 4096;

/// The columns of a media row that serving it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedMedia {
    /// Key of its file in the media store (also its ETag).
    pub storage_key: String,
    /// MIME type as recorded.
    pub mime_type: String,
    /// Bytes of its file.
    pub size: u64,
    /// Key of its poster, if it has one.
    pub poster_key: Option<String>,
    /// When it was stored (Unix ms).
    pub created_at: i64,
}

/// A bounded, least-recently-used map of media id → [`ServedMedia`].
#[derive(Debug)]
pub struct MediaCache {
    entries: Mutex<LruCache<MediaId, Arc<ServedMedia>>>,
    /// Bumped by every forget: a row read before it is not cached after it.
    generation: AtomicU64,
}

impl Default for MediaCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl MediaCache {
    /// A cache of at most `capacity` media.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
            generation: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<MediaId, Arc<ServedMedia>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The media `id` from the cache, else from the database (then cached); `None` if there is
    /// no such media. The flag says whether it came from the cache (and may be stale).
    pub async fn get(
        &self,
        db: &Db,
        id: MediaId,
    ) -> Result<Option<(Arc<ServedMedia>, bool)>, sqlx::Error> {
        if let Some(cached) = self.entries().get(&id) {
            return Ok(Some((Arc::clone(cached), true)));
        }
        Ok(self.reload(db, id).await?.map(|media| (media, false)))
    }

    /// Reads the media `id` from the database and caches what it says (forgetting it if it is
    /// gone): for a cached entry whose file turned out to be missing.
    pub async fn reload(
        &self,
        db: &Db,
        id: MediaId,
    ) -> Result<Option<Arc<ServedMedia>>, sqlx::Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        let row = db::media::get(db, id).await?;
        let media = row.map(|row| {
            Arc::new(ServedMedia {
                storage_key: row.storage_key,
                mime_type: row.mime_type,
                size: u64::try_from(row.size).unwrap_or(0),
                poster_key: row.poster_key,
                created_at: row.created_at,
            })
        });
        self.remember(id, media.as_ref(), generation);
        Ok(media)
    }

    /// Caches what the database said of `id` when the generation was `generation`, unless a
    /// forget came since: it may concern this very row, so the next request reads it again.
    fn remember(&self, id: MediaId, media: Option<&Arc<ServedMedia>>, generation: u64) {
        let mut entries = self.entries();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        match media {
            Some(media) => {
                entries.insert(id, Arc::clone(media));
            }
            None => {
                entries.remove(&id);
            }
        }
    }

    /// Forgets the media `id` (its file or poster is being replaced).
    pub fn forget(&self, id: MediaId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(&id);
    }

    /// Forgets every media whose file or poster has one of `keys` (they are being deleted).
    pub fn forget_keys(&self, keys: &[String]) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        let stale: Vec<MediaId> = entries
            .iter()
            .filter(|(_, media)| {
                keys.iter()
                    .any(|key| *key == media.storage_key || Some(key) == media.poster_key.as_ref())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            entries.remove(&id);
        }
    }

    /// The cached entry of `id`, if any (without refreshing its place).
    pub fn cached(&self, id: MediaId) -> Option<Arc<ServedMedia>> {
        self.entries().peek(&id).cloned()
    }

    /// How many media are cached.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite database with one user.
    async fn database() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = db::connect(&url, std::time::Duration::from_secs(10))
            .await
            .expect("connect");
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'u', 'x', 0)",
        )
        .execute(&db)
        .await
        .expect("user");
        (dir, db)
    }

    async fn insert(db: &Db, id: i64, key: &str, poster: Option<&str>) {
        sqlx::query(
            "INSERT INTO media (id, user_id, title, description, storage_key, poster_key,
                mime_type, duration, size, original_sha256, created_at)
             VALUES ($1, 1, 't', 'd', $2, $3, 'video/webm', 1.0, 42, 'h', 0)",
        )
        .bind(id)
        .bind(key)
        .bind(poster)
        .execute(db)
        .await
        .expect("media row");
    }

    async fn set_key(db: &Db, id: i64, key: &str) {
        sqlx::query("UPDATE media SET storage_key = $1 WHERE id = $2")
            .bind(key)
            .bind(id)
            .execute(db)
            .await
            .expect("update");
    }

    fn key_of(found: Option<(Arc<ServedMedia>, bool)>) -> Option<(String, bool)> {
        found.map(|(media, cached)| (media.storage_key.clone(), cached))
    }

    #[tokio::test]
    async fn a_media_is_read_once_then_served_from_the_cache_until_forgotten() {
        let (_dir, db) = database().await;
        insert(&db, 7, "a.webm", Some("p.jpg")).await;
        let cache = MediaCache::default();
        let id = MediaId::new(7);
        let first = cache.get(&db, id).await.unwrap().unwrap();
        assert_eq!(
            *first.0,
            ServedMedia {
                storage_key: "a.webm".to_owned(),
                mime_type: "video/webm".to_owned(),
                size: 42,
                poster_key: Some("p.jpg".to_owned()),
                created_at: 0,
            }
        );
        assert!(!first.1, "the first read comes from the database");
        // The database changes behind the cache's back: the cache still answers (no query).
        set_key(&db, 7, "b.webm").await;
        assert_eq!(
            key_of(cache.get(&db, id).await.unwrap()),
            Some(("a.webm".to_owned(), true))
        );
        cache.forget(id);
        assert_eq!(
            key_of(cache.get(&db, id).await.unwrap()),
            Some(("b.webm".to_owned(), false))
        );
    }

    #[tokio::test]
    async fn forgetting_a_deleted_key_forgets_the_media_holding_it_as_file_or_poster() {
        let (_dir, db) = database().await;
        insert(&db, 1, "one.webm", None).await;
        insert(&db, 2, "two.webm", Some("two.jpg")).await;
        insert(&db, 3, "three.webm", None).await;
        let cache = MediaCache::default();
        for id in 1..=3 {
            cache.get(&db, MediaId::new(id)).await.unwrap();
        }
        cache.forget_keys(&["one.webm".to_owned(), "two.jpg".to_owned()]);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&db, MediaId::new(3)).await.unwrap().unwrap().1);
    }

    #[tokio::test]
    async fn a_reload_of_a_deleted_media_forgets_it_and_a_missing_one_is_none() {
        let (_dir, db) = database().await;
        insert(&db, 1, "one.webm", None).await;
        let cache = MediaCache::default();
        cache.get(&db, MediaId::new(1)).await.unwrap();
        sqlx::query("DELETE FROM media WHERE id = 1")
            .execute(&db)
            .await
            .unwrap();
        assert!(cache.reload(&db, MediaId::new(1)).await.unwrap().is_none());
        assert!(cache.is_empty());
        assert!(cache.get(&db, MediaId::new(9)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_cache_keeps_the_most_recently_served_media_within_its_bound() {
        let (_dir, db) = database().await;
        for id in 1..=3 {
            insert(&db, id, &format!("{id}.webm"), None).await;
        }
        let cache = MediaCache::with_capacity(2);
        cache.get(&db, MediaId::new(1)).await.unwrap();
        cache.get(&db, MediaId::new(2)).await.unwrap();
        cache.get(&db, MediaId::new(1)).await.unwrap();
        cache.get(&db, MediaId::new(3)).await.unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&db, MediaId::new(1)).await.unwrap().unwrap().1);
        assert!(!cache.get(&db, MediaId::new(2)).await.unwrap().unwrap().1);
    }

    #[tokio::test]
    async fn a_row_read_before_a_forget_is_not_cached_after_it() {
        let (_dir, db) = database().await;
        insert(&db, 1, "old.webm", None).await;
        let cache = MediaCache::default();
        let generation = cache.generation.load(Ordering::SeqCst);
        // A forget lands between another request's read and its insertion.
        cache.forget(MediaId::new(1));
        let stale = Some(Arc::new(ServedMedia {
            storage_key: "old.webm".to_owned(),
            mime_type: "video/webm".to_owned(),
            size: 42,
            poster_key: None,
            created_at: 0,
        }));
        cache.remember(MediaId::new(1), stale.as_ref(), generation);
        assert!(cache.is_empty());
    }
}
