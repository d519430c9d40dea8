//! The limb and brain as child processes of a suite or a bench: each serves HTTP on its
//! own loopback port, logs to a file the test names, and is killed when dropped.
//!
//! It depends on no harness module but the API server's, so `host/benches/cluster.rs`
//! can include the two by path.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::apiserver::ApiServer;

/// A free TCP port on loopback (free when asked; the peer binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `limb` or `brain`, killed when dropped.
pub struct Process {
    pub child: Child,
    /// Where its HTTP endpoint (`--listen`) is.
    pub port: u16,
}

impl Process {
    /// Runs `bin args… --listen 127.0.0.1:<free port>` as the API server user that
    /// `kubeconfig` names, with `env` set, its stderr in `log` and its stdout dropped.
    /// `--listen` goes last, so it belongs to the subcommand (`run`, `cluster`).
    pub fn start(
        bin: &Path,
        args: &[&str],
        kubeconfig: &Path,
        env: &[(&str, &str)],
        log: &Path,
    ) -> Process {
        let port = free_port();
        let log = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(bin)
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Process { child, port }
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// A GET on its HTTP endpoint: the status code and the body, if it answered.
    pub fn request(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// The body of a GET on its HTTP endpoint, if it answered 200.
    pub fn get(&self, path: &str) -> Option<String> {
        self.request(path)
            .and_then(|(code, body)| (code == 200).then_some(body))
    }

    /// A JSON document from its HTTP endpoint.
    pub fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get(path)?).ok()
    }
}

/// The brain as a cluster runs it: identity `brain-0`, its Lease in `octopus-system`,
/// as the API server's `brain` user, logging (`BRAIN_LOG=log_filter`) to `brain.log`.
pub fn start_brain(server: &ApiServer, bin: &Path, log_filter: &str) -> Process {
    Process::start(
        bin,
        &[
            "run",
            "--identity",
            "brain-0",
            "--lease-namespace",
            "octopus-system",
        ],
        &server.user_kubeconfig("brain"),
        &[("BRAIN_LOG", log_filter)],
        &server.dir.path().join("brain.log"),
    )
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET on loopback `port`: the status code and the body, if it answered.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    get(port, path, "", Duration::from_secs(5))
}

/// A GET on loopback `port` with `Authorization: Bearer <token>` when a token is given
/// (the dashboards' token mode): the status code and the body, if it answered.
pub fn http_get_as(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    get(port, path, &auth, Duration::from_secs(10))
}

fn get(port: u16, path: &str, headers: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}
