//! A real Azure Blob Storage emulator for the tests: Azurite (`tests/node_modules`, installed by
//! `npm ci` in `tests/`), started once per test binary on a free loopback port, with a fresh
//! container per test.
//!
//! The store is configured the way an operator points object_store at the emulator:
//! `AZURE_STORAGE_USE_EMULATOR` and `AZURITE_BLOB_STORAGE_URL` (set once, before the first store
//! is built) and `az://container/prefix` URLs. The emulator's account and key are public.
//!
//! Azurite 3.37 declares Node >= 22 but runs on the Node 20 here (`npm ci` only warns).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::emulator::{self, Emulator};

/// The emulator's well-known account.
const ACCOUNT: &str = "devstoreaccount1";

/// The emulator's well-known account key (base64).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Blob service version of our own requests (object_store's).
const API_VERSION: &str = "2023-11-03";

const MISSING: &str = "Azurite is not installed: run scripts/bootstrap.sh, or `npm ci` in tests/ \
                       (azurite is a devDependency there; it needs node)";

/// The running Azurite blob service.
pub struct Azurite {
    emulator: Emulator,
}

static AZURITE: OnceLock<Azurite> = OnceLock::new();
static CONTAINERS: AtomicU32 = AtomicU32::new(0);

/// The shared Azurite, started on first use; panics with what to do if it cannot start.
pub fn azurite() -> &'static Azurite {
    AZURITE.get_or_init(start)
}

fn start() -> Azurite {
    let main = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/node_modules/azurite/dist/src/blob/main.js");
    assert!(main.is_file(), "{MISSING} ({} is missing)", main.display());
    // In memory: nothing to clean up on disk. No telemetry: it would phone home from CI.
    let emulator = emulator::start(
        "node",
        |port| {
            format!(
                "node \"$0\" --blobHost 127.0.0.1 --blobPort {port} --inMemoryPersistence \
                 --disableTelemetry --silent --skipApiVersionCheck --loose"
            )
        },
        &[main.as_os_str()],
        MISSING,
    );
    // Set once, before any store reads them: emulator mode takes the well-known account and
    // key, and path-style URLs on this endpoint.
    std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
    std::env::set_var("AZURITE_BLOB_STORAGE_URL", &emulator.endpoint);
    Azurite { emulator }
}

impl Azurite {
    /// Creates a fresh, empty container and returns its name.
    ///
    /// object_store does not create containers: one signed REST call does.
    pub async fn container(&self) -> String {
        let name = format!(
            "livekeep-{}-{}",
            std::process::id(),
            CONTAINERS.fetch_add(1, Ordering::Relaxed)
        );
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let path = format!("/{ACCOUNT}/{name}");
        let authorization = shared_key(
            "PUT",
            &[("x-ms-date", &date), ("x-ms-version", API_VERSION)],
            // Path-style (emulator) URLs name the account in the path too: it appears twice.
            &format!("/{ACCOUNT}{path}\nrestype:container"),
        );
        let response = reqwest::Client::new()
            .put(format!(
                "{}{path}?restype=container",
                self.emulator.endpoint
            ))
            .header("x-ms-date", date)
            .header("x-ms-version", API_VERSION)
            .header("authorization", authorization)
            .send()
            .await
            .expect("creating a container in Azurite");
        assert!(
            response.status().is_success(),
            "creating container {name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        name
    }

    /// A raw client on `container`, to look at and tamper with objects as a crash would.
    pub fn client(&self, container: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        std::sync::Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(format!("az://{container}"))
                .build()
                .expect("an Azure client"),
        )
    }
}

/// The `Authorization` header of a body-less request with these `x-ms-*` headers (sorted, lower
/// case) and canonicalized resource, signed with the emulator's key (Shared Key authorization).
fn shared_key(verb: &str, ms_headers: &[(&str, &str)], resource: &str) -> String {
    // The verb, then eleven standard headers (Content-Encoding … Range) all empty: a zero
    // Content-Length is signed as empty too, and the date travels as x-ms-date.
    let mut string_to_sign = format!("{verb}\n{}", "\n".repeat(11));
    for (name, value) in ms_headers {
        string_to_sign.push_str(&format!("{name}:{value}\n"));
    }
    string_to_sign.push_str(resource);
    let key = BASE64
        .decode(ACCOUNT_KEY)
        .expect("the emulator key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    format!("SharedKey {ACCOUNT}:{signature}")
}
