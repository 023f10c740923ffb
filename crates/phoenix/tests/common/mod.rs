//! What the binary's test files share: the `phoenix` command with a clean environment, and a running
//! `phoenix serve` whose address is read from its JSON log (killed on drop).
#![allow(dead_code)] // each test binary uses its own part

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The admin secret every test server runs with.
pub const SECRET: &str = "binary-test-admin-secret";

/// The binary, with no inherited `PHOENIX_*` settings and no `.env` from the working directory.
pub fn phoenix() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PHOENIX_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// A running `phoenix serve` on a free port.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Every line the server logs (JSON), read in the background so it never blocks on a full pipe.
    pub log: mpsc::Receiver<String>,
    /// The lines logged up to and including the address.
    pub startup: Vec<String>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// `phoenix serve` with extra environment settings.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = phoenix();
        command
            .args(["serve"])
            .env("PHOENIX_LISTEN", "127.0.0.1:0")
            .env("PHOENIX_DATA_DIR", data_dir)
            .env("PHOENIX_ADMIN_SECRET", SECRET)
            .env("PHOENIX_LOG_FORMAT", "json");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn phoenix");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut startup = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("server did not report its address within 30 s");
            startup.push(line.clone());
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["fields"]["message"] == "listening" && v["fields"]["listener"] == "combined" {
                break v["fields"]["addr"].as_str().expect("addr").to_owned();
            }
        };
        Server {
            child,
            addr,
            log: rx,
            startup,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Kills the process (SIGKILL on unix) and waits for it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
