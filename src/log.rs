//! One-line logs on stderr, filtered by a process-wide level.
//!
//! A push server on a small box wants logs it can grep, not a logging
//! framework: the level is one atomic read, so a disabled `debug!` costs
//! nothing on the hot path.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much to log; each level includes the ones above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    /// Parses the names accepted by `--log-level` / `WSPUSH_LOG`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Sets the level for the whole process (the server has one log).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// True when a line at `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line; use the macros, which skip formatting when disabled.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    eprintln!("wspush {}: {}", level, args);
}

macro_rules! log_at {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            $crate::log::write($lvl, format_args!($($arg)*));
        }
    };
}
macro_rules! error { ($($arg:tt)*) => { log_at!($crate::log::Level::Error, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { log_at!($crate::log::Level::Warn, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { log_at!($crate::log::Level::Info, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { log_at!($crate::log::Level::Debug, $($arg)*) }; }
