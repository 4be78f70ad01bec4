//! Checks webhook signatures with an independent implementation: the Standard Webhooks
//! library for Python (`verify_webhooks.py`, run by the Django example's venv that
//! scripts/bootstrap.sh installs).

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::{json, Value};

use crate::receiver::Received;

fn python() -> PathBuf {
    let python =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/django/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/bootstrap.sh (it installs examples/django/requirements.txt)",
        python.display()
    );
    python
}

/// For each delivery, its verified payload or why the library refused it.
pub fn verify(secret: &str, deliveries: &[Received]) -> Vec<Result<Value, String>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/verify_webhooks.py");
    let input = json!({
        "secret": secret,
        "deliveries": deliveries
            .iter()
            .map(|d| json!({"headers": d.headers, "body": d.body}))
            .collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("the verifier's JSON");
    results
        .into_iter()
        .map(|result| match result.get("payload") {
            Some(payload) => Ok(payload.clone()),
            None => Err(result["error"].as_str().unwrap_or("?").to_owned()),
        })
        .collect()
}

/// Every delivery's payload, asserting that each signature verifies.
pub fn verified(secret: &str, deliveries: &[Received]) -> Vec<Value> {
    verify(secret, deliveries)
        .into_iter()
        .zip(deliveries)
        .map(|(result, delivery)| {
            result.unwrap_or_else(|err| panic!("refused ({err}): {delivery:#?}"))
        })
        .collect()
}
