//! Real peers for the protocol tests, started and stopped by PID (never by name), on
//! loopback and on pty pairs made in a temporary folder:
//!
//! - a pymodbus 3.16.1 slave (`host/tests/peers/modbus_server.py`), over TCP or RTU;
//! - a socat pty pair standing in for a serial line;
//! - `mbpoll`, an independent Modbus master (libmodbus), to read back what the slave
//!   holds and to write to it behind the adaptor's back;
//! - a writer of junk into a serial line.
//!
//! `scripts/env.sh`'s `ensure_peers` installs them (scripts/test.sh calls it). A missing
//! peer fails the test with that command; nothing is skipped.

use crate::paths::repo_file;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to install the peers.
pub const INSTALL: &str = "source scripts/env.sh && ensure_peers";

/// How long a peer may take to say it is ready (cargo builds may load both cores).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Fails with the install command when `bin` is not on PATH.
pub fn require(bin: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()));
    assert!(
        found,
        "{bin} is needed for the Modbus peer tests and is not on PATH; install it with `{INSTALL}` (scripts/test.sh does)"
    );
}

/// The Python that has pymodbus: $OCTOPUS_PEERS_PYTHON, or the venv `ensure_peers`
/// makes in the cache.
pub fn python() -> PathBuf {
    venv_python(
        "import pymodbus, serial; assert pymodbus.__version__ == '3.16.1', pymodbus.__version__",
        "pymodbus 3.16.1 (with pyserial)",
    )
}

/// The peers' Python ($OCTOPUS_PEERS_PYTHON, or the venv `ensure_peers` makes in the
/// cache), checked by running `check` in it; `what` names the packages for the failure.
pub fn venv_python(check: &str, what: &str) -> PathBuf {
    let python = std::env::var_os("OCTOPUS_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::cache_home().join("peers/venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{what} not found at {}; install it with `{INSTALL}` (scripts/test.sh does)",
        python.display()
    );
    python
}

pub use crate::process::free_port;

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A child process that is killed by its PID when dropped.
pub struct Proc {
    child: Option<Child>,
    pub what: String,
    pub log: PathBuf,
}

impl Proc {
    /// Kills the process (SIGKILL to its PID) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pymodbus slave serving worker IDs 1 and 2 with the layout documented in
/// `modbus_server.py` (mirrored in `modbus.rs`).
pub struct ModbusServer {
    pub proc: Proc,
    /// The TCP port, for a TCP server.
    pub port: u16,
}

fn script() -> PathBuf {
    repo_file("host/tests/peers/modbus_server.py")
}

impl ModbusServer {
    /// A Modbus TCP slave on 127.0.0.1 and a free port.
    pub fn tcp(dir: &Path) -> Self {
        Self::tcp_on(dir, free_port())
    }

    /// A Modbus TCP slave on 127.0.0.1:`port` (e.g. again on the port of one stopped).
    pub fn tcp_on(dir: &Path, port: u16) -> Self {
        let proc = start_server(
            dir,
            &format!("modbus-tcp-{port}"),
            &["tcp", "127.0.0.1", &port.to_string()],
        );
        Self { proc, port }
    }

    /// A Modbus RTU slave on the serial device `path` (one end of a [`PtyPair`]).
    pub fn rtu(dir: &Path, path: &Path, baud: u32) -> Self {
        let proc = start_server(
            dir,
            "modbus-rtu",
            &["rtu", &path.display().to_string(), &baud.to_string()],
        );
        Self { proc, port: 0 }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// Starts the Python peer `script` with `args`, its stderr in `log`, and returns it with a
/// channel that gets its first stdout line (the peers print a ready line there).
pub fn spawn_python<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    python: &Path,
    script: &Path,
    args: &[S],
    log: &Path,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {args:?}: {e}", python.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the peer never blocks on a full pipe.
        for _ in lines {}
    });
    (child, rx)
}

fn start_server(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let (child, rx) = spawn_python(&python(), &script(), args, &log);
    let mut proc = Proc {
        child: Some(child),
        what: format!("modbus_server.py {}", args.join(" ")),
        log,
    };
    match rx.recv_timeout(READY_WITHIN) {
        Ok(line) if line.starts_with("READY") => proc,
        other => {
            proc.stop();
            panic!(
                "{} did not get ready within {READY_WITHIN:?} ({other:?}); its log:\n{}",
                proc.what,
                proc.log_tail()
            );
        }
    }
}

/// A socat pty pair: what is written to `a` comes out of `b` and back.
pub struct PtyPair {
    _socat: Proc,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new(dir: &Path) -> Self {
        require("socat");
        let a = dir.join("ttyA");
        let b = dir.join("ttyB");
        let log = dir.join("socat.log");
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("starting socat: {e}; install it with `{INSTALL}`"));
        let proc = Proc {
            child: Some(child),
            what: "socat pty pair".into(),
            log,
        };
        let deadline = Instant::now() + READY_WITHIN;
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat made no pty pair in {}: {}",
                dir.display(),
                proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { _socat: proc, a, b }
    }
}

/// Writes junk into a serial line (a pty link) every 20 ms for `how_long`: the start of a
/// frame for slave 1 that announces 246 data bytes (write multiple registers), which a
/// slave waits for and so swallows the requests that follow, as a glitching line does; at
/// the end, zeros that complete that frame so the slave resynchronises. Blocking: run it
/// on a blocking thread. Returns the bytes written.
pub fn spray_junk(path: &Path, how_long: Duration) -> usize {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NOCTTY: i32 = 0o400; // Linux: do not make the pty our controlling terminal
    let mut port = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NOCTTY)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {} to write junk: {e}", path.display()));
    // No other bytes: noise that happens to hold a short frame with a bad CRC makes the
    // slave drop everything it holds and resynchronise at once.
    let junk = [0x01, 0x10, 0x00, 0x00, 0x00, 0x7b, 0xf6];
    let deadline = Instant::now() + how_long;
    let mut written = 0;
    while Instant::now() < deadline {
        port.write_all(&junk).unwrap();
        written += junk.len();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The line goes quiet with zeros (no frame starts with them): enough to complete the
    // announced frame, which fails its CRC and is dropped, so the slave listens again.
    port.write_all(&[0; 300]).unwrap();
    written + 300
}

/// One `mbpoll` line: `[address]: value`, the value as mbpoll prints it (`53191 (-12345)`
/// for a negative 16-bit register, `0xCFC7` in hex mode, `123.456` as a float).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub address: u16,
    pub text: String,
}

impl Reading {
    /// The number as a signed value: the one in brackets when mbpoll gives both.
    pub fn signed(&self) -> i64 {
        let t = self.text.trim();
        let t = t
            .split_once('(')
            .map_or(t, |(_, s)| s.trim_end_matches(')'));
        t.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {self:?}"))
    }

    /// The unsigned 16-bit register (the first number mbpoll prints).
    pub fn unsigned(&self) -> u64 {
        let t = self.text.split_whitespace().next().unwrap_or_default();
        match t.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => t.parse(),
        }
        .unwrap_or_else(|_| panic!("not an unsigned integer: {self:?}"))
    }

    pub fn float(&self) -> f64 {
        self.text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a float: {self:?}"))
    }
}

/// Where `mbpoll` talks to the slave.
#[derive(Clone, Debug)]
pub enum Line {
    Tcp(u16),
    /// Serial device and baud rate, 8N1.
    Rtu(PathBuf, u32),
}

/// `mbpoll` as the independent master: one poll, PDU addressing (`-0`), 1 s timeout.
pub struct Mbpoll {
    pub line: Line,
    pub unit: u8,
}

impl Mbpoll {
    pub fn new(line: Line, unit: u8) -> Self {
        require("mbpoll");
        Self { line, unit }
    }

    fn command(&self, table: &str, address: u16) -> Command {
        let mut cmd = Command::new("mbpoll");
        match &self.line {
            Line::Tcp(port) => {
                cmd.args(["-m", "tcp", "-p", &port.to_string()]);
            }
            Line::Rtu(_, baud) => {
                cmd.args([
                    "-m",
                    "rtu",
                    "-b",
                    &baud.to_string(),
                    "-P",
                    "none",
                    "-s",
                    "1",
                ]);
            }
        }
        cmd.args(["-a", &self.unit.to_string(), "-0", "-1", "-q", "-o", "1"]);
        cmd.args(["-t", table, "-r", &address.to_string()]);
        cmd
    }

    fn target(&self) -> String {
        match &self.line {
            Line::Tcp(_) => "127.0.0.1".into(),
            Line::Rtu(path, _) => path.display().to_string(),
        }
    }

    /// Reads `count` items of `table` (`0` coils, `1` discrete inputs, `3` input
    /// registers, `4` holding registers, `4:hex`, `4:int`, `4:float`, ...) from `address`.
    /// 32-bit types are read big-endian (ABCD) with `big_endian`, else word-swapped (CDAB).
    pub fn read(
        &self,
        table: &str,
        address: u16,
        count: u16,
        big_endian: bool,
    ) -> Result<Vec<Reading>, String> {
        let mut cmd = self.command(table, address);
        cmd.args(["-c", &count.to_string()]);
        if big_endian {
            cmd.arg("-B");
        }
        cmd.arg(self.target());
        let out = run(cmd)?;
        let readings: Vec<Reading> = out
            .lines()
            .filter_map(|l| {
                let (addr, value) = l.trim().strip_prefix('[')?.split_once("]:")?;
                Some(Reading {
                    address: addr.parse().ok()?,
                    text: value.trim().to_owned(),
                })
            })
            .collect();
        if readings.len() == usize::from(count) {
            Ok(readings)
        } else {
            Err(format!(
                "mbpoll printed {} of {count} values:\n{out}",
                readings.len()
            ))
        }
    }

    /// Writes `values` (as mbpoll takes them for `table`) from `address`.
    pub fn write(&self, table: &str, address: u16, values: &[&str]) -> Result<(), String> {
        let mut cmd = self.command(table, address);
        cmd.arg("-B");
        cmd.arg(self.target());
        cmd.args(values);
        let out = run(cmd)?;
        if out.contains("Written") {
            Ok(())
        } else {
            Err(format!("mbpoll wrote nothing:\n{out}"))
        }
    }
}

/// Runs a short command, killed by its PID if it takes more than 10 s.
fn run(mut cmd: Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}; install it with `{INSTALL}`"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown}: still running after 10 s, killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).ok();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{shown}: {status}\n{out}{err}"))
    }
}
