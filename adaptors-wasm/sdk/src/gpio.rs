//! GPIO lines through the limb, opened by grant name. Native builds have no limb.
//!
//! [`open`] requests a line as input or output with the chip's other settings as they
//! are; [`request`] takes [`Settings`] (active-low, bias, drive, debounce, edge
//! detection), and a line requested with edge detection can [`Line::wait_edges`]
//! instead of polling its level. The last two need a limb of contract 0.1.1 or newer.

use std::time::Duration;

use crate::error::CapabilityError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::octopus::adaptor::gpio as wit;

/// Whether a line is read or driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// The line's bias resistor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bias {
    /// Leave it as the chip has it.
    #[default]
    AsIs,
    PullUp,
    PullDown,
    Disabled,
}

/// How an output drives its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Drive {
    #[default]
    PushPull,
    OpenDrain,
    OpenSource,
}

/// Which transitions of an input become edge events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Edges {
    #[default]
    None,
    Rising,
    Falling,
    Both,
}

/// How to request a line: start from [`Settings::input`] or [`Settings::output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub direction: Direction,
    /// Active means low on the pin: levels, writes and edge kinds are inverted.
    pub active_low: bool,
    pub bias: Bias,
    /// Outputs only.
    pub drive: Drive,
    /// Inputs only; at most one second.
    pub debounce: Duration,
    /// Inputs only.
    pub edges: Edges,
}

impl Settings {
    /// An input with the chip's bias, no debounce and no edge detection.
    pub fn input() -> Self {
        Self {
            direction: Direction::Input,
            active_low: false,
            bias: Bias::AsIs,
            drive: Drive::PushPull,
            debounce: Duration::ZERO,
            edges: Edges::None,
        }
    }

    /// A push-pull output.
    pub fn output() -> Self {
        Self {
            direction: Direction::Output,
            ..Self::input()
        }
    }

    pub fn active_low(self, active_low: bool) -> Self {
        Self { active_low, ..self }
    }

    pub fn bias(self, bias: Bias) -> Self {
        Self { bias, ..self }
    }

    pub fn drive(self, drive: Drive) -> Self {
        Self { drive, ..self }
    }

    pub fn debounce(self, debounce: Duration) -> Self {
        Self { debounce, ..self }
    }

    pub fn edges(self, edges: Edges) -> Self {
        Self { edges, ..self }
    }

    /// The debounce period in whole microseconds, as the limb takes it (saturating).
    pub fn debounce_us(&self) -> u32 {
        u32::try_from(self.debounce.as_micros()).unwrap_or(u32::MAX)
    }
}

/// One edge the kernel saw on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeEvent {
    /// Nanoseconds of the kernel's monotonic clock, stamped when the edge happened.
    pub timestamp_ns: u64,
    /// Inactive to active (after any active-low inversion), else the reverse.
    pub rising: bool,
    /// Position among the line's events since it was requested, from 1; a gap means
    /// events were dropped.
    pub seqno: u32,
}

/// A requested line. Dropping it releases the line.
pub struct Line {
    #[cfg(target_arch = "wasm32")]
    inner: wit::Line,
    #[cfg(not(target_arch = "wasm32"))]
    inner: std::convert::Infallible,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gpio::Line")
    }
}

#[cfg(target_arch = "wasm32")]
fn wit_direction(direction: Direction) -> wit::Direction {
    match direction {
        Direction::Input => wit::Direction::Input,
        Direction::Output => wit::Direction::Output,
    }
}

/// Requests the line the grant names, with the chip's other settings as they are.
pub fn open(grant: &str, direction: Direction) -> Result<Line, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(Line {
            inner: wit::open(grant, wit_direction(direction))?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, direction);
        Err(CapabilityError::no_limb())
    }
}

/// Requests the line the grant names with `settings`. Settings that do not fit the
/// direction (edges on an output, a drive mode on an input) are refused with
/// `invalid-argument`.
pub fn request(grant: &str, settings: Settings) -> Result<Line, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        let wit_settings = wit::LineSettings {
            direction: wit_direction(settings.direction),
            active_low: settings.active_low,
            bias: match settings.bias {
                Bias::AsIs => wit::Bias::AsIs,
                Bias::PullUp => wit::Bias::PullUp,
                Bias::PullDown => wit::Bias::PullDown,
                Bias::Disabled => wit::Bias::Disabled,
            },
            drive: match settings.drive {
                Drive::PushPull => wit::Drive::PushPull,
                Drive::OpenDrain => wit::Drive::OpenDrain,
                Drive::OpenSource => wit::Drive::OpenSource,
            },
            debounce_us: settings.debounce_us(),
            edges: match settings.edges {
                Edges::None => wit::Edges::None,
                Edges::Rising => wit::Edges::Rising,
                Edges::Falling => wit::Edges::Falling,
                Edges::Both => wit::Edges::Both,
            },
        };
        Ok(Line {
            inner: wit::request(grant, wit_settings)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, settings);
        Err(CapabilityError::no_limb())
    }
}

impl Line {
    /// The line's level (`true` = active).
    pub fn get(&self) -> Result<bool, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.get()?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            match self.inner {}
        }
    }

    /// Drives an output line.
    pub fn set(&self, active: bool) -> Result<(), CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            Ok(self.inner.set(active)?)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = active;
            match self.inner {}
        }
    }

    /// Waits up to `timeout` (zero: the limb's cap, which also bounds longer waits) for
    /// edge events and returns at most `max`, oldest first; empty when none came.
    pub fn wait_edges(
        &self,
        max: u32,
        timeout: Duration,
    ) -> Result<Vec<EdgeEvent>, CapabilityError> {
        #[cfg(target_arch = "wasm32")]
        {
            let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            Ok(self
                .inner
                .wait_edges(max, timeout_ms)?
                .into_iter()
                .map(|e| EdgeEvent {
                    timestamp_ns: e.timestamp_ns,
                    rising: e.rising,
                    seqno: e.seqno,
                })
                .collect())
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (max, timeout);
            match self.inner {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_start_plain_and_change_one_field_at_a_time() {
        let s = Settings::input()
            .active_low(true)
            .bias(Bias::PullUp)
            .debounce(Duration::from_millis(5))
            .edges(Edges::Both);
        assert_eq!(s.direction, Direction::Input);
        assert!(s.active_low);
        assert_eq!(s.bias, Bias::PullUp);
        assert_eq!(s.drive, Drive::PushPull);
        assert_eq!(s.debounce_us(), 5_000);
        assert_eq!(s.edges, Edges::Both);
        let o = Settings::output().drive(Drive::OpenDrain);
        assert_eq!(o.direction, Direction::Output);
        assert_eq!(o.edges, Edges::None);
        assert_eq!(
            Settings::input()
                .debounce(Duration::from_secs(1 << 40))
                .debounce_us(),
            u32::MAX
        );
    }

    #[test]
    fn native_builds_have_no_limb() {
        assert!(matches!(
            request("relay", Settings::output()),
            Err(CapabilityError::NotPermitted(_))
        ));
    }
}
