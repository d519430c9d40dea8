//! A real OPC UA server for the tests: asyncua 2.1.0 (`tests/peers/opcua_peer.py`) on
//! 127.0.0.1 and a free port, started and stopped by PID; and asyncua's client in the
//! same script, to read and write the server's nodes behind the adaptor's back.
//! `scripts/env.sh`'s `ensure_peers` installs asyncua in the peers' venv.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::paths::repo_file;
use crate::peers::free_port;

/// The asyncua version `ensure_peers` installs.
pub const ASYNCUA_VERSION: &str = "2.1.0";

/// asyncua takes about 2.5 s to start on an idle machine, several times that while
/// cargo builds on both cores.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// One client call of the script (Python start, session, request).
const CLIENT_WITHIN: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    repo_file("tests/peers/opcua_peer.py")
}

/// The venv's Python, checked to have asyncua at [`ASYNCUA_VERSION`].
pub fn python() -> PathBuf {
    crate::peers::venv_python(
        &format!(
            "import importlib.metadata as m, sys; sys.exit(m.version('asyncua') != '{ASYNCUA_VERSION}')"
        ),
        &format!("asyncua {ASYNCUA_VERSION}"),
    )
}

/// A running asyncua server; killed by its PID when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    login: Option<(String, String)>,
    /// Where `serve-secure` wrote the certificates and keys, for a secured server.
    secure: Option<PathBuf>,
    /// `serve-secure`'s flags.
    flags: Vec<String>,
}

/// How [`Server::start_secure_with`] runs the secured server.
#[derive(Debug, Clone, Default)]
pub struct SecureOptions {
    /// Only this user and password may log in.
    pub login: Option<(String, String)>,
    /// Offer Aes128Sha256RsaOaep with Sign and policy None too (under None a password must
    /// be encrypted with the server's key).
    pub every_policy: bool,
    /// Refuse client certificates whose thumbprint is not in [`Server::trust`]'s list.
    pub strict: bool,
}

impl Server {
    /// A server taking anonymous logins, on a free port.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port(), None)
    }

    /// A server taking only `user` with `password`.
    pub fn with_login(dir: &Path, user: &str, password: &str) -> Self {
        Self::start_on(dir, free_port(), Some((user.into(), password.into())))
    }

    /// A server whose CreateSubscription answers BadServiceUnsupported.
    pub fn without_subscriptions(dir: &Path) -> Self {
        Self::launch(
            dir,
            free_port(),
            None,
            None,
            vec!["--no-subscriptions".to_owned()],
        )
    }

    /// A server on `port` (e.g. again on the port of one stopped).
    pub fn start_on(dir: &Path, port: u16, login: Option<(String, String)>) -> Self {
        Self::launch(dir, port, login, None, Vec::new())
    }

    /// A server offering Basic256Sha256 (Sign, SignAndEncrypt) and Aes128Sha256RsaOaep
    /// (SignAndEncrypt) only, with a fresh certificate; a client certificate and key
    /// are written next to it (see [`Server::secure_file`]). It takes any client
    /// certificate.
    pub fn start_secure(dir: &Path) -> Self {
        Self::start_secure_with(dir, SecureOptions::default())
    }

    /// [`Server::start_secure`] with a login, policy None besides, or a trust list.
    pub fn start_secure_with(dir: &Path, options: SecureOptions) -> Self {
        let secure = dir.join(format!("secure-{}", free_port()));
        std::fs::create_dir_all(&secure).unwrap();
        let mut flags = Vec::new();
        if options.every_policy {
            flags.push("--every-policy".to_owned());
        }
        if options.strict {
            flags.push("--strict".to_owned());
        }
        Self::launch(dir, free_port(), options.login, Some(secure), flags)
    }

    /// Adds a client certificate's SHA-1 thumbprint to the trust list of a strict server.
    pub fn trust(&self, thumbprint: &str) {
        use std::io::Write;
        let dir = self.secure.as_ref().expect("a secured server");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("trusted"))
            .unwrap();
        writeln!(f, "{thumbprint}").unwrap();
    }

    /// The SHA-1 thumbprints of the client certificates the secured server was shown,
    /// in order (one per CreateSession).
    pub fn clients_seen(&self) -> Vec<String> {
        let dir = self.secure.as_ref().expect("a secured server");
        std::fs::read_to_string(dir.join("clients.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A file `serve-secure` wrote: `server.sha1` (the certificate's thumbprint),
    /// `client.crt`, `client.key.pem` (PEM).
    pub fn secure_file(&self, name: &str) -> String {
        let dir = self.secure.as_ref().expect("a secured server");
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn launch(
        dir: &Path,
        port: u16,
        login: Option<(String, String)>,
        secure: Option<PathBuf>,
        flags: Vec<String>,
    ) -> Self {
        let python = python();
        let log = dir.join(format!("opcua-{port}.log"));
        let mut args = vec!["serve".to_owned(), port.to_string()];
        if let Some((user, password)) = &login {
            args.extend([user.clone(), password.clone()]);
        }
        if let Some(secure) = &secure {
            args = vec![
                "serve-secure".to_owned(),
                port.to_string(),
                secure.display().to_string(),
            ];
            if let Some((user, password)) = &login {
                args.extend([user.clone(), password.clone()]);
            }
        }
        args.extend(flags.iter().cloned());
        let (child, rx) = crate::peers::spawn_python(&python, &script(), &args, &log);
        let mut server = Server {
            child: Some(child),
            port,
            log,
            login,
            secure,
            flags,
        };
        match rx.recv_timeout(READY_WITHIN) {
            Ok(line) if line == "ready" => server,
            other => {
                server.stop();
                panic!(
                    "the asyncua server did not get ready within {READY_WITHIN:?} ({other:?}); its log:\n{}",
                    server.log()
                );
            }
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self, dir: &Path) {
        self.stop();
        let fresh = Self::launch(
            dir,
            self.port,
            self.login.clone(),
            self.secure.clone(),
            self.flags.clone(),
        );
        *self = fresh;
    }

    pub fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/octopus/", self.port)
    }

    /// Kills the server by its PID and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(python());
        cmd.arg("-u").arg(script()).args(args);
        cmd.stdin(Stdio::null());
        let out = run_bounded(cmd, CLIENT_WITHIN);
        assert!(
            out.status.success(),
            "opcua_peer.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What asyncua's client reads from each node: its variant type and its value as
    /// the adaptor would format it.
    pub fn read(&self, nodes: &[&str]) -> Vec<(String, String)> {
        let url = self.url();
        let mut args = vec!["read", url.as_str()];
        args.extend_from_slice(nodes);
        self.client(&args)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Writes `value` as the asyncua VariantType `kind`.
    pub fn write(&self, node: &str, kind: &str, value: &str) {
        self.client(&["write", &self.url(), node, kind, value]);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd`, killing it by PID if it takes longer than `within`.
fn run_bounded(mut cmd: Command, within: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} did not finish within {within:?}");
        }
    }
}

/// A loopback TCP relay that records every byte either way, to check what crosses the
/// wire. It serves at most [`Relay::CONNECTIONS`] connections and stops on drop.
pub struct Relay {
    pub port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub const CONNECTIONS: usize = 64;

    /// Relays 127.0.0.1:`port` (the relay's own) to 127.0.0.1:`to`.
    pub fn to(to: u16) -> Self {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            seen: Default::default(),
            stop: Default::default(),
        };
        let (seen, stop) = (relay.seen.clone(), relay.stop.clone());
        std::thread::spawn(move || {
            let mut served = 0;
            while served < Self::CONNECTIONS && !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                served += 1;
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 65_536];
                        // Ends when either side closes.
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relay
    }

    /// Everything relayed so far, both directions.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/octopus/", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
