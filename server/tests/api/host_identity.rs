//! Identity from the host app: JWTs verified with its key, users created on first sight and
//! renamed by a later `name`, every refused token answered 401 with the check that failed,
//! and `--auth` deciding whether Livekeep's own accounts still work.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp, TestUser};
use livekeep_server::config::AuthMode;

/// The host app's HS256 secret in these tests.
pub const SECRET: &str = "a-host-app-secret-of-at-least-32-bytes";
const ISSUER: &str = "https://host.example";
const AUDIENCE: &str = "livekeep";

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HS256 token of `claims` signed with `secret`.
pub fn hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// Claims of a valid token for the host user `sub`.
pub fn claims(sub: &str, name: &str) -> Value {
    json!({"sub": sub, "name": name, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
}

/// A server taking the host app's HS256 tokens (issuer and audience checked), in `mode`.
pub async fn jwt_app(mode: Option<AuthMode>) -> TestApp {
    spawn_app_with(|config| {
        config.auth = mode;
        config.auth_jwt_secret = Some(SECRET.to_owned());
        config.auth_jwt_issuer = Some(ISSUER.to_owned());
        config.auth_jwt_audience = Some(AUDIENCE.to_owned());
    })
    .await
}

/// A test user whose bearer token is `token`.
pub fn bearer(token: String) -> TestUser {
    TestUser {
        id: 0,
        username: String::new(),
        token,
    }
}

async fn start_live(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/posts/live/", Some(token))
        .json(&json!({"content": "from the host app"}))
        .send()
        .await
        .expect("start a live")
}

/// Asserts `token` is refused with 401 `unauthenticated`; returns the message.
async fn refusal(app: &TestApp, token: &str) -> String {
    let response = start_live(app, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.contains(token), "the message echoes the token");
    message
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token whose payload is `payload` as it is, correctly signed with [`SECRET`].
fn signed_raw(payload: &[u8]) -> String {
    use hmac::Mac;
    let signed = format!(
        "{}.{}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(payload)
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("a key");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", base64url(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_host_user_is_created_on_first_sight_and_renamed_by_a_later_name() {
    let app = jwt_app(None).await;
    let first = start_live(&app, &hs256(SECRET, &claims("42", "Ada"))).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("JSON");
    let author = &first["post"]["author"];
    assert_eq!(author["username"], "Ada");
    assert_eq!(author["external_id"], "42");

    let again = start_live(&app, &hs256(SECRET, &claims("42", "Ada Lovelace"))).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(again["post"]["author"]["id"], author["id"], "the same user");
    // The earlier post shows the new name too: it is the user's, not the post's.
    let earlier = app
        .get_json(&format!("/api/posts/{}/", first["live_id"]))
        .await;
    assert_eq!(earlier["author"]["username"], "Ada Lovelace");

    let other = start_live(&app, &hs256(SECRET, &claims("43", "Ada Lovelace"))).await;
    let other: Value = other.json().await.expect("JSON");
    assert_ne!(
        other["post"]["author"]["id"], author["id"],
        "another sub is another user, whatever its name"
    );
}

#[tokio::test]
async fn every_refused_token_is_a_401_that_says_which_check_failed() {
    let app = jwt_app(None).await;
    let valid = claims("42", "Ada");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = valid.clone();
        change(&mut claims);
        hs256(SECRET, &claims)
    };
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(valid.to_string().as_bytes())
    );
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &valid,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token");
    let cases = [
        (unsigned, "alg none"),
        (hs384, "signed with HS384; this server accepts HS256 only"),
        (
            hs256("another-secret-that-is-long-enough-too", &valid),
            "signature does not match",
        ),
        (with(&|c| c["exp"] = json!(now() - 120)), "has expired"),
        (
            with(&|c| {
                c.as_object_mut().expect("object").remove("sub");
            }),
            "no sub claim",
        ),
        (
            with(&|c| {
                c.as_object_mut().expect("object").remove("exp");
            }),
            "no exp claim",
        ),
        (with(&|c| c["sub"] = json!("")), "sub must be 1 to 255"),
        (
            with(&|c| c["iss"] = json!("https://evil.example")),
            "issuer (iss)",
        ),
        (
            with(&|c| {
                c.as_object_mut().expect("object").remove("iss");
            }),
            "no iss claim",
        ),
        (with(&|c| c["aud"] = json!("another-app")), "audience (aud)"),
        (with(&|c| c["nbf"] = json!(now() + 600)), "not valid yet"),
        ("not.a.jwt".to_owned(), "not a well-formed JWT"),
        ("two.parts".to_owned(), "not a well-formed JWT"),
        (
            format!("{}.e30.e30", base64url(b"[]")),
            "not a well-formed JWT",
        ),
        (signed_raw(b"not json"), "not a well-formed JWT"),
        (
            signed_raw(br#"{"sub": 42, "exp": 9999999999}"#),
            "expected a string",
        ),
    ];
    for (token, expected) in cases {
        let message = refusal(&app, &token).await;
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
    }
}

#[tokio::test]
async fn a_token_just_past_its_exp_is_accepted_within_the_leeway() {
    let app = jwt_app(None).await;
    let mut late = claims("42", "Ada");
    late["exp"] = json!(now() - 10);
    let response = start_live(&app, &hs256(SECRET, &late)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    late["exp"] = json!(now() - 61);
    assert!(refusal(&app, &hs256(SECRET, &late))
        .await
        .contains("expired"));
}

#[tokio::test]
async fn an_audience_is_refused_when_none_is_configured_and_the_issuer_keys_the_user() {
    let app = spawn_app_with(|config| {
        config.auth_jwt_secret = Some(SECRET.to_owned());
    })
    .await;
    let mut claims = json!({"sub": "7", "name": "Grace", "exp": now() + 600});
    let plain = start_live(&app, &hs256(SECRET, &claims)).await;
    assert_eq!(plain.status(), StatusCode::CREATED);
    let plain: Value = plain.json().await.expect("JSON");
    // The same sub from another issuer is another user.
    claims["iss"] = json!("https://other.example");
    let issued = start_live(&app, &hs256(SECRET, &claims)).await;
    let issued: Value = issued.json().await.expect("JSON");
    assert_ne!(
        issued["post"]["author"]["id"],
        plain["post"]["author"]["id"]
    );
    claims["aud"] = json!("someone");
    assert!(refusal(&app, &hs256(SECRET, &claims))
        .await
        .contains("audience"));
}

/// A fresh key pair from the openssl CLI: (private PEM, public PEM).
fn openssl_key_pair(algorithm: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    let status = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(algorithm)
        .arg("-out")
        .arg(&private)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey {algorithm:?}");
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl pkey -pubout");
    (
        std::fs::read(private).expect("the private key"),
        std::fs::read(public).expect("the public key"),
    )
}

/// A kind of key: how openssl makes it, the algorithm it signs with, how to load its private half.
type KeyKind = (&'static [&'static str], Algorithm, fn(&[u8]) -> EncodingKey);

#[tokio::test]
async fn a_public_key_file_sets_the_algorithm_rsa_ec_and_ed25519() {
    let kinds: [KeyKind; 3] = [
        (
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
            |pem| EncodingKey::from_rsa_pem(pem).expect("an RSA key"),
        ),
        (
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::ES256,
            |pem| EncodingKey::from_ec_pem(pem).expect("an EC key"),
        ),
        (&["-algorithm", "ed25519"], Algorithm::EdDSA, |pem| {
            EncodingKey::from_ed_pem(pem).expect("an Ed25519 key")
        }),
    ];
    for (openssl_args, algorithm, encoding_key) in kinds {
        let (private, public) = openssl_key_pair(openssl_args);
        let key_file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(key_file.path(), &public).expect("writing the public key");
        let path = key_file.path().to_owned();
        let app = spawn_app_with(|config| config.auth_jwt_public_key = Some(path)).await;
        let claims = json!({"sub": "99", "name": "Key holder", "exp": now() + 600});
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &encoding_key(&private))
            .expect("a token");
        let response = start_live(&app, &token).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{algorithm:?}");
        // The classic confusion: HS256 "signed" with the public key as the secret.
        let confused = hs256(std::str::from_utf8(&public).expect("PEM"), &claims);
        let message = refusal(&app, &confused).await;
        assert!(
            message.contains("signed with HS256"),
            "{algorithm:?}: {message}"
        );
        // Signed by another key of the same kind.
        let (stranger, _) = openssl_key_pair(openssl_args);
        let forged =
            jsonwebtoken::encode(&Header::new(algorithm), &claims, &encoding_key(&stranger))
                .expect("a token");
        assert!(refusal(&app, &forged).await.contains("signature"));
    }
}

#[tokio::test]
async fn with_jwt_only_the_builtin_accounts_are_off() {
    let app = jwt_app(None).await;
    let register = app
        .register_raw(json!({"username": "alice", "password": "password123"}))
        .await;
    assert_eq!(register.status(), StatusCode::FORBIDDEN);
    let body: Value = register.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "builtin_accounts_disabled");
    let login = app
        .request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": "alice", "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
    // A session token (hex, no dots) is refused as such.
    let message = refusal(&app, &"ab".repeat(32)).await;
    assert!(message.contains("session tokens are refused"), "{message}");
}

#[tokio::test]
async fn with_both_sessions_and_host_tokens_work_and_names_never_collide() {
    let app = jwt_app(Some(AuthMode::Both)).await;
    let alice = app
        .register_raw(json!({"username": "alice", "password": "password123"}))
        .await;
    assert_eq!(alice.status(), StatusCode::CREATED);
    let alice: Value = alice.json().await.expect("JSON");
    assert!(
        alice["user"].get("external_id").is_none(),
        "a built-in account has no external_id: {alice}"
    );
    let session = alice["token"].as_str().expect("token");
    assert_eq!(
        start_live(&app, session).await.status(),
        StatusCode::CREATED
    );

    // Two host users named like the account, and like each other.
    let mut ids = vec![alice["user"]["id"].as_i64().expect("id")];
    for sub in ["h1", "h2"] {
        let response = start_live(&app, &hs256(SECRET, &claims(sub, "alice"))).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{sub}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["post"]["author"]["username"], "alice");
        assert_eq!(body["post"]["author"]["external_id"], sub);
        ids.push(body["post"]["author"]["id"].as_i64().expect("id"));
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct users");
    // The login stays the account's; no host user can be logged into, and a built-in name
    // like a host user's display name can still be registered.
    let login = app
        .request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": "alice", "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    start_live(&app, &hs256(SECRET, &claims("h3", "bob"))).await;
    let bob = app
        .register_raw(json!({"username": "bob", "password": "password123"}))
        .await;
    assert_eq!(bob.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_jwt_is_not_a_session_on_a_builtin_server() {
    let app = crate::helpers::spawn_app().await;
    let message = refusal(&app, &hs256(SECRET, &claims("42", "Ada"))).await;
    assert_eq!(message, "authentication required");
}
