//! The DeviceLink condition pipeline, with Octopus's types, reasons and truncation.
//!
//! Conditions form an ordered pipeline: the list holds only the stages reached so far,
//! and `PHASE`/`STATUS` in `kubectl get dl` show the last one. Setting a stage drops
//! every later stage; a stage that is not `True` ends the list. This is the one place
//! that knows those rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The five stages, in pipeline order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum ConditionType {
    NodeExisted,
    ModelExisted,
    AdaptorExisted,
    DeviceCreated,
    DeviceConnected,
}

impl ConditionType {
    /// All stages in order.
    pub const ALL: [ConditionType; 5] = [
        Self::NodeExisted,
        Self::ModelExisted,
        Self::AdaptorExisted,
        Self::DeviceCreated,
        Self::DeviceConnected,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The stage after this one, if any.
    pub fn next(self) -> Option<Self> {
        Self::ALL.get(self.index() + 1).copied()
    }

    /// Octopus's reason when the stage succeeded.
    pub fn true_reason(self) -> &'static str {
        match self {
            Self::NodeExisted | Self::ModelExisted | Self::AdaptorExisted => "Found",
            Self::DeviceCreated => "Success",
            Self::DeviceConnected => "Healthy",
        }
    }

    /// Octopus's reason when the stage failed.
    pub fn false_reason(self) -> &'static str {
        match self {
            Self::NodeExisted | Self::ModelExisted | Self::AdaptorExisted => "NotFound",
            Self::DeviceCreated => "Fail",
            Self::DeviceConnected => "Unhealthy",
        }
    }

    /// Octopus's reason and message while the stage is being checked.
    pub fn unknown_reason(self) -> (&'static str, &'static str) {
        match self {
            Self::NodeExisted => (
                "Confirming",
                "verify if there is a suitable node to schedule",
            ),
            Self::ModelExisted => (
                "Confirming",
                "verify if there is a suitable model as a template",
            ),
            Self::AdaptorExisted => (
                "Confirming",
                "verify if there is a suitable adaptor to access",
            ),
            Self::DeviceCreated => (
                "Creating",
                "verify if there is a corresponding device created",
            ),
            Self::DeviceConnected => ("Connecting", "connect device"),
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One condition as it appears in `status.conditions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The ordered condition list of one DeviceLink.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    /// The condition of type `t`, if the pipeline reached it.
    pub fn get(&self, t: ConditionType) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == t)
    }

    /// The last condition: what `kubectl get dl` shows as PHASE and STATUS.
    pub fn phase(&self) -> Option<&Condition> {
        self.0.last()
    }

    /// Marks `t` succeeded and hands off to the next stage as Unknown.
    /// Returns whether anything changed.
    pub fn succeed(&mut self, t: ConditionType, now: &str) -> bool {
        let mut changed = self.set(t, ConditionStatus::True, t.true_reason(), "", now);
        if self.get(t).map(|c| c.status) == Some(ConditionStatus::True)
            && let Some(next) = t.next()
            && self.get(next).is_none()
        {
            let (reason, message) = next.unknown_reason();
            changed |= self.set(next, ConditionStatus::Unknown, reason, message, now);
        }
        changed
    }

    /// Marks `t` failed with `message`; later stages are dropped.
    pub fn fail(&mut self, t: ConditionType, message: &str, now: &str) -> bool {
        self.set(t, ConditionStatus::False, t.false_reason(), message, now)
    }

    /// Changes the reason and message of stage `t`, already reached, keeping its status
    /// and every later stage: how a running device tells of something that does not stop
    /// it (a held upgrade, a refused spec change). Returns whether anything changed.
    pub fn annotate(&mut self, t: ConditionType, reason: &str, message: &str, now: &str) -> bool {
        let Some(c) = self.0.iter_mut().find(|c| c.type_ == t) else {
            return false;
        };
        if c.reason == reason && c.message == message {
            return false;
        }
        c.reason = reason.to_owned();
        c.message = message.to_owned();
        c.last_update_time = Some(now.to_owned());
        true
    }

    /// Marks `t` as being checked; later stages are dropped.
    pub fn to_check(&mut self, t: ConditionType, now: &str) -> bool {
        let (reason, message) = t.unknown_reason();
        self.set(t, ConditionStatus::Unknown, reason, message, now)
    }

    /// Sets stage `t`. Every stage after `t` is dropped; if a stage before `t` is not
    /// `True`, `t` is not reached and only that prefix remains. Timestamps move only when
    /// something changed, and `lastTransitionTime` only when the status did (Octopus
    /// copied the previous update time instead, which made transitions lie).
    pub fn set(
        &mut self,
        t: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: &str,
    ) -> bool {
        let before = self.0.clone();
        let previous = self.get(t).cloned();
        let reached = self.0.iter().filter(|c| c.type_ < t).count() == t.index()
            && self
                .0
                .iter()
                .filter(|c| c.type_ < t)
                .all(|c| c.status == ConditionStatus::True);
        if reached
            && previous
                .as_ref()
                .is_some_and(|p| p.status == status && p.reason == reason && p.message == message)
        {
            // Nothing changed at this stage: later stages (often another controller's)
            // stay as they are. Octopus truncated here too, which let the brain erase
            // the limb's conditions on every re-validation.
            return false;
        }
        self.0.retain(|c| c.type_ < t);
        self.0.sort_by_key(|c| c.type_);
        let blocked = self
            .0
            .last()
            .is_some_and(|c| c.status != ConditionStatus::True)
            || self.0.len() != t.index();
        if blocked {
            return self.0 != before;
        }
        let condition = match previous {
            Some(p) if p.status == status && p.reason == reason && p.message == message => p,
            Some(p) if p.status == status => Condition {
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_update_time: Some(now.to_owned()),
                ..p
            },
            _ => Condition {
                type_: t,
                status,
                last_update_time: Some(now.to_owned()),
                last_transition_time: Some(now.to_owned()),
                reason: reason.to_owned(),
                message: message.to_owned(),
            },
        };
        self.0.push(condition);
        self.0 != before
    }
}

/// The current time as Kubernetes writes condition times (RFC 3339, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::ConditionStatus::*;
    use super::ConditionType::*;
    use super::*;

    fn summary(c: &Conditions) -> Vec<(ConditionType, ConditionStatus, String)> {
        c.0.iter()
            .map(|c| (c.type_, c.status, c.reason.clone()))
            .collect()
    }

    fn all_true_to(last: ConditionType) -> Conditions {
        let mut c = Conditions::default();
        for t in ConditionType::ALL {
            c.succeed(t, "t0");
            if t == last {
                break;
            }
        }
        c
    }

    #[test]
    fn pipeline_table() {
        struct Case {
            name: &'static str,
            start: Conditions,
            op: fn(&mut Conditions) -> bool,
            want: Vec<(ConditionType, ConditionStatus, &'static str)>,
            changed: bool,
        }
        // Every stage passed, each with its success reason.
        let healthy = [
            (NodeExisted, True, "Found"),
            (ModelExisted, True, "Found"),
            (AdaptorExisted, True, "Found"),
            (DeviceCreated, True, "Success"),
            (DeviceConnected, True, "Healthy"),
        ];
        let cases = vec![
            Case {
                name: "first success hands off to the model check",
                start: Conditions::default(),
                op: |c| c.succeed(NodeExisted, "t1"),
                want: vec![
                    (NodeExisted, True, "Found"),
                    (ModelExisted, Unknown, "Confirming"),
                ],
                changed: true,
            },
            Case {
                name: "failing the node collapses the list to one entry",
                start: all_true_to(DeviceConnected),
                op: |c| c.fail(NodeExisted, "adaptor node isn't existed", "t1"),
                want: vec![(NodeExisted, False, "NotFound")],
                changed: true,
            },
            Case {
                name: "a stage cannot be reached past a failed one",
                start: {
                    let mut c = Conditions::default();
                    c.fail(NodeExisted, "x", "t0");
                    c
                },
                op: |c| c.succeed(ModelExisted, "t1"),
                want: vec![(NodeExisted, False, "NotFound")],
                changed: false,
            },
            Case {
                name: "a stage cannot be reached past a missing one",
                start: Conditions::default(),
                op: |c| c.succeed(AdaptorExisted, "t1"),
                want: vec![],
                changed: false,
            },
            Case {
                name: "setting a middle stage drops the later ones",
                start: all_true_to(DeviceConnected),
                op: |c| c.to_check(AdaptorExisted, "t1"),
                want: vec![
                    (NodeExisted, True, "Found"),
                    (ModelExisted, True, "Found"),
                    (AdaptorExisted, Unknown, "Confirming"),
                ],
                changed: true,
            },
            Case {
                name: "the last stage has no successor",
                start: all_true_to(DeviceCreated),
                op: |c| c.succeed(DeviceConnected, "t1"),
                want: healthy.to_vec(),
                changed: true,
            },
            Case {
                name: "re-validating an early stage keeps the later stages",
                start: all_true_to(DeviceConnected),
                op: |c| c.succeed(NodeExisted, "t9"),
                want: healthy.to_vec(),
                changed: false,
            },
            Case {
                name: "repeating the same success changes nothing",
                start: all_true_to(DeviceConnected),
                op: |c| c.succeed(DeviceConnected, "t9"),
                want: healthy.to_vec(),
                changed: false,
            },
        ];
        for case in cases {
            let mut c = case.start.clone();
            let changed = (case.op)(&mut c);
            let want: Vec<_> = case
                .want
                .iter()
                .map(|(t, s, r)| (*t, *s, (*r).to_owned()))
                .collect();
            assert_eq!(summary(&c), want, "{}", case.name);
            assert_eq!(changed, case.changed, "{}: changed", case.name);
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = all_true_to(DeviceCreated);
        c.fail(DeviceConnected, "unable to connect to device", "t1");
        c.fail(DeviceConnected, "received error from adaptor", "t2");
        let dc = c.get(DeviceConnected).unwrap();
        assert_eq!(dc.last_transition_time.as_deref(), Some("t1"));
        assert_eq!(dc.last_update_time.as_deref(), Some("t2"));
        assert_eq!(dc.message, "received error from adaptor");
        c.succeed(DeviceConnected, "t3");
        let dc = c.get(DeviceConnected).unwrap();
        assert_eq!(dc.last_transition_time.as_deref(), Some("t3"));
    }

    #[test]
    fn serializes_like_octopus() {
        let c = all_true_to(NodeExisted);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json[0]["type"], "NodeExisted");
        assert_eq!(json[0]["status"], "True");
        assert_eq!(json[1]["reason"], "Confirming");
        assert!(json[0].get("lastUpdateTime").is_some());
    }
}
