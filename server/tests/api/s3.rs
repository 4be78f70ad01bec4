//! A real S3-compatible server for the tests: `moto_server`, started once per test binary on a
//! free loopback port, with a fresh bucket per test.
//!
//! The server is configured the way an operator would: `AWS_*` variables (set once, before
//! the first store is built) and `s3://bucket/prefix` URLs.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    OnceLock,
};

use crate::emulator::{self, Emulator};

/// The running moto server.
pub struct Moto {
    emulator: Emulator,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static BUCKETS: AtomicU32 = AtomicU32::new(0);

/// The shared moto server, started on first use; panics with what to do if it cannot start.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(start)
}

fn start() -> Moto {
    let emulator = emulator::start(
        "moto_server",
        |port| format!("moto_server -H 127.0.0.1 -p {port}"),
        &[],
        "Run scripts/bootstrap.sh (it installs moto[server] from PyPI).",
    );
    // Set once, before any store reads them; moto accepts any credentials.
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", "livekeep-test"),
        ("AWS_SECRET_ACCESS_KEY", "livekeep-test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", emulator.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        std::env::set_var(name, value);
    }
    std::env::remove_var("AWS_SESSION_TOKEN");
    Moto { emulator }
}

impl Moto {
    /// Creates a fresh, empty bucket and returns its name.
    pub async fn bucket(&self) -> String {
        let name = format!(
            "livekeep-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.emulator.endpoint))
            .send()
            .await
            .expect("creating a bucket in moto");
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
        name
    }

    /// A raw client on `bucket`, to look at and tamper with objects as a crash would.
    pub fn client(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        std::sync::Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(format!("s3://{bucket}"))
                .build()
                .expect("an S3 client"),
        )
    }
}

/// Whether `LIVEKEEP_TEST_STORAGE=s3` asks the API tests to run on moto.
pub fn requested() -> bool {
    match std::env::var("LIVEKEEP_TEST_STORAGE").as_deref() {
        Ok("s3") => true,
        Ok("" | "file") | Err(_) => false,
        Ok(other) => panic!("LIVEKEEP_TEST_STORAGE={other:?}: use s3 or file"),
    }
}
