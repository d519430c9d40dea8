//! `octopus:adaptor/gpio`: GPIO lines on the Linux character device, or on a simulated
//! chip for machines without GPIO.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use crds::GrantKind;

use super::policy::parse_gpio_target;
use super::{Capabilities, CapabilityError};

/// Which way a requested line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// A requested line.
pub trait LineIo: Send + Sync {
    fn get(&self) -> io::Result<bool>;
    fn set(&self, active: bool) -> io::Result<()>;
}

/// Requests lines. The calls are short ioctls, so the trait is synchronous.
pub trait Backend: Send + Sync {
    fn request(&self, chip: &str, line: u32, direction: Direction) -> io::Result<Box<dyn LineIo>>;
}

/// The Linux GPIO character device (`/dev/gpiochipN`).
pub struct CdevBackend;

struct CdevLine {
    req: gpiocdev::Request,
    offset: u32,
    output: bool,
}

impl LineIo for CdevLine {
    fn get(&self) -> io::Result<bool> {
        self.req
            .value(self.offset)
            .map(|v| v == gpiocdev::line::Value::Active)
            .map_err(io::Error::other)
    }

    fn set(&self, active: bool) -> io::Result<()> {
        if !self.output {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "line was requested as input",
            ));
        }
        let v = if active {
            gpiocdev::line::Value::Active
        } else {
            gpiocdev::line::Value::Inactive
        };
        self.req
            .set_value(self.offset, v)
            .map(|_| ())
            .map_err(io::Error::other)
    }
}

impl Backend for CdevBackend {
    fn request(&self, chip: &str, line: u32, direction: Direction) -> io::Result<Box<dyn LineIo>> {
        let path = if chip.starts_with('/') {
            chip.to_owned()
        } else {
            format!("/dev/{chip}")
        };
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(path)
            .with_consumer("octopus-limb")
            .with_line(line);
        let output = matches!(direction, Direction::Output);
        if output {
            builder.as_output(gpiocdev::line::Value::Inactive);
        } else {
            builder.as_input();
        }
        let req = builder.request().map_err(io::Error::other)?;
        Ok(Box::new(CdevLine {
            req,
            offset: line,
            output,
        }))
    }
}

/// A simulated chip: every line is a shared boolean; outputs can be read back by inputs
/// of the same line, so a test can wire an adaptor's output to its own input.
#[derive(Clone, Default)]
pub struct SimBackend {
    lines: Arc<Mutex<HashMap<(String, u32), bool>>>,
}

impl SimBackend {
    /// Sets a line's level from outside, like a button press.
    pub fn drive(&self, chip: &str, line: u32, active: bool) {
        if let Ok(mut l) = self.lines.lock() {
            l.insert((chip.to_owned(), line), active);
        }
    }

    /// Reads a line's level from outside, like a probe on an LED.
    pub fn level(&self, chip: &str, line: u32) -> bool {
        self.lines
            .lock()
            .map(|l| l.get(&(chip.to_owned(), line)).copied().unwrap_or(false))
            .unwrap_or(false)
    }
}

struct SimLine {
    sim: SimBackend,
    key: (String, u32),
    output: bool,
}

impl LineIo for SimLine {
    fn get(&self) -> io::Result<bool> {
        Ok(self.sim.level(&self.key.0, self.key.1))
    }

    fn set(&self, active: bool) -> io::Result<()> {
        if !self.output {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "line was requested as input",
            ));
        }
        self.sim.drive(&self.key.0, self.key.1, active);
        Ok(())
    }
}

impl Backend for SimBackend {
    fn request(&self, chip: &str, line: u32, direction: Direction) -> io::Result<Box<dyn LineIo>> {
        Ok(Box::new(SimLine {
            sim: self.clone(),
            key: (chip.to_owned(), line),
            output: matches!(direction, Direction::Output),
        }))
    }
}

/// The host side of a guest's GPIO `line`.
pub struct Line {
    io: Box<dyn LineIo>,
}

impl Capabilities {
    pub fn open_gpio(
        &mut self,
        grant: &str,
        direction: Direction,
    ) -> Result<Line, CapabilityError> {
        let g = self.authorize(grant, GrantKind::Gpio)?;
        let opened = parse_gpio_target(&g.target)
            .map_err(CapabilityError::InvalidArgument)
            .and_then(|(chip, line)| {
                self.backends()
                    .gpio
                    .request(chip, line, direction)
                    .map_err(super::io_error)
            });
        match opened {
            Ok(io) => Ok(Line { io }),
            Err(e) => {
                self.release();
                Err(e)
            }
        }
    }
}

impl Line {
    /// The line's level (active or not, after any active-low inversion).
    pub fn get(&self) -> Result<bool, CapabilityError> {
        self.io.get().map_err(super::io_error)
    }

    /// Drives an output line.
    pub fn set(&self, active: bool) -> Result<(), CapabilityError> {
        self.io.set(active).map_err(super::io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Backends, Grants, Limits, Policy};
    use crds::Grant;

    fn caps(sim: SimBackend) -> Capabilities {
        let grants = vec![
            Grant {
                name: "led".into(),
                kind: GrantKind::Gpio,
                target: "gpiochip0:17".into(),
            },
            Grant {
                name: "button".into(),
                kind: GrantKind::Gpio,
                target: "gpiochip0:4".into(),
            },
        ];
        let mut backends = Backends::real(true);
        backends.gpio = Arc::new(sim);
        Capabilities::new(
            Arc::new(
                Grants::resolve(
                    &grants,
                    &serde_json::Value::Null,
                    crate::capabilities::grants::NO_FIELDS,
                )
                .0,
            ),
            Arc::new(Policy::from_yaml("gpio: ['gpiochip0 10-20']").unwrap()),
            Limits::default(),
            backends,
        )
    }

    #[test]
    fn granted_line_drives_the_simulated_chip() {
        let sim = SimBackend::default();
        let mut c = caps(sim.clone());
        let led = c.open_gpio("led", Direction::Output).unwrap();
        led.io.set(true).unwrap();
        assert!(sim.level("gpiochip0", 17));
        let input = c.open_gpio("led", Direction::Input).unwrap();
        assert!(input.io.get().unwrap());
        assert!(input.io.set(false).is_err(), "inputs cannot be driven");
    }

    #[test]
    fn line_outside_policy_is_refused_even_when_granted() {
        let mut c = caps(SimBackend::default());
        let err = c.open_gpio("button", Direction::Input).err().unwrap();
        assert!(
            matches!(&err, CapabilityError::NotPermitted(m) if m.contains("gpiochip0:4")),
            "{err}"
        );
    }
}
