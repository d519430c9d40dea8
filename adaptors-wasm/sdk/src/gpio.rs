//! GPIO lines through the limb, opened by grant name. Native builds have no limb.

use crate::error::CapabilityError;

#[cfg(target_arch = "wasm32")]
use crate::bindings::octopus::adaptor::gpio as wit;

/// Whether a line is read or driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
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

/// Requests the line the grant names.
pub fn open(grant: &str, direction: Direction) -> Result<Line, CapabilityError> {
    #[cfg(target_arch = "wasm32")]
    {
        let direction = match direction {
            Direction::Input => wit::Direction::Input,
            Direction::Output => wit::Direction::Output,
        };
        Ok(Line {
            inner: wit::open(grant, direction)?,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (grant, direction);
        Err(CapabilityError::NotPermitted(
            "no limb: capabilities exist only inside the component".into(),
        ))
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
}
