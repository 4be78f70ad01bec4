//! The real `livekeep` binary run as a server on a free loopback port, shared by the test
//! binaries that crash or kill it (`#[path = "../common/process.rs"] mod process;` in each).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

/// A `livekeep serve` process; killed with SIGKILL when dropped.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

impl ServerProcess {
    /// `livekeep serve` on `127.0.0.1:0` over `data_dir`, without pages; the caller adds the
    /// rest (flags, environment, where stderr goes).
    pub fn command(data_dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_livekeep"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--www-dir")
            .arg(data_dir.join("no-www"));
        command
    }

    /// Spawns `command` and waits until it is ready: its first line on stdout names the address
    /// it listens on. `log` reads what the server logged, for the failure message.
    pub async fn spawn(mut command: Command, log: impl FnOnce() -> String) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("the livekeep binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let address = line
            .trim()
            .strip_prefix("Livekeep listening on ")
            .unwrap_or_else(|| panic!("the server did not start ({line:?}): {}", log()))
            .trim_end_matches('/')
            .to_owned();
        Self { child, address }
    }

    /// SIGKILL: no graceful shutdown, no flush; its connections die with it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
