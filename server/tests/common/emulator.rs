//! Storage emulators the tests start themselves (moto for S3, Azurite for Azure Blob Storage):
//! once per test binary, on a free loopback port, stopped when the binary exits however it
//! exits (the shell that runs one stops it when our end of its stdin closes).

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long an emulator may take to listen.
const START_WAIT: Duration = Duration::from_secs(30);

/// A running emulator.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _guard: Mutex<Child>,
}

/// Runs `command(port)` in `sh` with `args` as `$0…` and waits for it to listen on `port`;
/// panics with `missing` (what to install) if `program` is absent or the emulator never listens.
pub fn start(
    program: &str,
    command: impl FnOnce(u16) -> String,
    args: &[&OsStr],
    missing: &str,
) -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    let script = format!(
        "command -v {program} >/dev/null || {{ echo missing; exit 127; }}; \
         {} >/dev/null 2>&1 & pid=$!; echo started; read _ignored; kill $pid",
        command(port)
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reading from sh");
    assert_eq!(
        line.trim(),
        "started",
        "{program} is not installed. {missing}"
    );
    let deadline = Instant::now() + START_WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(_)) = child.try_wait() {
            panic!("{program} exited at once. {missing}");
        }
        assert!(
            Instant::now() < deadline,
            "{program} did not listen on port {port} within {START_WAIT:?}. {missing}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
        _guard: Mutex::new(child),
    }
}
