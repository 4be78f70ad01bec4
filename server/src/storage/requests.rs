//! Counts the requests the server makes to its object store, by kind, for `/metrics`: what a
//! PATCH costs in LISTs and PUTs is read there (and by `livekeep-bench`), not guessed.

use std::{
    fmt,
    ops::Range,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream::BoxStream, StreamExt};
use object_store::{
    path::Path, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The kinds of request counted, as the `operation` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A LIST of a prefix (one per page of results).
    List,
    /// A PUT of a whole object.
    Put,
    /// A GET, whole or ranged (one per range of a multi-range read).
    Get,
    /// A HEAD (object_store asks it as a GET with `head: true`).
    Head,
    /// A DELETE of one object.
    Delete,
    /// The start of a multipart upload (its parts are not counted one by one).
    Multipart,
    /// A server-side copy.
    Copy,
}

impl Operation {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [Self; 7] = [
        Self::List,
        Self::Put,
        Self::Get,
        Self::Head,
        Self::Delete,
        Self::Multipart,
        Self::Copy,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Put => "put",
            Self::Get => "get",
            Self::Head => "head",
            Self::Delete => "delete",
            Self::Multipart => "multipart",
            Self::Copy => "copy",
        }
    }
}

/// Requests made so far, by kind.
#[derive(Debug, Default)]
pub struct RequestCounts([AtomicU64; Operation::ALL.len()]);

impl RequestCounts {
    fn add(&self, operation: Operation, n: u64) {
        self.0[operation as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// How many requests of `operation` were made.
    pub fn get(&self, operation: Operation) -> u64 {
        self.0[operation as usize].load(Ordering::Relaxed)
    }
}

/// An object store that counts the requests made through it.
#[derive(Debug)]
pub struct CountedStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<RequestCounts>,
}

impl CountedStore {
    /// Wraps `inner`, counting into `counts`.
    pub fn new(inner: Arc<dyn ObjectStore>, counts: Arc<RequestCounts>) -> Self {
        Self { inner, counts }
    }
}

impl fmt::Display for CountedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.counts.add(Operation::Put, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.counts.add(Operation::Multipart, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head {
            Operation::Head
        } else {
            Operation::Get
        };
        self.counts.add(operation, 1);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.counts.add(Operation::Get, ranges.len() as u64);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = Arc::clone(&self.counts);
        let counted = locations
            .inspect(move |location| {
                if location.is_ok() {
                    counts.add(Operation::Delete, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // Counted once per listing: a page holds up to 1 000 objects, more than an upload has.
        self.counts.add(Operation::List, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counts.add(Operation::List, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.counts.add(Operation::List, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.counts.add(Operation::Copy, 1);
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;
    use object_store::{memory::InMemory, ObjectStoreExt};

    use super::*;

    #[tokio::test]
    async fn each_request_is_counted_under_its_kind() {
        let counts = Arc::new(RequestCounts::default());
        let store = CountedStore::new(Arc::new(InMemory::new()), Arc::clone(&counts));
        let a = Path::from("dir/a");
        store
            .put(&a, Bytes::from_static(b"abc").into())
            .await
            .unwrap();
        store
            .put(&Path::from("dir/b"), Bytes::new().into())
            .await
            .unwrap();
        let listed: Vec<_> = store
            .list(Some(&Path::from("dir")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        store.head(&a).await.unwrap();
        store.get_range(&a, 0..2).await.unwrap();
        store.delete(&a).await.unwrap();
        let got: Vec<_> = Operation::ALL
            .iter()
            .map(|op| (op.name(), counts.get(*op)))
            .collect();
        assert_eq!(
            got,
            [
                ("list", 1),
                ("put", 2),
                ("get", 1),
                ("head", 1),
                ("delete", 1),
                ("multipart", 0),
                ("copy", 0)
            ]
        );
    }
}
