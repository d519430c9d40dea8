use super::testing::{Fake, fake, link, reporting, strict};
use super::*;

fn offer(named: Option<Arc<Fake>>, model_known: bool, loading: usize) -> Offer<Fake> {
    Offer {
        named,
        model_known,
        refusal: None,
        loading,
    }
}

fn refs(value: &str) -> Vec<ReferenceValue> {
    vec![ReferenceValue {
        reference: "creds".into(),
        item: "user".into(),
        value: value.as_bytes().to_vec(),
    }]
}

/// What runs in a case: its link, digest and reference value.
struct Now {
    link: DeviceLink,
    version: Arc<Fake>,
    refs: Vec<ReferenceValue>,
    status: serde_json::Value,
}

fn running(gear: &str, uid: &str, digest: &'static str, value: &str) -> Option<Now> {
    running_on(gear, uid, fake(digest), value)
}

fn running_on(gear: &str, uid: &str, version: Arc<Fake>, value: &str) -> Option<Now> {
    Some(Now {
        link: link("DummySpecialDevice", gear, None, uid),
        version,
        refs: refs(value),
        status: serde_json::json!({"polls": 3}),
    })
}

/// The expected action, without the adaptor's `Arc`.
#[derive(Debug, PartialEq)]
enum Want {
    Stop {
        forget: bool,
    },
    Refuse(Option<ConditionType>, &'static str),
    Wait(&'static str),
    Start(&'static str),
    Keep {
        update: bool,
        swap: Option<&'static str>,
        /// The notice's reason.
        notice: Option<&'static str>,
    },
}

fn want(a: Action<Fake>) -> (Want, String) {
    match a {
        Action::Stop { forget } => (Want::Stop { forget }, String::new()),
        Action::Refuse(b) => (Want::Refuse(b.stage, ""), b.message),
        Action::Wait(m) => (Want::Wait(""), m),
        Action::Start(a) => (Want::Start(a.digest), String::new()),
        Action::Keep {
            update,
            swap,
            notice,
        } => (
            Want::Keep {
                update,
                swap: swap.map(|a| a.digest),
                notice: notice.as_ref().map(|n| n.reason),
            },
            notice.map(|n| n.message).unwrap_or_default(),
        ),
    }
}

fn wanted(link: DeviceLink, value: &str, offer: Offer<Fake>) -> Observed<Fake> {
    Observed::Wanted {
        link: Arc::new(link),
        references: refs(value),
        offer,
    }
}

#[test]
fn decide_table() {
    use ConditionType::{AdaptorExisted, DeviceConnected, DeviceCreated, ModelExisted};
    let dummy = || link("DummySpecialDevice", "slow", None, "u1");
    let pinned = |p: &str| link("DummySpecialDevice", "slow", Some(p), "u1");
    struct Case {
        name: &'static str,
        observed: Observed<Fake>,
        now: Option<Now>,
        want: Want,
        /// A piece of the message the action carries.
        says: &'static str,
    }
    let cases = vec![
        Case {
            name: "a new link with its adaptor starts",
            observed: wanted(dummy(), "a", offer(Some(fake("d1")), true, 0)),
            now: None,
            want: Want::Start("d1"),
            says: "",
        },
        Case {
            name: "a running link with nothing changed is kept as it is",
            observed: wanted(dummy(), "a", offer(Some(fake("d1")), true, 0)),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: false,
                swap: None,
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a changed spec is an update",
            observed: wanted(dummy(), "a", offer(Some(fake("d1")), true, 0)),
            now: running("fast", "u1", "d1", "a"),
            want: Want::Keep {
                update: true,
                swap: None,
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a re-created link (new uid) is an update",
            observed: wanted(dummy(), "a", offer(Some(fake("d1")), true, 0)),
            now: running("slow", "u0", "d1", "a"),
            want: Want::Keep {
                update: true,
                swap: None,
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a changed reference value is an update",
            observed: wanted(dummy(), "b", offer(Some(fake("d1")), true, 0)),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: true,
                swap: None,
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a new version of the adaptor is a swap",
            observed: wanted(dummy(), "a", offer(Some(fake("d2")), true, 0)),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: false,
                swap: Some("d2"),
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a new version and a new spec at once: update and swap",
            observed: wanted(dummy(), "a", offer(Some(fake("d2")), true, 0)),
            now: running("fast", "u1", "d1", "a"),
            want: Want::Keep {
                update: true,
                swap: Some("d2"),
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a gone link stops and is forgotten",
            observed: Observed::Gone,
            now: running("slow", "u1", "d1", "a"),
            want: Want::Stop { forget: true },
            says: "",
        },
        Case {
            name: "a held link stops and keeps its status",
            observed: Observed::Held,
            now: running("slow", "u1", "d1", "a"),
            want: Want::Stop { forget: false },
            says: "",
        },
        Case {
            name: "a stage the mode checks failed: refused at that stage",
            observed: Observed::Blocked {
                link: Arc::new(dummy()),
                block: Block {
                    stage: Some(DeviceConnected),
                    message: "unable to fetch the reference parameters".into(),
                },
            },
            now: running("slow", "u1", "d1", "a"),
            want: Want::Refuse(Some(DeviceConnected), ""),
            says: "reference parameters",
        },
        Case {
            name: "no adaptor of that name: refused at AdaptorExisted",
            observed: wanted(dummy(), "a", offer(None, true, 0)),
            now: None,
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "is not loaded on this node",
        },
        Case {
            name: "an adaptor refused by name says why",
            observed: wanted(
                dummy(),
                "a",
                Offer {
                    named: None,
                    model_known: true,
                    refusal: Some("not a WebAssembly component".into()),
                    loading: 0,
                },
            ),
            now: None,
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "was refused: not a WebAssembly component",
        },
        Case {
            name: "the adaptor does not serve the kind: refused, and what ran stops",
            observed: wanted(
                link("RegisterDevice", "slow", None, "u1"),
                "a",
                offer(Some(fake("d1")), true, 0),
            ),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "does not serve RegisterDevice",
        },
        Case {
            name: "no loaded adaptor serves the model: refused at ModelExisted",
            observed: wanted(dummy(), "a", offer(None, false, 0)),
            now: None,
            want: Want::Refuse(Some(ModelExisted), ""),
            says: "no loaded adaptor serves devices.edge.cattle.io/v1alpha1/DummySpecialDevice",
        },
        Case {
            name: "missing while loads run and nothing runs: waits",
            observed: wanted(dummy(), "a", offer(None, false, 2)),
            now: None,
            want: Want::Wait(""),
            says: "waiting for 2 adaptor load(s)",
        },
        Case {
            name: "missing while loads run but it ran: refused (it was removed)",
            observed: wanted(dummy(), "a", offer(None, false, 1)),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Refuse(Some(ModelExisted), ""),
            says: "model isn't existed",
        },
        Case {
            name: "a pin that matches starts",
            observed: wanted(pinned("sha256:d1"), "a", offer(Some(fake("d1")), true, 0)),
            now: None,
            want: Want::Start("d1"),
            says: "",
        },
        Case {
            name: "a pin that does not match is refused",
            observed: wanted(pinned("sha256:d0"), "a", offer(Some(fake("d1")), true, 0)),
            now: None,
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "loaded digest sha256:d1 does not match the pinned sha256:d0",
        },
        Case {
            name: "a pin without its algorithm does not match",
            observed: wanted(pinned("d1"), "a", offer(Some(fake("d1")), true, 0)),
            now: None,
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "does not match the pinned d1",
        },
        Case {
            name: "a pinned device is not swapped to an unpinned version: it stops",
            observed: wanted(pinned("sha256:d1"), "a", offer(Some(fake("d2")), true, 0)),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Refuse(Some(AdaptorExisted), ""),
            says: "does not match the pinned sha256:d1",
        },
        Case {
            name: "a pin not loaded yet waits for the running loads",
            observed: wanted(pinned("sha256:d2"), "a", offer(Some(fake("d1")), true, 1)),
            now: None,
            want: Want::Wait(""),
            says: "as adaptors.edge.cattle.io/dummy at sha256:d2",
        },
        Case {
            name: "a new link whose spec the declared schema rejects: refused at DeviceCreated",
            observed: wanted(
                dummy(),
                "a",
                offer(Some(strict("d1", &["fast"], false)), true, 0),
            ),
            now: None,
            want: Want::Refuse(Some(DeviceCreated), ""),
            says: "spec.template.spec.gear: must be one of fast",
        },
        Case {
            name: "a new version whose schema rejects the running spec is held",
            observed: wanted(
                dummy(),
                "a",
                offer(Some(strict("d2", &["fast"], false)), true, 0),
            ),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: false,
                swap: None,
                notice: Some("SwapHeld"),
            },
            says: "held: d2 rejects this link's spec: spec.template.spec.gear",
        },
        Case {
            name: "a forced new version takes over even so",
            observed: wanted(
                dummy(),
                "a",
                offer(Some(strict("d2", &["fast"], true)), true, 0),
            ),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: false,
                swap: Some("d2"),
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a held link whose spec is fixed moves to the new version",
            observed: wanted(
                link("DummySpecialDevice", "fast", None, "u1"),
                "a",
                offer(Some(strict("d2", &["fast"], false)), true, 0),
            ),
            now: running("slow", "u1", "d1", "a"),
            want: Want::Keep {
                update: true,
                swap: Some("d2"),
                notice: None,
            },
            says: "",
        },
        Case {
            name: "a spec change the running version rejects keeps the last good spec",
            observed: wanted(
                link("DummySpecialDevice", "fast", None, "u1"),
                "a",
                offer(Some(strict("d1", &["slow"], false)), true, 0),
            ),
            now: running_on("slow", "u1", strict("d1", &["slow"], false), "a"),
            want: Want::Keep {
                update: false,
                swap: None,
                notice: Some("SpecRefused"),
            },
            says: "the changed spec does not match the schema d1 declares: spec.template.spec.gear",
        },
        Case {
            name: "a new version that drops a status field the device shows is held",
            observed: wanted(
                dummy(),
                "a",
                offer(Some(reporting("d2", &["count"])), true, 0),
            ),
            now: running_on("slow", "u1", reporting("d1", &["polls", "count"]), "a"),
            want: Want::Keep {
                update: false,
                swap: None,
                notice: Some("SwapHeld"),
            },
            says: "held: d2 drops status fields this link shows: status.polls: removed",
        },
        Case {
            name: "a dropped status field the device never showed does not hold",
            observed: wanted(
                dummy(),
                "a",
                offer(Some(reporting("d2", &["polls"])), true, 0),
            ),
            now: running_on("slow", "u1", reporting("d1", &["polls", "count"]), "a"),
            want: Want::Keep {
                update: false,
                swap: Some("d2"),
                notice: None,
            },
            says: "",
        },
    ];
    for c in cases {
        let current = c.now.as_ref().map(|n| Current {
            link: &n.link,
            version: &*n.version,
            references: &n.refs,
            status: &n.status,
        });
        let (got, message) = want(decide(&c.observed, current.as_ref()));
        assert_eq!(got, c.want, "{}", c.name);
        assert!(
            message.contains(c.says),
            "{}: {message:?} does not say {:?}",
            c.name,
            c.says
        );
    }
}

#[test]
fn references_compare_by_value() {
    assert!(same_references(&refs("a"), &refs("a")));
    assert!(!same_references(&refs("a"), &refs("b")));
    assert!(!same_references(&refs("a"), &[]));
}
