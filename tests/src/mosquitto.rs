//! A real MQTT broker for the tests: Debian's mosquitto on loopback, started and stopped
//! by PID, with three listeners on free ports (see `test-peers.md` part B §3):
//!
//! - anonymous;
//! - user and password ([`USER`] / [`PASSWORD`], from a `mosquitto_passwd` file);
//! - TLS (a CA and a server certificate for `localhost` and `127.0.0.1` made with the
//!   openssl CLI) plus the same password.
//!
//! `mosquitto_sub` and `mosquitto_pub` are the independent clients on the other side,
//! always bounded (`-C` messages, `-W` seconds). `scripts/env.sh`'s `ensure_peers`
//! installs all of it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{INSTALL, free_port};

pub const USER: &str = "octo";
pub const PASSWORD: &str = "s3cret";

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const READY_WITHIN: Duration = Duration::from_secs(15);

/// Fails with the install command when the broker or its clients are missing.
pub fn require() {
    let found = |bin: &str| {
        Path::new(bin).is_file()
            || std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file())
            })
    };
    for bin in [
        MOSQUITTO,
        "mosquitto_sub",
        "mosquitto_pub",
        "mosquitto_passwd",
        "openssl",
    ] {
        assert!(
            found(bin),
            "{bin} is needed for the MQTT tests and was not found; install it with `{INSTALL}` (scripts/test.sh does)"
        );
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running mosquitto; killed by its PID when dropped.
pub struct Broker {
    child: Option<Child>,
    pub dir: PathBuf,
    pub anonymous: u16,
    pub password: u16,
    pub tls: u16,
}

impl Broker {
    /// Makes the password file, certificates and configuration in `dir` and starts the
    /// broker on free loopback ports.
    pub fn start(dir: &Path) -> Self {
        require();
        let dir = dir.to_path_buf();
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "").unwrap();
        run(Command::new("chmod").arg("600").arg(&passwd));
        run(Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([USER, PASSWORD]));
        make_ca(&dir, "ca");
        let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(&dir).args(args));
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        let mut broker = Self {
            child: None,
            dir,
            anonymous: free_port(),
            password: free_port(),
            tls: free_port(),
        };
        broker.write_config();
        broker.restart();
        broker
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let conf = format!(
            "per_listener_settings true
persistence false
log_dest stdout
log_type all
listener {anon} 127.0.0.1
allow_anonymous true
listener {pw} 127.0.0.1
allow_anonymous false
password_file {d}/passwd
listener {tls} 127.0.0.1
allow_anonymous false
password_file {d}/passwd
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key
",
            anon = self.anonymous,
            pw = self.password,
            tls = self.tls,
        );
        std::fs::write(self.dir.join("mosquitto.conf"), conf).unwrap();
        // Started as root, mosquitto drops to the `mosquitto` user and then cannot read
        // root's 0600 files (or enter a 0700 temporary folder).
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            run(Command::new("chown")
                .arg("-R")
                .arg("mosquitto:")
                .arg(&self.dir));
        }
    }

    /// Starts the broker (again) on the same ports, and waits until every listener
    /// accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {MOSQUITTO}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        for port in [self.anonymous, self.password, self.tls] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("mosquitto exited ({status}); its log:\n{}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "mosquitto did not listen on {port} within {READY_WITHIN:?}; its log:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the broker by its PID and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.crt")).unwrap()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Arguments that log `mosquitto_sub`/`_pub` in on the password listener.
    pub fn password_args(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.password.to_string(),
            "-u".into(),
            USER.into(),
            "-P".into(),
            PASSWORD.into(),
        ]
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A self-signed CA `name.crt`/`name.key` in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=test-{name}"),
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.crt"),
    ]));
}

/// One message as `mosquitto_sub` saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    pub retained: bool,
}

/// Waits at most `wait_s` seconds for `count` messages on `topic` (`mosquitto_sub -C
/// count -W wait_s`), on the anonymous listener unless `args` name another port (the
/// last `-p` wins).
pub async fn subscribe(
    broker: &Broker,
    topic: &str,
    count: usize,
    wait_s: u32,
    args: &[String],
) -> Vec<Message> {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.anonymous.to_string()])
        .args(["-t", topic, "-q", "1", "-F", "%r|%t|%p"])
        .args(["-C", &count.to_string(), "-W", &wait_s.to_string()])
        .args(args)
        .stdin(Stdio::null());
    let out = output(cmd).await;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '|');
            Some(Message {
                retained: parts.next()? == "1",
                topic: parts.next()?.to_owned(),
                payload: parts.next()?.to_owned(),
            })
        })
        .collect()
}

/// Publishes one message with `mosquitto_pub` on the anonymous listener (unless `args`
/// name another port) and fails the test if the broker does not take it.
pub async fn publish(broker: &Broker, topic: &str, payload: &str, args: &[&str]) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.anonymous.to_string()])
        .args(["-t", topic, "-m", payload, "-q", "1"])
        .args(args)
        .stdin(Stdio::null());
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "mosquitto_pub -t {topic} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a bounded client command off the async workers.
async fn output(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("running an MQTT client: {e}"))
}
