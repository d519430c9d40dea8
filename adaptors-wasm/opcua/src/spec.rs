//! Validation of an `OPCUADevice` spec: everything that can be checked before talking
//! to the server is refused here as `invalid-spec` naming the field (`path: why`).

use std::str::FromStr;

use crds::models::opcua::{
    OPCUADeviceSpec, OpcuaPropertyType, OpcuaSecurityMode, OpcuaSecurityPolicy,
};
use octopus_adaptor_sdk::spec::SpecError;
use octopus_adaptor_sdk::{Context, duration};
use opcua_types::{NodeId, Variant};

use crate::value;

type Result<T> = std::result::Result<T, SpecError>;

/// The policies this adaptor speaks, named in the refusal of any other.
pub const SUPPORTED_POLICIES: &str = "None, Basic256Sha256, Aes128Sha256RsaOaep";

/// The longest publishing interval we ask for; longer would outlive the keep-alive
/// bookkeeping of most servers.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// A validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `opc.tcp://host:port/path`, sent in Hello and CreateSession.
    pub endpoint: String,
    pub identity: Identity,
    pub interval_ms: u64,
    pub timeout_ms: u32,
    pub properties: Vec<Property>,
    /// The signing policy, and our certificate and key.
    pub security: Option<Security>,
    /// The trusted server certificates: required by a signing policy, and used under
    /// policy None to encrypt a password the server wants encrypted.
    pub pins: Vec<crate::session::Pin>,
}

/// A signing policy's settings from `securityPolicy`, `securityMode` and `tlsConfig`.
#[derive(Clone, PartialEq)]
pub struct Security {
    pub policy: crate::security::Policy,
    pub mode: crate::security::Mode,
    /// Our application certificate and key from `tlsConfig`; `None` when the adaptor is
    /// to make its own.
    pub own: Option<Own>,
}

/// An application certificate (DER) and its key.
#[derive(Clone, PartialEq)]
pub struct Own {
    pub key: rsa::RsaPrivateKey,
    pub cert: Vec<u8>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Security")
            .field("policy", &self.policy)
            .field("mode", &self.mode)
            .field("own", &self.own.as_ref().map(|_| "tlsConfig"))
            .finish()
    }
}

/// Who the session is activated as.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    UserName { user: String, password: Vec<u8> },
}

impl std::fmt::Debug for Identity {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("Anonymous"),
            Identity::UserName { user, .. } => write!(f, "UserName({user:?})"),
        }
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub kind: OpcuaPropertyType,
    pub node: NodeId,
    /// The value to write, parsed; `None` for read-only properties and those without.
    pub write: Option<(String, Variant)>,
}

fn error(path: &str, why: impl std::fmt::Display) -> SpecError {
    SpecError::at(path, why)
}

/// Checks `spec`, resolving `basicAuth` references through `ctx`.
pub fn check(spec: &OPCUADeviceSpec, ctx: &Context) -> Result<Config> {
    let protocol = &spec.protocol;
    let endpoint = protocol.endpoint.trim().to_owned();
    let authority = endpoint
        .strip_prefix("opc.tcp://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| {
            error(
                "protocol.endpoint",
                format!("{endpoint:?} is not an opc.tcp://host:port URL"),
            )
        })?;
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(error(
            "protocol.endpoint",
            format!("{endpoint:?} needs a host and port, e.g. opc.tcp://plc:4840"),
        ));
    }
    let pins = pins(protocol, ctx)?;
    let security = security(protocol, ctx)?;
    if security.is_some() && pins.is_empty() {
        return Err(error(
            "protocol.serverCertificateThumbprint",
            "a signing policy trusts only a pinned server certificate: give its SHA-1 \
             thumbprint (or serverCertificatePEM)",
        ));
    }
    let identity = match &protocol.basic_auth {
        None => Identity::Anonymous,
        Some(auth) => {
            let path = "protocol.basicAuth";
            let user = literal_or_ref(
                ctx,
                auth.username.as_deref(),
                auth.username_ref.as_ref(),
                &format!("{path}.usernameRef"),
            )?
            .ok_or_else(|| error(path, "a username is required (username or usernameRef)"))?;
            let user = String::from_utf8(user)
                .map_err(|_| error(&format!("{path}.usernameRef"), "the username is not UTF-8"))?;
            let password = literal_or_ref(
                ctx,
                auth.password.as_deref(),
                auth.password_ref.as_ref(),
                &format!("{path}.passwordRef"),
            )?
            .unwrap_or_default();
            Identity::UserName { user, password }
        }
    };
    let parameters = spec.parameters.clone().unwrap_or_default();
    let interval_ms = duration::parse_ms(parameters.sync_interval())
        .map_err(|e| error("parameters.syncInterval", e))?;
    if !(100..=MAX_INTERVAL_MS).contains(&interval_ms) {
        return Err(error(
            "parameters.syncInterval",
            format!("must be between 100ms and 1h, got {interval_ms} ms"),
        ));
    }
    let timeout_ms =
        duration::parse_ms(parameters.timeout()).map_err(|e| error("parameters.timeout", e))?;
    let timeout_ms = u32::try_from(timeout_ms.clamp(100, 300_000)).unwrap_or(300_000);

    octopus_adaptor_sdk::spec::unique_names(
        "properties",
        spec.properties.iter().map(|p| p.name.as_str()),
    )?;
    let mut properties = Vec::with_capacity(spec.properties.len());
    for (i, p) in spec.properties.iter().enumerate() {
        let path = format!("properties[{i}]");
        let node = NodeId::from_str(p.visitor.node_id.trim()).map_err(|_| {
            error(
                &format!("{path}.visitor.nodeID"),
                format!(
                    "{:?} is not a node ID such as ns=1;s=Temperature or ns=1;i=1005",
                    p.visitor.node_id
                ),
            )
        })?;
        let write = match (&p.value, p.read_only()) {
            (Some(text), false) => Some((
                text.clone(),
                value::parse(p.r#type, text).map_err(|e| error(&format!("{path}.value"), e))?,
            )),
            _ => None,
        };
        properties.push(Property {
            name: p.name.clone(),
            kind: p.r#type,
            node,
            write,
        });
    }
    Ok(Config {
        endpoint,
        identity,
        interval_ms,
        timeout_ms,
        properties,
        security,
        pins,
    })
}

/// The pinned server certificates: `serverCertificateThumbprint`, `serverCertificatePEM`
/// and `serverCertificatePEMRef`, any of which trusts the server.
fn pins(
    protocol: &crds::models::opcua::OpcuaProtocol,
    ctx: &Context,
) -> Result<Vec<crate::session::Pin>> {
    use crate::session::Pin;
    let mut pins = Vec::new();
    if let Some(pin) = protocol
        .server_certificate_thumbprint
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let hex: String = pin.chars().filter(|c| *c != ':').collect();
        if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(error(
                "protocol.serverCertificateThumbprint",
                format!("{pin:?} is not a SHA-1 thumbprint (40 hex digits)"),
            ));
        }
        pins.push(Pin::Thumbprint(hex));
    }
    let field = "protocol.serverCertificatePEM";
    if let Some(pem) = literal_or_ref(
        ctx,
        protocol.server_certificate_pem.as_deref(),
        protocol.server_certificate_pem_ref.as_ref(),
        &format!("{field}Ref"),
    )? {
        let der = crate::security::certificate_from_pem(&pem).map_err(|e| error(field, e))?;
        pins.push(Pin::Certificate(der));
    }
    Ok(pins)
}

/// The signing policy's settings, or `None` under policy None.
fn security(
    protocol: &crds::models::opcua::OpcuaProtocol,
    ctx: &Context,
) -> Result<Option<Security>> {
    use crate::security::{Mode, Policy};
    let policy = match protocol.security_policy() {
        OpcuaSecurityPolicy::None => None,
        OpcuaSecurityPolicy::Basic256Sha256 => Some(Policy::Basic256Sha256),
        OpcuaSecurityPolicy::Aes128Sha256RsaOaep => Some(Policy::Aes128Sha256RsaOaep),
        deprecated => {
            return Err(error(
                "protocol.securityPolicy",
                format!("{deprecated:?} is not supported; supported: {SUPPORTED_POLICIES}"),
            ));
        }
    };
    let mode = protocol.security_mode();
    let Some(policy) = policy else {
        if mode != OpcuaSecurityMode::None {
            return Err(error(
                "protocol.securityMode",
                format!("{mode:?} needs a security policy other than None"),
            ));
        }
        if protocol.tls_config.is_some() {
            return Err(error(
                "protocol.tlsConfig",
                "a client certificate is only used by a signing policy (securityPolicy)",
            ));
        }
        return Ok(None);
    };
    let mode = match mode {
        OpcuaSecurityMode::Sign => Mode::Sign,
        OpcuaSecurityMode::SignAndEncrypt => Mode::SignAndEncrypt,
        OpcuaSecurityMode::None => {
            return Err(error(
                "protocol.securityMode",
                format!("{policy:?} needs Sign or SignAndEncrypt"),
            ));
        }
    };
    let path = "protocol.tlsConfig";
    let Some(tls) = protocol.tls_config.as_ref() else {
        // The adaptor makes its own application certificate.
        return Ok(Some(Security {
            policy,
            mode,
            own: None,
        }));
    };
    let cert = literal_or_ref(
        ctx,
        tls.cert_file_pem.as_deref(),
        tls.cert_file_pem_ref.as_ref(),
        &format!("{path}.certFilePEMRef"),
    )?
    .ok_or_else(|| error(path, "certFilePEM or certFilePEMRef is required"))?;
    let key = literal_or_ref(
        ctx,
        tls.key_file_pem.as_deref(),
        tls.key_file_pem_ref.as_ref(),
        &format!("{path}.keyFilePEMRef"),
    )?
    .ok_or_else(|| error(path, "keyFilePEM or keyFilePEMRef is required"))?;
    let own_cert = crate::security::certificate_from_pem(&cert)
        .map_err(|e| error(&format!("{path}.certFilePEM"), e))?;
    let own_key = crate::security::private_key_from_pem(&key)
        .map_err(|e| error(&format!("{path}.keyFilePEM"), e))?;
    let public = crate::security::public_key(&own_cert)
        .map_err(|e| error(&format!("{path}.certFilePEM"), e))?;
    if public != own_key.to_public_key() {
        return Err(error(path, "the key does not belong to the certificate"));
    }
    Ok(Some(Security {
        policy,
        mode,
        own: Some(Own {
            key: own_key,
            cert: own_cert,
        }),
    }))
}

/// A literal or its `*Ref` twin; the reference wins when both are set.
fn literal_or_ref(
    ctx: &Context,
    literal: Option<&str>,
    reference: Option<&crds::models::extension::ReferenceRelationship>,
    field: &str,
) -> Result<Option<Vec<u8>>> {
    if let Some(r) = reference {
        return ctx
            .reference(&r.name, &r.item)
            .map(|bytes| Some(bytes.to_vec()))
            .ok_or_else(|| {
                error(
                    field,
                    format!(
                        "reference {:?} item {:?} is not among the DeviceLink's resolved references",
                        r.name, r.item
                    ),
                )
            });
    }
    Ok(literal.map(|s| s.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Pin;
    use octopus_adaptor_sdk::{DeviceIdentity, Model};

    fn ctx() -> Context {
        Context {
            model: Model::new("devices.edge.cattle.io/v1alpha1", "OPCUADevice"),
            device: DeviceIdentity {
                namespace: "default".into(),
                name: "t".into(),
                uid: "u".into(),
            },
            references: Vec::new(),
        }
    }

    fn parse(json: serde_json::Value) -> Result<Config> {
        let spec: OPCUADeviceSpec = serde_json::from_value(json).unwrap();
        check(&spec, &ctx())
    }

    #[test]
    fn a_full_spec_is_checked() {
        let config = parse(serde_json::json!({
            "parameters": {"syncInterval": "2s", "timeout": "3s"},
            "protocol": {"endpoint": "opc.tcp://127.0.0.1:4840/x",
                          "basicAuth": {"username": "u", "password": "p"}},
            "properties": [
                {"name": "a", "type": "int32", "value": "7", "visitor": {"nodeID": "ns=2;s=A"}},
                {"name": "b", "type": "double", "readOnly": true, "value": "1", "visitor": {"nodeID": "ns=2;i=5"}}
            ]
        }))
        .unwrap();
        assert_eq!((config.interval_ms, config.timeout_ms), (2000, 3000));
        assert_eq!(
            config.identity,
            Identity::UserName {
                user: "u".into(),
                password: b"p".to_vec()
            }
        );
        assert!(!format!("{:?}", config.identity).contains('p'));
        assert_eq!(config.properties[0].node, NodeId::new(2, "A"));
        assert_eq!(
            config.properties[0].write,
            Some(("7".into(), Variant::Int32(7)))
        );
        assert_eq!(
            config.properties[1].write, None,
            "read-only is never written"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let base = |protocol: serde_json::Value, properties: serde_json::Value| {
            parse(serde_json::json!({"protocol": protocol, "properties": properties}))
                .unwrap_err()
                .0
        };
        let ok = serde_json::json!({"endpoint": "opc.tcp://h:1"});
        let err = base(
            serde_json::json!({"endpoint": "opc.tcp://h"}),
            serde_json::json!([]),
        );
        assert!(err.starts_with("protocol.endpoint:"), "{err}");
        for deprecated in ["Basic128Rsa15", "Basic256", "Aes256Sha256RsaPss"] {
            let err = base(
                serde_json::json!({"endpoint": "opc.tcp://h:1", "securityPolicy": deprecated}),
                serde_json::json!([]),
            );
            assert!(
                err.starts_with("protocol.securityPolicy:")
                    && err.contains(deprecated)
                    && err.contains("not supported; supported: None"),
                "{err}"
            );
        }
        let err = base(
            ok.clone(),
            serde_json::json!([{"name": "a", "type": "int16", "value": "70000", "visitor": {"nodeID": "ns=1;i=1"}}]),
        );
        assert!(err.starts_with("properties[0].value:"), "{err}");
        let err = base(
            ok.clone(),
            serde_json::json!([{"name": "a", "type": "int16", "visitor": {"nodeID": "Temperature"}}]),
        );
        assert!(err.starts_with("properties[0].visitor.nodeID:"), "{err}");
        let err = base(
            ok.clone(),
            serde_json::json!([
                {"name": "a", "type": "int16", "visitor": {"nodeID": "ns=1;i=1"}},
                {"name": "a", "type": "int16", "visitor": {"nodeID": "ns=1;i=2"}}]),
        );
        assert!(err.contains("duplicate"), "{err}");
        let err = base(
            serde_json::json!({"endpoint": "opc.tcp://h:1", "basicAuth": {"passwordRef": {"name": "s", "item": "p"}}}),
            serde_json::json!([]),
        );
        assert!(err.starts_with("protocol.basicAuth"), "{err}");
    }

    #[test]
    fn signing_policies_need_a_mode_a_pin_and_a_matching_certificate() {
        use crate::security::{Mode, Policy};
        let cert = include_str!("../testdata/client.crt");
        let key = include_str!("../testdata/client.key");
        let pin = "AB:".repeat(19) + "AB";
        let protocol = |extra: serde_json::Value| {
            let mut p = serde_json::json!({
                "endpoint": "opc.tcp://h:1",
                "securityPolicy": "Aes128Sha256RsaOaep",
                "securityMode": "Sign",
                "serverCertificateThumbprint": pin,
                "tlsConfig": {"certFilePEM": cert, "keyFilePEM": key},
            });
            for (k, v) in extra.as_object().unwrap() {
                p[k] = v.clone();
            }
            parse(serde_json::json!({"protocol": p, "properties": []}))
        };
        let config = protocol(serde_json::json!({})).unwrap();
        let security = config.security.unwrap();
        assert_eq!(security.policy, Policy::Aes128Sha256RsaOaep);
        assert_eq!(security.mode, Mode::Sign);
        assert_eq!(config.pins, [Pin::Thumbprint("AB".repeat(20))]);
        assert!(security.own.unwrap().cert.starts_with(&[0x30, 0x82]), "DER");
        // Without tlsConfig the adaptor makes its own certificate.
        let own = protocol(serde_json::json!({"tlsConfig": null})).unwrap();
        assert!(own.security.unwrap().own.is_none());
        // A pinned certificate instead of a thumbprint, or both.
        let server = include_str!("../testdata/other.crt");
        let by_cert = protocol(serde_json::json!({
            "serverCertificateThumbprint": null, "serverCertificatePEM": server}))
        .unwrap();
        let der = crate::security::certificate_from_pem(server.as_bytes()).unwrap();
        assert_eq!(by_cert.pins, [Pin::Certificate(der.clone())]);
        let both = protocol(serde_json::json!({"serverCertificatePEM": server})).unwrap();
        assert_eq!(both.pins.len(), 2);
        // Under policy None a pin is kept, for an encrypted password.
        let none = parse(serde_json::json!({"protocol": {
            "endpoint": "opc.tcp://h:1", "serverCertificatePEM": server}, "properties": []}))
        .unwrap();
        assert!(none.security.is_none());
        assert_eq!(none.pins, [Pin::Certificate(der)]);
        // PKCS#1 keys are taken too, and must belong to the certificate.
        let other = serde_json::json!({"tlsConfig": {
            "certFilePEM": include_str!("../testdata/other.crt"),
            "keyFilePEM": include_str!("../testdata/other-pkcs1.key")}});
        assert!(protocol(other).is_ok());
        for (extra, field, words) in [
            (
                serde_json::json!({"securityMode": "None"}),
                "protocol.securityMode",
                "Sign or SignAndEncrypt",
            ),
            (
                serde_json::json!({"serverCertificateThumbprint": null}),
                "protocol.serverCertificateThumbprint",
                "pinned",
            ),
            (
                serde_json::json!({"serverCertificateThumbprint": "AB"}),
                "protocol.serverCertificateThumbprint",
                "40 hex",
            ),
            (
                serde_json::json!({"serverCertificateThumbprint": null, "serverCertificatePEM": "junk"}),
                "protocol.serverCertificatePEM",
                "PEM",
            ),
            (
                serde_json::json!({"tlsConfig": {"certFilePEM": cert}}),
                "protocol.tlsConfig",
                "keyFilePEM",
            ),
            (
                serde_json::json!({"tlsConfig": {"certFilePEM": "junk", "keyFilePEM": key}}),
                "protocol.tlsConfig.certFilePEM",
                "PEM",
            ),
            (
                serde_json::json!({"tlsConfig": {"certFilePEM": cert, "keyFilePEM": include_str!("../testdata/other-pkcs1.key")}}),
                "protocol.tlsConfig",
                "does not belong",
            ),
            (
                serde_json::json!({"securityPolicy": "None"}),
                "protocol.securityMode",
                "needs a security policy",
            ),
        ] {
            let err = protocol(extra.clone()).unwrap_err().0;
            assert!(
                err.starts_with(field) && err.contains(words),
                "{extra}: {err}"
            );
        }
        let none =
            serde_json::json!({"endpoint": "opc.tcp://h:1", "tlsConfig": {"certFilePEM": cert}});
        let err = parse(serde_json::json!({"protocol": none, "properties": []}))
            .unwrap_err()
            .0;
        assert!(err.starts_with("protocol.tlsConfig"), "{err}");
    }
}
