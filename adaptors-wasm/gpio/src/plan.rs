//! From a `GPIODevice` spec to what the adaptor requests: one plan per line, checked
//! before any line is touched, so a wrong spec is an `invalid-spec` naming the property
//! rather than a capability refusal.

use std::collections::BTreeSet;
use std::time::Duration;

use crds::models::gpio::{GPIOBias, GPIODeviceSpec, GPIODirection, GPIODrive, GPIOEdges};
use octopus_adaptor_sdk::gpio::{Bias, Drive, Edges, Settings};
use octopus_adaptor_sdk::{Error, Result, duration};

/// The longest debounce period the limb accepts.
const MAX_DEBOUNCE_MS: u64 = 1000;

/// One line as the spec asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The property's name in status.
    pub name: String,
    /// The grant the limb resolved from `chip` and this property's `line`.
    pub grant: String,
    pub settings: Settings,
    /// Outputs: the level the spec asks for (`None` for inputs).
    pub drive: Option<bool>,
    /// Outputs: the level left at shutdown.
    pub shutdown: bool,
}

impl Plan {
    pub fn edges(&self) -> bool {
        self.settings.edges != Edges::None
    }
}

/// The plans of every property, in spec order, and the level-read interval in ms.
pub fn plan(spec: &GPIODeviceSpec) -> Result<(Vec<Plan>, u64)> {
    let interval = duration::parse_ms(spec.sync_interval())
        .map_err(|e| Error::InvalidSpec(format!("syncInterval: {e}")))?;
    if interval == 0 {
        return Err(Error::InvalidSpec("syncInterval: must be positive".into()));
    }
    let mut names = BTreeSet::new();
    let plans = spec
        .properties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = |why: &str| Error::InvalidSpec(format!("properties[{i}] ({}): {why}", p.name));
            if p.name.is_empty() {
                return Err(at("needs a name"));
            }
            if !names.insert(p.name.as_str()) {
                return Err(at("the name is used twice"));
            }
            let mut settings = match p.direction {
                GPIODirection::Input => Settings::input(),
                GPIODirection::Output => Settings::output(),
            };
            settings = settings.active_low(p.active_low.unwrap_or(false));
            if let Some(bias) = p.bias {
                settings = settings.bias(match bias {
                    GPIOBias::PullUp => Bias::PullUp,
                    GPIOBias::PullDown => Bias::PullDown,
                    GPIOBias::Disabled => Bias::Disabled,
                });
            }
            let output = p.direction == GPIODirection::Output;
            if output {
                if p.edges.is_some() || p.debounce.is_some() {
                    return Err(at("edges and debounce are for inputs"));
                }
                if let Some(drive) = p.drive {
                    settings = settings.drive(match drive {
                        GPIODrive::PushPull => Drive::PushPull,
                        GPIODrive::OpenDrain => Drive::OpenDrain,
                        GPIODrive::OpenSource => Drive::OpenSource,
                    });
                }
            } else {
                if p.drive.is_some() || p.value.is_some() || p.shutdown_value.is_some() {
                    return Err(at("drive, value and shutdownValue are for outputs"));
                }
                if let Some(text) = &p.debounce {
                    let ms = duration::parse_ms(text).map_err(|e| at(&format!("debounce: {e}")))?;
                    if ms > MAX_DEBOUNCE_MS {
                        return Err(at(&format!("debounce: {text} is more than 1s")));
                    }
                    settings = settings.debounce(Duration::from_millis(ms));
                }
                if let Some(edges) = p.edges {
                    settings = settings.edges(match edges {
                        GPIOEdges::Rising => Edges::Rising,
                        GPIOEdges::Falling => Edges::Falling,
                        GPIOEdges::Both => Edges::Both,
                    });
                }
            }
            Ok(Plan {
                name: p.name.clone(),
                grant: format!("properties[{i}].line"),
                settings,
                drive: output.then(|| p.value.unwrap_or(false)),
                shutdown: p.shutdown_value.unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((plans, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> GPIODeviceSpec {
        serde_json::from_str(yaml).unwrap()
    }

    #[test]
    fn properties_become_plans_with_their_grants_and_settings() {
        let (plans, interval) = plan(&spec(
            r#"{"chip":"gpiochip0","syncInterval":"250ms","properties":[
                {"name":"relay","line":"relay1","direction":"output","drive":"open-drain","value":true,"shutdownValue":true},
                {"name":"door","line":17,"direction":"input","bias":"pull-up","activeLow":true,"debounce":"10ms","edges":"both"}]}"#,
        ))
        .unwrap();
        assert_eq!(interval, 250);
        assert_eq!(plans[0].grant, "properties[0].line");
        assert_eq!(plans[0].drive, Some(true));
        assert!(plans[0].shutdown);
        assert_eq!(plans[0].settings.drive, Drive::OpenDrain);
        assert!(!plans[0].edges());
        assert_eq!(plans[1].grant, "properties[1].line");
        assert_eq!(plans[1].drive, None);
        assert!(plans[1].settings.active_low);
        assert_eq!(plans[1].settings.bias, Bias::PullUp);
        assert_eq!(plans[1].settings.debounce, Duration::from_millis(10));
        assert!(plans[1].edges());
    }

    #[test]
    fn an_output_is_inactive_unless_the_spec_says_otherwise() {
        let (plans, interval) = plan(&spec(
            r#"{"chip":"c","properties":[{"name":"led","line":1,"direction":"output"}]}"#,
        ))
        .unwrap();
        assert_eq!(interval, 1000, "syncInterval defaults to 1s");
        assert_eq!((plans[0].drive, plans[0].shutdown), (Some(false), false));
    }

    #[test]
    fn settings_that_do_not_fit_the_direction_name_the_property() {
        for (props, want) in [
            (
                r#"{"name":"a","line":1,"direction":"output","edges":"both"}"#,
                "properties[0] (a): edges",
            ),
            (
                r#"{"name":"a","line":1,"direction":"input","value":true}"#,
                "for outputs",
            ),
            (
                r#"{"name":"a","line":1,"direction":"input","debounce":"2s"}"#,
                "more than 1s",
            ),
            (
                r#"{"name":"a","line":1,"direction":"input","debounce":"soon"}"#,
                "debounce",
            ),
            (
                r#"{"name":"a","line":1,"direction":"input"},{"name":"a","line":2,"direction":"input"}"#,
                "properties[1] (a): the name is used twice",
            ),
        ] {
            let err =
                plan(&spec(&format!(r#"{{"chip":"c","properties":[{props}]}}"#))).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec(m) if m.contains(want)),
                "{props}: {err:?}"
            );
        }
        let err = plan(&spec(r#"{"chip":"c","syncInterval":"0s"}"#)).unwrap_err();
        assert!(matches!(&err, Error::InvalidSpec(m) if m.contains("syncInterval")));
    }
}
