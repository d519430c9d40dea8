//! The fleet: which devices run, on which adaptor version, and what the board says when
//! one cannot. Standalone and cluster mode both feed it; they differ only in where links
//! and adaptors come from (a folder, or the API) and what they check first (file syntax,
//! or the brain's conditions, the finalizer and the device instance).
//!
//! Each pass over a link is observe, decide, apply: the mode observes the link and the
//! adaptors on offer ([`Observed`], [`Offer`]); [`decide`], a pure function, turns that
//! and what runs ([`Current`]) into an [`Action`]; [`Fleet::apply`] carries it out on the
//! supervisors and the status board. This module knows nothing of files or Kubernetes.

use std::collections::HashMap;
use std::sync::Arc;

use crds::{ConditionType, DeviceLink};

use crate::adaptors::Adaptor;
use crate::bindings::ReferenceValue;
use crate::status::{DeviceReport, Phase, now};
use crate::supervisor::{self, Command, Context, Handle};

/// What the fleet needs to know of an adaptor version; a trait so that the decision is
/// tested without compiling WebAssembly.
pub trait Version {
    fn name(&self) -> &str;
    /// sha256 of the component bytes, hex.
    fn digest(&self) -> &str;
    fn serves(&self, api_version: &str, kind: &str) -> bool;
    /// What is wrong with `link`'s `template.spec` by the schema this version declares
    /// for its model; empty when it declares none.
    fn spec_problems(&self, link: &DeviceLink) -> Vec<String>;
    /// Whether this version takes over even links whose spec it rejects (pushed with
    /// `--force`).
    fn forced(&self) -> bool;
    /// `name version (digest)`, as events name a version.
    fn label(&self) -> String;
    /// The status schema this version declares for the model, if any.
    fn status_schema(&self, api_version: &str, kind: &str) -> Option<&serde_json::Value>;
}

/// The status fields `status` shows that `new` no longer declares and `old` did: a
/// swap would silently drop them from the device instance. Only fields the device
/// shows count; a removed field it never reported is harmless.
pub fn dropped_status_fields<A: Version>(
    old: &A,
    new: &A,
    link: &DeviceLink,
    status: &serde_json::Value,
) -> Vec<String> {
    let (api_version, kind) = (&link.spec.model.api_version, &link.spec.model.kind);
    let (Some(before), Some(after)) = (
        old.status_schema(api_version, kind),
        new.status_schema(api_version, kind),
    ) else {
        return Vec::new();
    };
    crds::compat::compare(before, after, "status")
        .into_iter()
        .filter(|c| {
            matches!(
                c.kind,
                crds::compat::ChangeKind::Removed | crds::compat::ChangeKind::Renamed { .. }
            )
        })
        .filter(|c| {
            let field = c.path.trim_start_matches("status.");
            let top = field.split(['.', '[']).next().unwrap_or(field);
            status.get(top).is_some()
        })
        .map(|c| c.to_string())
        .collect()
}

/// At most this many problems are named in one message; the rest are counted.
const SHOWN_PROBLEMS: usize = 3;

/// `problems` in one line, the first few named.
pub fn summary(problems: &[String]) -> String {
    let mut out = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        out.push_str(&format!(" (and {} more)", problems.len() - SHOWN_PROBLEMS));
    }
    out
}

/// Why `version` cannot start `link`: its spec does not match the declared schema.
pub fn spec_block<A: Version>(link: &DeviceLink, version: &A) -> Option<Block> {
    let problems = version.spec_problems(link);
    (!problems.is_empty()).then(|| Block {
        stage: Some(ConditionType::DeviceCreated),
        message: format!(
            "unable to make device from model: the spec does not match the schema {} declares: {}",
            version.label(),
            summary(&problems)
        ),
    })
}

impl Version for Adaptor {
    fn name(&self) -> &str {
        &self.info.name
    }
    fn digest(&self) -> &str {
        &self.digest
    }
    fn serves(&self, api_version: &str, kind: &str) -> bool {
        self.model(api_version, kind).is_some()
    }
    fn spec_problems(&self, link: &DeviceLink) -> Vec<String> {
        let (api_version, kind) = (&link.spec.model.api_version, &link.spec.model.kind);
        self.declared(api_version, kind).map_or_else(Vec::new, |d| {
            crds::structural::validate(&d.spec, &link.spec.template.spec, "spec.template.spec")
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }
    fn forced(&self) -> bool {
        self.forced
    }
    fn label(&self) -> String {
        self.to_string()
    }
    fn status_schema(&self, api_version: &str, kind: &str) -> Option<&serde_json::Value> {
        self.declared(api_version, kind)?.status.as_ref()
    }
}

/// The adaptors on offer for one link, as its mode sees them.
pub struct Offer<A> {
    /// The version loaded under the link's `spec.adaptor.name`.
    pub named: Option<Arc<A>>,
    /// Whether any loaded adaptor serves the link's model. Cluster mode says `true`: there
    /// the brain owns `ModelExisted`, and the fleet only sees links it confirmed.
    pub model_known: bool,
    /// Why the named adaptor was refused, when nothing is loaded under its name.
    pub refusal: Option<String>,
    /// Adaptor loads still running, any of which may bring the missing version.
    pub loading: usize,
}

/// Why a wanted device cannot run: the stage that failed and what to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// `None`: the link itself is invalid, before any stage.
    pub stage: Option<ConditionType>,
    pub message: String,
}

/// What a mode observed about one link.
pub enum Observed<A> {
    /// Not wanted on this node (gone, being deleted, moved away): nothing runs and the
    /// board forgets it.
    Gone,
    /// Wanted but not to be acted on yet (the brain has not confirmed it): nothing runs,
    /// and the board keeps what it showed.
    Held,
    /// Wanted, but a stage the mode checks failed.
    Blocked { link: Arc<DeviceLink>, block: Block },
    /// Wanted, with everything the mode checks in place.
    Wanted {
        link: Arc<DeviceLink>,
        references: Vec<ReferenceValue>,
        offer: Offer<A>,
    },
}

/// What runs for a link now.
pub struct Current<'a, A> {
    pub link: &'a DeviceLink,
    pub version: &'a A,
    pub references: &'a [ReferenceValue],
    /// The status the device shows now.
    pub status: &'a serde_json::Value,
}

/// Something a running device should tell without stopping: shown on its condition
/// (`stage` keeps its status) and as a Warning event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub stage: ConditionType,
    /// The condition's reason and the event's.
    pub reason: &'static str,
    pub message: String,
}

/// What to do about one link.
#[derive(Debug)]
pub enum Action<A> {
    /// Stop what runs; `forget`: the board drops the device too.
    Stop { forget: bool },
    /// Stop what runs and show why it cannot.
    Refuse(Block),
    /// Nothing runs yet; show why it waits.
    Wait(String),
    /// Start a supervisor on this version.
    Start(Arc<A>),
    /// Keep the running supervisor; tell it of a changed link or references, and hand it
    /// a different version. `notice`: what it must tell meanwhile (a held swap, a
    /// refused spec change); `None` clears an earlier one.
    Keep {
        update: bool,
        swap: Option<Arc<A>>,
        notice: Option<Notice>,
    },
}

/// Which version a wanted link runs on, or why none.
#[derive(Debug)]
pub enum Choice<A> {
    Use(Arc<A>),
    Wait(String),
    Refuse(Block),
}

/// Picks the version for `link`: the one loaded under its adaptor name, if it serves the
/// model and matches `spec.adaptor.digest` when that pins one. While loads are running
/// and nothing runs for the link, it waits instead of being refused: its version may be
/// among them.
pub fn choose<A: Version>(link: &DeviceLink, offer: &Offer<A>, running: bool) -> Choice<A> {
    let (api_version, kind) = (&link.spec.model.api_version, &link.spec.model.kind);
    let name = &link.spec.adaptor.name;
    let pin = link.spec.adaptor.digest.as_deref();
    let problem = match &offer.named {
        Some(a) if a.serves(api_version, kind) => match pin {
            Some(pin) if pin.strip_prefix("sha256:") != Some(a.digest()) => Block {
                stage: Some(ConditionType::AdaptorExisted),
                message: format!(
                    "the adaptor isn't existed: loaded digest sha256:{} does not match the pinned {pin}",
                    a.digest()
                ),
            },
            _ => return Choice::Use(a.clone()),
        },
        _ if !offer.model_known => Block {
            stage: Some(ConditionType::ModelExisted),
            message: format!("model isn't existed: no loaded adaptor serves {api_version}/{kind}"),
        },
        None => Block {
            stage: Some(ConditionType::AdaptorExisted),
            message: match &offer.refusal {
                Some(why) => format!("the adaptor isn't existed: {name} was refused: {why}"),
                None => format!("the adaptor isn't existed: {name} is not loaded on this node"),
            },
        },
        Some(_) => Block {
            stage: Some(ConditionType::AdaptorExisted),
            message: format!("the adaptor isn't existed: {name} does not serve {kind}"),
        },
    };
    if offer.loading > 0 && !running {
        return Choice::Wait(format!(
            "waiting for {} adaptor load(s) still running; none loaded so far serves {api_version}/{kind} as {name}{}",
            offer.loading,
            pin.map(|p| format!(" at {p}")).unwrap_or_default()
        ));
    }
    Choice::Refuse(problem)
}

/// The decision for one link: what `observed` asks for, given what runs.
pub fn decide<A: Version>(observed: &Observed<A>, current: Option<&Current<'_, A>>) -> Action<A> {
    let (link, references, offer) = match observed {
        Observed::Gone => return Action::Stop { forget: true },
        Observed::Held => return Action::Stop { forget: false },
        Observed::Blocked { block, .. } => return Action::Refuse(block.clone()),
        Observed::Wanted {
            link,
            references,
            offer,
        } => (link, references, offer),
    };
    let adaptor = match choose(link, offer, current.is_some()) {
        Choice::Use(a) => a,
        Choice::Wait(why) => return Action::Wait(why),
        Choice::Refuse(block) => return Action::Refuse(block),
    };
    let Some(cur) = current else {
        return match spec_block(link, &*adaptor) {
            Some(block) => Action::Refuse(block),
            None => Action::Start(adaptor),
        };
    };
    let changed = cur.link.spec != link.spec
        || cur.link.metadata.uid != link.metadata.uid
        || !same_references(cur.references, references);
    if cur.version.digest() == adaptor.digest() {
        return keep_checked(changed, None, link, cur.version, None);
    }
    // A new version takes over only if it accepts the spec (unless it was forced);
    // otherwise the running one keeps the device and the link says why.
    let problems = adaptor.spec_problems(link);
    let dropped = dropped_status_fields(cur.version, &*adaptor, link, cur.status);
    if (problems.is_empty() && dropped.is_empty()) || adaptor.forced() {
        return keep_checked(changed, Some(adaptor.clone()), link, &*adaptor, None);
    }
    let why = if problems.is_empty() {
        format!(
            "drops status fields this link shows: {}; push the new version with --force to accept that",
            summary(&dropped)
        )
    } else {
        format!(
            "rejects this link's spec: {}; fix the spec, or push the new version with --force",
            summary(&problems)
        )
    };
    let held = Notice {
        stage: ConditionType::AdaptorExisted,
        reason: "SwapHeld",
        message: format!("held: {} {why}", adaptor.label()),
    };
    keep_checked(changed, None, link, cur.version, Some(held))
}

/// Keeps the running device on `version` (swapping to it when `swap`), passing on a
/// changed spec only if `version` accepts it: a spec it rejects leaves the device on its
/// last good spec, with a notice naming the fields.
fn keep_checked<A: Version>(
    changed: bool,
    swap: Option<Arc<A>>,
    link: &DeviceLink,
    version: &A,
    notice: Option<Notice>,
) -> Action<A> {
    if !changed {
        return Action::Keep {
            update: false,
            swap,
            notice,
        };
    }
    let problems = version.spec_problems(link);
    if problems.is_empty() {
        return Action::Keep {
            update: true,
            swap,
            notice,
        };
    }
    Action::Keep {
        update: false,
        swap,
        notice: notice.or_else(|| {
            Some(Notice {
                stage: ConditionType::DeviceCreated,
                reason: "SpecRefused",
                message: format!(
                    "the changed spec does not match the schema {} declares: {}; the device keeps its last good spec",
                    version.label(),
                    summary(&problems)
                ),
            })
        }),
    }
}

/// Whether two resolutions are equal (the generated WIT type has no `PartialEq`).
pub fn same_references(a: &[ReferenceValue], b: &[ReferenceValue]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.reference == b.reference && a.item == b.item && a.value == b.value)
}

struct Running {
    handle: Handle,
    link: Arc<DeviceLink>,
    version: Arc<Adaptor>,
    references: Vec<ReferenceValue>,
    /// The notice shown now, so that it is told once, not on every pass.
    notice: Option<Notice>,
}

/// The running supervisors of a limb, one per link key.
pub struct Fleet {
    ctx: Arc<Context>,
    running: HashMap<String, Running>,
}

impl Fleet {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            running: HashMap::new(),
        }
    }

    /// How many devices run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub fn is_running(&self, key: &str) -> bool {
        self.running.contains_key(key)
    }

    /// Whether `key` runs with exactly `link`'s spec.
    pub fn runs_spec(&self, key: &str, link: &DeviceLink) -> bool {
        self.running
            .get(key)
            .is_some_and(|r| r.link.spec == link.spec)
    }

    /// The keys of the running devices.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.running.keys()
    }

    /// The keys of the running devices on the adaptor named `name`.
    pub fn using(&self, name: &str) -> impl Iterator<Item = &String> {
        self.running
            .iter()
            .filter(move |(_, r)| r.handle.adaptor_name == name)
            .map(|(k, _)| k)
    }

    /// Decides what `observed` asks of the link `key`, and does it.
    pub fn apply(&mut self, key: &str, observed: Observed<Adaptor>) {
        // The device's status matters only when another version is on offer (a swap
        // must not drop a field it shows): read it then, not on every pass.
        let swap_offered = match (&observed, self.running.get(key)) {
            (Observed::Wanted { offer, .. }, Some(r)) => offer
                .named
                .as_ref()
                .is_some_and(|a| a.digest != r.version.digest),
            _ => false,
        };
        let status = if swap_offered {
            self.ctx
                .board
                .read(key, |r| r.status.clone())
                .unwrap_or_default()
        } else {
            serde_json::Value::Null
        };
        let action = {
            let current = self.running.get(key).map(|r| Current {
                link: &r.link,
                version: &*r.version,
                references: &r.references,
                status: &status,
            });
            decide(&observed, current.as_ref())
        };
        let (link, references) = match observed {
            Observed::Blocked { link, .. } => (Some(link), Vec::new()),
            Observed::Wanted {
                link, references, ..
            } => (Some(link), references),
            Observed::Gone | Observed::Held => (None, Vec::new()),
        };
        match (action, link) {
            (Action::Stop { forget }, _) => {
                self.stop(key);
                if forget {
                    self.ctx.board.remove(key);
                }
            }
            (Action::Refuse(block), Some(link)) => {
                self.stop(key);
                show_block(&self.ctx, key, &link, &block);
            }
            (Action::Wait(why), Some(link)) => {
                self.ctx.board.update(
                    key,
                    || report_for(&link),
                    |r| {
                        r.phase = Phase::Pending;
                        r.last_error = Some(why);
                    },
                );
            }
            (Action::Start(adaptor), Some(link)) => {
                let stamp = now();
                self.ctx.board.update(
                    key,
                    || report_for(&link),
                    |r| {
                        r.conditions.succeed(ConditionType::NodeExisted, &stamp);
                        r.conditions.succeed(ConditionType::ModelExisted, &stamp);
                    },
                );
                let handle = supervisor::spawn(
                    self.ctx.clone(),
                    link.clone(),
                    adaptor.clone(),
                    references.clone(),
                );
                self.running.insert(
                    key.to_owned(),
                    Running {
                        handle,
                        link,
                        version: adaptor,
                        references,
                        notice: None,
                    },
                );
            }
            (
                Action::Keep {
                    update,
                    swap,
                    notice,
                },
                Some(link),
            ) => {
                let Some(r) = self.running.get_mut(key) else {
                    return;
                };
                if update {
                    r.link = link.clone();
                    r.references = references.clone();
                    r.handle.send(Command::Update(link, references));
                }
                if let Some(adaptor) = swap {
                    r.version = adaptor.clone();
                    r.handle.send(Command::Swap(adaptor));
                }
                if r.notice != notice {
                    show_notice(&self.ctx, key, r.notice.as_ref(), notice.as_ref());
                    r.notice = notice;
                }
            }
            // Every other action comes from an observation that carries its link.
            (_, None) => {}
        }
    }

    fn stop(&mut self, key: &str) {
        if let Some(r) = self.running.remove(key) {
            r.handle.retire();
        }
    }

    /// Stops every device and waits until all have.
    pub async fn stop_all(&mut self) {
        supervisor::stop_all(self.running.drain().map(|(_, r)| r.handle)).await;
    }
}

/// Shows `notice` on the running device's condition and as a Warning event, or, when it
/// is gone, puts back the condition's usual reason.
fn show_notice(ctx: &Context, key: &str, before: Option<&Notice>, notice: Option<&Notice>) {
    let stamp = now();
    ctx.board.update(
        key,
        || DeviceReport::new("", key, "", ""),
        |r| {
            if let Some(b) = before {
                r.conditions
                    .annotate(b.stage, b.stage.true_reason(), "", &stamp);
            }
            if let Some(n) = notice {
                r.conditions.annotate(n.stage, n.reason, &n.message, &stamp);
                r.last_error = Some(n.message.clone());
                r.record(crate::status::Event::new(
                    crate::status::EventType::Warning,
                    n.reason,
                    &n.message,
                ));
            }
        },
    );
}

/// The board's first report of a link, before anything ran.
fn report_for(link: &DeviceLink) -> DeviceReport {
    let mut report = DeviceReport::new(
        link.namespace_or_default(),
        link.name(),
        &link.spec.model.kind,
        &link.spec.adaptor.name,
    );
    report.device_metrics = link.wants_device_metrics();
    report
}

/// Shows a blocked link: every stage before the failed one succeeded, the failed one
/// says why, and the device is pending.
fn show_block(ctx: &Context, key: &str, link: &DeviceLink, block: &Block) {
    let stamp = now();
    ctx.board.update(
        key,
        || report_for(link),
        |r| {
            r.phase = Phase::Pending;
            r.last_error = Some(match block.stage {
                Some(_) => block.message.clone(),
                None => format!("invalid DeviceLink: {}", block.message),
            });
            let Some(stage) = block.stage else {
                r.conditions.0.clear();
                return;
            };
            for earlier in [
                ConditionType::NodeExisted,
                ConditionType::ModelExisted,
                ConditionType::AdaptorExisted,
                ConditionType::DeviceCreated,
            ] {
                if earlier < stage {
                    r.conditions.succeed(earlier, &stamp);
                }
            }
            r.conditions.fail(stage, &block.message, &stamp);
        },
    );
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
