//! The node's policy: the outer bound on what any DeviceLink may be granted on this node.
//!
//! A DeviceLink author names targets; only the node's operator decides which targets are
//! reachable at all. Written as YAML (`--policy FILE`):
//!
//! ```yaml
//! tcp: ["127.0.0.0/8", "10.20.0.0/16 502", "::1/128 1-1024"]   # CIDR, optional port or range
//! udp: ["127.0.0.1/32 47808"]
//! serial: ["/dev/ttyUSB*", "/dev/ttyS0"]                      # exact path or prefix*
//! gpio: ["gpiochip0 17-27", "gpiochip1"]                       # chip, optional line range
//!                                  # (a grant naming a line by name is checked by offset)
//! ble:                          # the Bluetooth controller the limb owns (none: no BLE)
//!   controller: "tcp:127.0.0.1:19002"   # or "serial:/dev/ttyUSB0@1000000" (H4, 8N1, RTS/CTS)
//!   allowNames: false           # grants by local name (spoofable) too, not only by address
//!   maxConnections: 4           # connections the limb opens on it (default 4)
//! maxComponentBytes: 67108864   # largest adaptor component loaded (default 64 MiB)
//! compileTimeout: 60s           # longest one component may take to compile (default 60s)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crds::GrantKind;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("policy is not valid YAML")]
    Yaml(#[source] serde_yaml::Error),
    #[error("policy {kind} rule {rule:?}: {why}")]
    Rule {
        kind: GrantKind,
        rule: String,
        why: String,
    },
    #[error("policy {key}: {why}")]
    Setting { key: &'static str, why: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    tcp: Vec<String>,
    #[serde(default)]
    udp: Vec<String>,
    #[serde(default)]
    serial: Vec<String>,
    #[serde(default)]
    gpio: Vec<String>,
    #[serde(default)]
    ble: Option<RawBle>,
    #[serde(default, rename = "maxComponentBytes")]
    max_component_bytes: Option<u64>,
    #[serde(default, rename = "compileTimeout")]
    compile_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBle {
    controller: String,
    #[serde(default)]
    allow_names: bool,
    #[serde(default)]
    max_connections: Option<usize>,
}

/// Connections the limb opens on its controller unless the policy says otherwise: small
/// controllers hold four to eight.
pub const DEFAULT_BLE_CONNECTIONS: usize = 4;

/// The node's Bluetooth controller and what may be granted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlePolicy {
    pub controller: super::ble::Controller,
    /// Whether a grant may name a peripheral by local name, which any device can
    /// advertise; addresses are always allowed.
    pub allow_names: bool,
    pub max_connections: usize,
}

/// Largest adaptor component loaded unless the policy says otherwise: four times the
/// largest shipped language runtime (a 17 MiB Python adaptor).
pub const DEFAULT_MAX_COMPONENT_BYTES: usize = 64 << 20;
/// Longest one compile may run unless the policy says otherwise; that Python adaptor
/// compiles in seconds.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// What compiling one adaptor component may cost this node: a component is code the node
/// runs a compiler on, before any sandbox applies to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// Components larger than this are refused before anything else is done with them.
    pub max_component_bytes: usize,
    /// A compile still running after this long is abandoned and the component refused
    /// (the wait for a compile slot does not count).
    pub compile_timeout: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NetRule {
    net: IpAddr,
    prefix: u8,
    ports: (u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GpioRule {
    chip: String,
    lines: (u32, u32),
}

/// What this node allows to be granted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    tcp: Vec<NetRule>,
    udp: Vec<NetRule>,
    serial: Vec<String>,
    gpio: Vec<GpioRule>,
    ble: Option<BlePolicy>,
    compile: CompileLimits,
}

impl Policy {
    /// Nothing is allowed.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// TCP and UDP to loopback only: the default for standalone mode.
    pub fn loopback() -> Self {
        let rules = || {
            vec![
                NetRule {
                    net: IpAddr::from([127, 0, 0, 0]),
                    prefix: 8,
                    ports: (1, u16::MAX),
                },
                NetRule {
                    net: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                    prefix: 128,
                    ports: (1, u16::MAX),
                },
            ]
        };
        Self {
            tcp: rules(),
            udp: rules(),
            ..Self::default()
        }
    }

    /// Parses the YAML form; every bad rule is reported, not just the first.
    pub fn from_yaml(text: &str) -> Result<Self, Vec<Error>> {
        let raw: RawPolicy = serde_yaml::from_str(text).map_err(|e| vec![Error::Yaml(e)])?;
        let mut errors = Vec::new();
        let mut net = |kind, rules: &[String]| {
            rules
                .iter()
                .filter_map(|r| {
                    parse_net(r)
                        .map_err(|why| {
                            errors.push(Error::Rule {
                                kind,
                                rule: r.clone(),
                                why,
                            })
                        })
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        let tcp = net(GrantKind::Tcp, &raw.tcp);
        let udp = net(GrantKind::Udp, &raw.udp);
        let gpio = raw
            .gpio
            .iter()
            .filter_map(|r| {
                parse_gpio_rule(r)
                    .map_err(|why| {
                        errors.push(Error::Rule {
                            kind: GrantKind::Gpio,
                            rule: r.clone(),
                            why,
                        })
                    })
                    .ok()
            })
            .collect();
        let compile = compile_limits(&raw, &mut errors);
        let ble = raw.ble.as_ref().and_then(|b| {
            let controller = super::ble::Controller::parse(&b.controller)
                .map_err(|why| {
                    errors.push(Error::Setting {
                        key: "ble.controller",
                        why,
                    })
                })
                .ok()?;
            let max_connections = b.max_connections.unwrap_or(DEFAULT_BLE_CONNECTIONS);
            if max_connections == 0 {
                errors.push(Error::Setting {
                    key: "ble.maxConnections",
                    why: "must be at least 1".into(),
                });
                return None;
            }
            Some(BlePolicy {
                controller,
                allow_names: b.allow_names,
                max_connections,
            })
        });
        for r in &raw.serial {
            if !r.starts_with('/') {
                errors.push(Error::Rule {
                    kind: GrantKind::Serial,
                    rule: r.clone(),
                    why: "must be an absolute path".into(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Self {
                tcp,
                udp,
                serial: raw.serial,
                gpio,
                ble,
                compile,
            })
        } else {
            Err(errors)
        }
    }

    /// Checks a grant target. For network targets given by host name only the port is
    /// checked here; [`Policy::check_addr`] checks each resolved address before connecting.
    pub fn check(&self, kind: GrantKind, target: &str) -> Result<(), String> {
        match kind {
            GrantKind::Tcp | GrantKind::Udp => {
                let rules = self.net_rules(kind);
                if let Ok(addr) = target.parse::<SocketAddr>() {
                    return check_net(rules, addr);
                }
                let (_, port) = split_host_port(target)?;
                if rules
                    .iter()
                    .any(|r| (r.ports.0..=r.ports.1).contains(&port))
                {
                    Ok(())
                } else {
                    Err(format!("port {port} is not allowed for {kind}"))
                }
            }
            GrantKind::Serial => {
                let canonical = std::fs::canonicalize(Path::new(target))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| target.to_owned());
                let allowed = |p: &str| {
                    self.serial.iter().any(|r| {
                        r.strip_suffix('*')
                            .map_or(r == p, |prefix| p.starts_with(prefix))
                    })
                };
                if allowed(&canonical) {
                    Ok(())
                } else if canonical != target {
                    Err(format!(
                        "{target} resolves to {canonical}, which no serial rule allows"
                    ))
                } else {
                    Err(format!("no serial rule allows {target}"))
                }
            }
            GrantKind::Ble => {
                let Some(ble) = &self.ble else {
                    return Err("this node has no Bluetooth controller (policy `ble`)".into());
                };
                match super::ble::Target::parse(target) {
                    super::ble::Target::Address(_) => Ok(()),
                    super::ble::Target::Name(_) if ble.allow_names => Ok(()),
                    super::ble::Target::Name(name) if name.is_empty() => {
                        Err("an empty endpoint names no peripheral".into())
                    }
                    super::ble::Target::Name(name) => Err(format!(
                        "{name:?} is a local name, which any nearby device can advertise; the policy allows only addresses (`ble.allowNames`)"
                    )),
                }
            }
            GrantKind::Gpio => match parse_gpio_target(target)? {
                (chip, LineRef::Offset(line)) => {
                    if self
                        .gpio
                        .iter()
                        .any(|r| r.chip == chip && (r.lines.0..=r.lines.1).contains(&line))
                    {
                        Ok(())
                    } else {
                        Err(format!("no gpio rule allows line {line} of {chip}"))
                    }
                }
                // A named line passes here if its chip is allowed at all; the capability
                // resolves the name through the chip and checks the offset it gets.
                (chip, LineRef::Name(_)) => {
                    if self.gpio.iter().any(|r| r.chip == chip) {
                        Ok(())
                    } else {
                        Err(format!("no gpio rule allows {chip}"))
                    }
                }
            },
        }
    }

    /// The node's Bluetooth controller, if it has one.
    pub fn ble(&self) -> Option<&BlePolicy> {
        self.ble.as_ref()
    }

    /// This policy with another Bluetooth controller setting.
    pub fn with_ble(mut self, ble: Option<BlePolicy>) -> Self {
        self.ble = ble;
        self
    }

    /// The bounds on compiling an adaptor component on this node.
    pub fn compile(&self) -> &CompileLimits {
        &self.compile
    }

    /// This policy with other compile bounds.
    pub fn with_compile(mut self, compile: CompileLimits) -> Self {
        self.compile = compile;
        self
    }

    /// Checks one resolved address for a network grant.
    pub fn check_addr(&self, kind: GrantKind, addr: SocketAddr) -> Result<(), String> {
        check_net(self.net_rules(kind), addr)
    }

    fn net_rules(&self, kind: GrantKind) -> &[NetRule] {
        match kind {
            GrantKind::Udp => &self.udp,
            _ => &self.tcp,
        }
    }
}

/// The compile bounds of `raw`, defaults where it says nothing; bad values go to `errors`.
fn compile_limits(raw: &RawPolicy, errors: &mut Vec<Error>) -> CompileLimits {
    let mut limits = CompileLimits::default();
    match raw.max_component_bytes.map(usize::try_from) {
        None => {}
        Some(Ok(0)) | Some(Err(_)) => errors.push(Error::Setting {
            key: "maxComponentBytes",
            why: "must be a positive number of bytes".into(),
        }),
        Some(Ok(n)) => limits.max_component_bytes = n,
    }
    if let Some(text) = &raw.compile_timeout {
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => limits.compile_timeout = d,
            Ok(_) => errors.push(Error::Setting {
                key: "compileTimeout",
                why: "must be longer than zero".into(),
            }),
            Err(e) => errors.push(Error::Setting {
                key: "compileTimeout",
                why: format!("{text:?} is not a duration such as 60s: {e}"),
            }),
        }
    }
    limits
}

fn check_net(rules: &[NetRule], addr: SocketAddr) -> Result<(), String> {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let port = addr.port();
    if rules
        .iter()
        .any(|r| in_net(ip, r.net, r.prefix) && (r.ports.0..=r.ports.1).contains(&port))
    {
        Ok(())
    } else {
        Err(format!(
            "{addr} is outside the allowed address ranges and ports"
        ))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn parse_net(rule: &str) -> Result<NetRule, String> {
    let mut parts = rule.split_whitespace();
    let cidr = parts.next().ok_or("empty rule")?;
    let ports = match parts.next() {
        Some(p) => parse_range(p)
            .map(|(a, b)| (a as u16, b as u16))
            .and_then(|(a, b)| {
                if a == 0 || b > u32::from(u16::MAX) as u16 {
                    Err("ports are 1-65535".to_string())
                } else {
                    Ok((a, b))
                }
            })?,
        None => (1, u16::MAX),
    };
    if parts.next().is_some() {
        return Err("expected `CIDR [PORT|PORT-PORT]`".into());
    }
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or("expected CIDR notation such as 10.0.0.0/8")?;
    let net: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("prefix /{prefix} is longer than {max}"));
    }
    Ok(NetRule { net, prefix, ports })
}

fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u32 = a.parse().map_err(|_| format!("{a:?} is not a number"))?;
    let b: u32 = b.parse().map_err(|_| format!("{b:?} is not a number"))?;
    if a > b || b > u32::from(u16::MAX) {
        return Err(format!("{text:?} is not a valid range"));
    }
    Ok((a, b))
}

fn parse_gpio_rule(rule: &str) -> Result<GpioRule, String> {
    let mut parts = rule.split_whitespace();
    let chip = parts.next().ok_or("empty rule")?.to_owned();
    let lines = match parts.next() {
        Some(r) => parse_range(r)?,
        None => (0, u32::MAX),
    };
    Ok(GpioRule { chip, lines })
}

/// A line of a chip, by offset or by the name the chip gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRef<'a> {
    Offset(u32),
    Name(&'a str),
}

/// Parses `chip:line`, where line is an offset (`gpiochip0:17`) or a line name
/// (`gpiochip0:relay1`, as a board's `gpio-line-names` gives it). A line part that
/// starts with a digit must be a whole offset.
pub fn parse_gpio_target(target: &str) -> Result<(&str, LineRef<'_>), String> {
    let (chip, line) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not `chip:line`"))?;
    if chip.is_empty() {
        return Err(format!("{target:?} names no chip"));
    }
    match line.chars().next() {
        None => Err(format!("{target:?} names no line")),
        Some(c) if c.is_ascii_digit() => line
            .parse()
            .map(|n| (chip, LineRef::Offset(n)))
            .map_err(|_| format!("{line:?} is not a line number")),
        Some(_) => Ok((chip, LineRef::Name(line))),
    }
}

/// Splits `host:port` (IPv6 hosts in brackets).
pub fn split_host_port(target: &str) -> Result<(&str, u16), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not `host:port`"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
tcp: ["127.0.0.0/8", "10.20.0.0/16 502", "::1/128 1-1024"]
serial: ["/dev/ttyUSB*", "/dev/ttyS0"]
gpio: ["gpiochip0 17-27", "gpiochip1"]
"#;

    #[test]
    fn network_table() {
        let p = Policy::from_yaml(POLICY).unwrap();
        let cases = [
            (GrantKind::Tcp, "127.0.0.1:5020", true),
            (GrantKind::Tcp, "127.255.0.1:1", true),
            (GrantKind::Tcp, "10.20.3.4:502", true),
            (GrantKind::Tcp, "10.20.3.4:503", false),
            (GrantKind::Tcp, "10.21.0.1:502", false),
            (GrantKind::Tcp, "[::1]:80", true),
            (GrantKind::Tcp, "[::1]:8080", false),
            (GrantKind::Tcp, "[::ffff:127.0.0.1]:80", true),
            (GrantKind::Udp, "127.0.0.1:53", false),
            (GrantKind::Tcp, "plc.local:502", true),
            (GrantKind::Tcp, "nonsense", false),
        ];
        for (kind, target, ok) in cases {
            assert_eq!(p.check(kind, target).is_ok(), ok, "{kind} {target}");
        }
    }

    #[test]
    fn serial_and_gpio_table() {
        let p = Policy::from_yaml(POLICY).unwrap();
        let cases = [
            (GrantKind::Serial, "/dev/ttyUSB3", true),
            (GrantKind::Serial, "/dev/ttyS0", true),
            (GrantKind::Serial, "/dev/ttyS1", false),
            (GrantKind::Gpio, "gpiochip0:17", true),
            (GrantKind::Gpio, "gpiochip0:28", false),
            (GrantKind::Gpio, "gpiochip1:200", true),
            (GrantKind::Gpio, "gpiochip2:1", false),
            (GrantKind::Gpio, "gpiochip0", false),
            (GrantKind::Gpio, "gpiochip0:relay1", true),
            (GrantKind::Gpio, "gpiochip2:relay1", false),
            (GrantKind::Gpio, "gpiochip0:", false),
            (GrantKind::Gpio, ":17", false),
            (GrantKind::Gpio, "gpiochip0:17x", false),
        ];
        for (kind, target, ok) in cases {
            assert_eq!(p.check(kind, target).is_ok(), ok, "{kind} {target}");
        }
    }

    #[test]
    fn symlinks_are_checked_by_what_they_point_to() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ttyUSB-fake");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let p = Policy::from_yaml(&format!("serial: ['{}']", link.display())).unwrap();
        let err = p
            .check(GrantKind::Serial, &link.to_string_lossy())
            .unwrap_err();
        assert!(err.contains("/etc/hostname"), "{err}");
    }

    #[test]
    fn every_bad_rule_is_reported() {
        let errors =
            Policy::from_yaml("tcp: ['10.0.0.0/33', 'x/8', '127.0.0.1/32 0']\nserial: ['ttyS0']")
                .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Policy::from_yaml("tpc: []").is_err());
    }

    #[test]
    fn compile_limits_default_and_parse() {
        for p in [
            Policy::deny_all(),
            Policy::loopback(),
            Policy::from_yaml(POLICY).unwrap(),
        ] {
            assert_eq!(p.compile(), &CompileLimits::default());
        }
        assert_eq!(CompileLimits::default().max_component_bytes, 64 << 20);
        assert_eq!(
            CompileLimits::default().compile_timeout,
            Duration::from_secs(60)
        );
        let p = Policy::from_yaml("maxComponentBytes: 1048576\ncompileTimeout: 1m 30s").unwrap();
        assert_eq!(
            p.compile(),
            &CompileLimits {
                max_component_bytes: 1 << 20,
                compile_timeout: Duration::from_secs(90),
            }
        );
    }

    #[test]
    fn bad_compile_limits_are_reported() {
        for (yaml, needle) in [
            ("maxComponentBytes: 0", "maxComponentBytes"),
            ("maxComponentBytes: -1", "not valid YAML"),
            ("compileTimeout: soon", "compileTimeout"),
            ("compileTimeout: 0s", "compileTimeout"),
        ] {
            let errors = Policy::from_yaml(yaml).unwrap_err();
            let msg = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            assert!(msg.contains(needle), "{yaml}: {msg}");
        }
    }

    #[test]
    fn deny_all_denies() {
        let p = Policy::deny_all();
        assert!(p.check(GrantKind::Tcp, "127.0.0.1:1").is_err());
        assert!(
            Policy::loopback()
                .check(GrantKind::Tcp, "127.0.0.1:1")
                .is_ok()
        );
        assert!(
            Policy::loopback()
                .check(GrantKind::Tcp, "192.0.2.1:1")
                .is_err()
        );
    }
}
