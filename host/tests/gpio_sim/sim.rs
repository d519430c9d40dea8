//! A gpio-sim chip made through configfs for one test, removed when dropped.
//!
//! Layout (Linux 6.1, `Documentation/admin-guide/gpio/gpio-sim.rst`):
//! `/sys/kernel/config/gpio-sim/<dev>/<bank>/{label,num_lines,line<N>/{name,hog/...}}`;
//! writing 1 to `<dev>/live` creates the chip, whose name the bank's `chip_name` then
//! gives; the pins are `/sys/devices/platform/<dev_name>/<chip_name>/sim_gpio<N>/`.

use std::fs;
use std::path::{Path, PathBuf};

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// A line that a kernel consumer (a hog) holds from the moment the chip goes live.
pub struct Hog<'a> {
    pub line: u32,
    pub name: &'a str,
    /// `input`, `output-high` or `output-low`.
    pub direction: &'a str,
}

/// What the outside world does to a pin.
#[derive(Clone, Copy, Debug)]
pub enum Pull {
    Up,
    Down,
}

pub struct Sim {
    dev: PathBuf,
    lines: Vec<u32>,
    hogs: Vec<u32>,
    chip: String,
    pins: PathBuf,
}

fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

impl Sim {
    /// A live chip of `num_lines` lines, labelled `octo-<name>`, with `names` given to
    /// lines (what a board's `gpio-line-names` does) and `hogs` held by the kernel.
    pub fn new(name: &str, num_lines: u32, names: &[(u32, &str)], hogs: &[Hog]) -> Self {
        let dev = Path::new(CONFIGFS).join(name);
        fs::create_dir(&dev)
            .unwrap_or_else(|e| panic!("mkdir {}: {e} (is gpio-sim there?)", dev.display()));
        let bank = dev.join("bank0");
        fs::create_dir(&bank).unwrap();
        write(&bank.join("num_lines"), &num_lines.to_string());
        write(&bank.join("label"), &format!("octo-{name}"));
        let mut lines: Vec<u32> = names
            .iter()
            .map(|(l, _)| *l)
            .chain(hogs.iter().map(|h| h.line))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        for line in &lines {
            fs::create_dir(bank.join(format!("line{line}"))).unwrap();
        }
        for (line, line_name) in names {
            write(&bank.join(format!("line{line}/name")), line_name);
        }
        for hog in hogs {
            let dir = bank.join(format!("line{}/hog", hog.line));
            fs::create_dir(&dir).unwrap();
            write(&dir.join("name"), hog.name);
            write(&dir.join("direction"), hog.direction);
        }
        write(&dev.join("live"), "1");
        let chip = read(&bank.join("chip_name"));
        let pins = Path::new("/sys/devices/platform")
            .join(read(&dev.join("dev_name")))
            .join(&chip);
        Self {
            dev,
            lines,
            hogs: hogs.iter().map(|h| h.line).collect(),
            chip,
            pins,
        }
    }

    /// The chip's name, `gpiochipN`, as a grant's target names it.
    pub fn chip(&self) -> &str {
        &self.chip
    }

    /// The level on the pin: 1 or 0.
    pub fn value(&self, line: u32) -> u8 {
        match read(&self.pins.join(format!("sim_gpio{line}/value"))).as_str() {
            "1" => 1,
            "0" => 0,
            other => panic!("sim_gpio{line}/value reads {other:?}"),
        }
    }

    /// Pulls the pin up or down from outside.
    pub fn pull(&self, line: u32, pull: Pull) {
        let value = match pull {
            Pull::Up => "pull-up",
            Pull::Down => "pull-down",
        };
        write(&self.pins.join(format!("sim_gpio{line}/pull")), value);
    }
}

impl Drop for Sim {
    /// Takes the chip down and removes its configfs tree, leaves first. Errors are
    /// printed, not raised: a test that already failed must show its own failure.
    fn drop(&mut self) {
        let bank = self.dev.join("bank0");
        let mut steps = vec![("write", self.dev.join("live"))];
        steps.extend(
            self.hogs
                .iter()
                .map(|l| ("rmdir", bank.join(format!("line{l}/hog")))),
        );
        steps.extend(
            self.lines
                .iter()
                .map(|l| ("rmdir", bank.join(format!("line{l}")))),
        );
        steps.push(("rmdir", bank));
        steps.push(("rmdir", self.dev.clone()));
        for (op, path) in steps {
            let done = if op == "write" {
                fs::write(&path, "0")
            } else {
                fs::remove_dir(&path)
            };
            if let Err(e) = done {
                eprintln!("gpio-sim teardown: {op} {}: {e}", path.display());
            }
        }
    }
}
