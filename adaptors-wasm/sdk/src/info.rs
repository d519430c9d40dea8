//! What `describe` returns and what `configure` is given, as plain Rust types so that
//! adaptors and their native tests never touch the generated bindings.

use crate::error::{Error, Result};

/// A device model: `devices.edge.cattle.io/v1alpha1` + `ModbusDevice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub api_version: String,
    pub kind: String,
}

impl Model {
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        Model {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version, self.kind)
    }
}

/// What a resource field names; the limb turns each into a grant of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `host:port` over TCP.
    Tcp,
    /// `host:port` over UDP.
    Udp,
    /// A serial device path.
    Serial,
    /// A GPIO line, `chip:line`.
    Gpio,
}

/// A spec field (dotted path) that names a resource the adaptor opens. The grant has
/// the path as its name: open it with e.g. `socket::connect_tcp("endpoint", ..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceField {
    pub path: String,
    pub kind: ResourceKind,
}

/// A model the adaptor serves and its resource fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub model: Model,
    pub resource_fields: Vec<ResourceField>,
    /// The model's declaration (`models.json`, see [`crate::declare`]), if it has one.
    pub declaration: Option<&'static str>,
}

impl ModelInfo {
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        ModelInfo {
            model: Model::new(api_version, kind),
            resource_fields: Vec::new(),
            declaration: None,
        }
    }

    /// Attaches the model's declaration, usually
    /// `include_str!("models/thermodevices.json")`: the limb then checks every spec and
    /// status against it, and `octopus crd` makes the model's CRD from it.
    #[must_use]
    pub fn declared(mut self, json: &'static str) -> Self {
        self.declaration = Some(json);
        self
    }

    /// Declares that the spec field at `path` names a resource of `kind`.
    #[must_use]
    pub fn resource(mut self, path: impl Into<String>, kind: ResourceKind) -> Self {
        self.resource_fields.push(ResourceField {
            path: path.into(),
            kind,
        });
        self
    }
}

/// The adaptor's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The name DeviceLinks use, e.g. `adaptors.edge.cattle.io/counter`.
    pub name: String,
    pub version: String,
    pub models: Vec<ModelInfo>,
}

impl Info {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            models: Vec::new(),
        }
    }

    /// Adds a served model.
    #[must_use]
    pub fn model(mut self, model: ModelInfo) -> Self {
        self.models.push(model);
        self
    }

    /// `invalid-spec` unless `model` is one of ours: the limb should not route other
    /// models here, but a DeviceLink can name the wrong adaptor.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        if self.models.iter().any(|m| &m.model == model) {
            return Ok(());
        }
        let mut message = String::from("unsupported model ");
        push_model(&mut message, model);
        message.push_str(": ");
        message.push_str(&self.name);
        message.push_str(" serves ");
        for (i, served) in self.models.iter().enumerate() {
            if i > 0 {
                message.push_str(", ");
            }
            push_model(&mut message, &served.model);
        }
        Err(Error::InvalidSpec(message))
    }
}

/// Appends `apiVersion/kind`; by hand, as this runs in every `configure`.
fn push_model(out: &mut String, model: &Model) {
    out.push_str(&model.api_version);
    out.push('/');
    out.push_str(&model.kind);
}

/// Which device this instance drives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub namespace: String,
    pub name: String,
    /// The DeviceLink's uid.
    pub uid: String,
}

/// One resolved value of the DeviceLink's `references` (secret or config map key):
/// `reference`, `item` and the `value` bytes. The contract's own record, so that
/// `configure` hands the list over as it came instead of converting every entry.
pub type Reference = crate::bindings::octopus::adaptor::types::ReferenceValue;

/// Everything `configure` gets besides the parsed spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub model: Model,
    pub device: DeviceIdentity,
    pub references: Vec<Reference>,
}

impl Context {
    /// `namespace/name`, for log lines.
    pub fn device_name(&self) -> String {
        format!("{}/{}", self.device.namespace, self.device.name)
    }

    /// The bytes of a resolved reference, if the DeviceLink has it.
    pub fn reference(&self, reference: &str, item: &str) -> Option<&[u8]> {
        self.references
            .iter()
            .find(|r| r.reference == reference && r.item == item)
            .map(|r| r.value.as_slice())
    }

    /// A reference the spec needs, as UTF-8 text: a missing or binary value is
    /// `invalid-spec` naming it (`field` is the spec field that referred to it).
    pub fn required_text(&self, field: &str, reference: &str, item: &str) -> Result<&str> {
        let bytes = self.reference(reference, item).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "{field}: reference {reference:?} item {item:?} is not resolved"
            ))
        })?;
        std::str::from_utf8(bytes).map_err(|_| {
            Error::InvalidSpec(format!(
                "{field}: reference {reference:?} item {item:?} is not UTF-8 text"
            ))
        })
    }
}

/// How the limb should drive the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Interval between polls; `None` never polls (push-only devices).
    pub poll_interval_ms: Option<u64>,
}

impl Settings {
    /// Poll every `ms` milliseconds.
    pub fn poll_every_ms(ms: u64) -> Self {
        Settings {
            poll_interval_ms: Some(ms),
        }
    }

    /// Never poll; the device reports through [`crate::events::report_status`].
    pub fn push_only() -> Self {
        Settings {
            poll_interval_ms: None,
        }
    }
}
