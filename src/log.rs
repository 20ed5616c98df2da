//! One-line logs on stderr, filtered by a process-wide level.
//!
//! A push server on a small box wants logs it can grep, not a logging
//! framework: the level is one atomic read, so a disabled `debug!` costs
//! nothing on the hot path.
//!
//! # Logging never stops the server
//!
//! The loop never writes to stderr itself: `eprintln!` panics when stderr
//! is a closed pipe and blocks when it is a pipe nobody reads, and either
//! would take every client down with it. Lines go into a bounded queue
//! instead, and one writer thread copies them to stderr, ignoring write
//! errors. When the queue is full a line is dropped and counted, and the
//! writer reports the count once it catches up. [`flush`] lets `main` wait
//! (briefly) for the queue before the process exits.
//!
//! # Refusals are rate-limited
//!
//! A refusal a user may need to debug (a rejected token, a refused origin,
//! a failed push auth, a limit) is logged at `info` with the peer and the
//! reason — but a client retrying in a loop must not flood the log, so each
//! kind has a token bucket, and the next line that gets through says how
//! many were suppressed. At `debug` nothing is suppressed.

use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        Some(match s.trim().to_ascii_lowercase().as_str() {
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

/// What threads that are not a server's loop log at.
static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

thread_local! {
    /// The level of the server whose loop runs on this thread: each server
    /// logs at its own level, even with several in one process.
    static THREAD_LEVEL: std::cell::Cell<Option<Level>> = const { std::cell::Cell::new(None) };
}

/// Sets this thread's level (a server's loop, for as long as it runs);
/// returns the one it replaces, to put back.
pub fn set_thread_level(level: Option<Level>) -> Option<Level> {
    THREAD_LEVEL.with(|l| l.replace(level))
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `wspush LEVEL: message`.
    #[default]
    Text = 0,
    /// One JSON object per line: `time`, `level`, `message`, `fields`.
    Json = 1,
}

impl Format {
    /// Parses the names accepted by `--log-format` / `WSPUSH_LOG_FORMAT`.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "text" => Format::Text,
            "json" => Format::Json,
            _ => return None,
        })
    }

    /// Makes every line logged from now on use this format (the process
    /// has one log).
    pub fn install(self) {
        set_format(self);
    }

    /// One complete line (newline included) in this format, stamped now:
    /// for what `main` writes to stderr itself, so a JSON log stays JSON
    /// to the last line.
    pub fn line(self, level: Level, message: &str) -> String {
        render(self, SystemTime::now(), level, message, &[])
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Text => "text",
            Format::Json => "json",
        })
    }
}

static FORMAT: AtomicU8 = AtomicU8::new(Format::Text as u8);

/// Sets the format of every later line.
pub fn set_format(format: Format) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == Format::Json as u8 {
        Format::Json
    } else {
        Format::Text
    }
}

/// True when a line at `level` would be printed (on this thread).
pub fn enabled(level: Level) -> bool {
    let limit = THREAD_LEVEL
        .with(|l| l.get())
        .map_or_else(|| LEVEL.load(Ordering::Relaxed), |l| l as u8);
    level as u8 <= limit
}

/// Lines waiting for the writer; beyond this they are dropped and counted.
/// A few hundred KiB at most, and far more than a healthy stderr ever lags.
const QUEUE_LINES: usize = 4096;
/// A line longer than this is cut (a client-supplied value in a log line
/// must not make one line huge).
const MAX_LINE: usize = 2048;

struct Queue {
    lines: VecDeque<String>,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: u64,
    /// The writer holds lines it has taken but not yet written.
    busy: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    lines: VecDeque::new(),
    dropped: 0,
    busy: false,
});
/// Signalled when lines arrive.
static ARRIVED: Condvar = Condvar::new();
/// Signalled when the writer has written everything it had.
static IDLE: Condvar = Condvar::new();
static WRITER: Once = Once::new();

/// A poisoned lock only means some thread panicked while holding it; the
/// queue itself is still a valid queue, and logging must go on.
fn lock() -> MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the writer thread on first use. If the thread cannot be made,
/// lines simply queue up to the limit and are counted as dropped.
fn start_writer() {
    WRITER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("wspush-log".into())
            .spawn(writer);
    });
}

fn writer() {
    // A descriptor of its own: blocked in `write` on a full pipe, the
    // writer must not hold std's stderr lock, or `main`'s last words at
    // exit would wait behind it.
    let mut out: Box<dyn Write> = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::stderr()),
    };
    let mut batch = VecDeque::new();
    let mut text = String::new();
    loop {
        let dropped = {
            let mut q = lock();
            while q.lines.is_empty() && q.dropped == 0 {
                q.busy = false;
                IDLE.notify_all();
                q = ARRIVED.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            q.busy = true;
            std::mem::swap(&mut q.lines, &mut batch);
            std::mem::take(&mut q.dropped)
        };
        text.clear();
        text.extend(batch.drain(..));
        if dropped > 0 {
            text.push_str(&dropped_line(format(), SystemTime::now(), dropped));
        }
        // Nowhere to report a failed log write; the server goes on.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        if text.capacity() > 1 << 20 {
            text = String::new();
        }
    }
}

/// Formats one line and queues it; never blocks on stderr, never panics.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    enqueue(format_line(level, args));
}

fn format_line(level: Level, args: fmt::Arguments<'_>) -> String {
    render(format(), SystemTime::now(), level, &args.to_string(), &[])
}

/// One line, newline included. Whatever the message holds, it stays one
/// line (nothing logged can forge a second one) of bounded length.
fn render(format: Format, now: SystemTime, level: Level, message: &str, fields: &[(&str, Value)]) -> String {
    match format {
        Format::Text => {
            let mut line = format!("wspush {level}: {message}");
            if line.contains(['\n', '\r']) {
                line = line.replace('\n', "\\n").replace('\r', "\\r");
            }
            let mut line = cut(&line).into_owned();
            line.push('\n');
            line
        }
        Format::Json => {
            let message = cut(message);
            // serde_json escapes every control character: one line.
            let mut line = format!(
                "{{\"time\":\"{}\",\"level\":\"{level}\",\"message\":{}",
                rfc3339(now),
                Value::from(message)
            );
            if !fields.is_empty() {
                let map: serde_json::Map<String, Value> =
                    fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                line.push_str(&format!(",\"fields\":{}", Value::Object(map)));
            }
            line.push_str("}\n");
            line
        }
    }
}

/// `text` cut to [`MAX_LINE`] bytes on a char boundary, with `…`: a
/// client-supplied value in a log line must not make one line huge.
fn cut(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_LINE {
        return text.into();
    }
    let mut end = MAX_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// The writer's note that lines were dropped.
fn dropped_line(format: Format, now: SystemTime, dropped: u64) -> String {
    match format {
        Format::Text => format!("wspush warn: {dropped} log lines dropped: stderr was not keeping up\n"),
        Format::Json => render(
            format,
            now,
            Level::Warn,
            "log lines dropped: stderr was not keeping up",
            &[("dropped", dropped.into())],
        ),
    }
}

/// `2024-02-29T23:59:59.123Z`: RFC 3339, UTC, milliseconds. A clock
/// before 1970 prints the epoch.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Year, month, day of the `days`-th day after 1970-01-01 (proleptic
/// Gregorian), by Howard Hinnant's `civil_from_days`: eras of 400 years,
/// years starting in March so the leap day is last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn enqueue(line: String) {
    start_writer();
    let mut q = lock();
    if q.lines.len() >= QUEUE_LINES {
        q.dropped += 1;
    } else {
        q.lines.push_back(line);
    }
    drop(q);
    ARRIVED.notify_one();
}

/// Waits until every queued line is written, or `limit` passes (stderr may
/// be a pipe nobody reads). For the end of `main`, so the last lines are
/// not lost when the process exits.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut q = lock();
    while !q.lines.is_empty() || q.busy || q.dropped > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !WRITER.is_completed() {
            return;
        }
        q = match IDLE.wait_timeout(q, left) {
            Ok((q, _)) => q,
            Err(e) => e.into_inner().0,
        };
    }
}

/// The kinds of refusal that are rate-limited separately, so a flood of
/// one kind cannot hide the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A register whose token auth rejected.
    Token,
    /// An upgrade from an origin not in `--allowed-origins`.
    Origin,
    /// A push endpoint refused (401 or 403).
    Push,
    /// Over a limit (`--max-connections`).
    Limit,
}

/// Lines of one kind allowed in a burst, and refilled per second after.
const BURST: f64 = 10.0;
const PER_SEC: f64 = 1.0;

/// A token bucket that remembers how many lines it refused.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

impl Bucket {
    pub const fn new() -> Bucket {
        Bucket {
            tokens: BURST,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written at `now` (`n` lines were
    /// suppressed since the last one); `None` when it is suppressed.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * PER_SEC;
            self.tokens = (self.tokens + refill).min(BURST);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

static BUCKETS: Mutex<[Bucket; 4]> = Mutex::new([Bucket::new(), Bucket::new(), Bucket::new(), Bucket::new()]);

/// Whether a refusal line of `kind` is written now; `Some(suppressed)` if so.
pub fn admit_refusal(kind: Refusal) -> Option<u64> {
    if !enabled(Level::Info) {
        return None;
    }
    if enabled(Level::Debug) {
        return Some(0);
    }
    let mut buckets = BUCKETS.lock().unwrap_or_else(|e| e.into_inner());
    buckets[kind as usize].admit(Instant::now())
}

/// Writes an admitted refusal line, with the count of suppressed ones.
pub fn write_refusal(suppressed: u64, args: fmt::Arguments<'_>) {
    if suppressed == 0 {
        write(Level::Info, args);
    } else if format() == Format::Json {
        let message = args.to_string();
        let fields = [("suppressed", suppressed.into())];
        enqueue(render(
            Format::Json,
            SystemTime::now(),
            Level::Info,
            &message,
            &fields,
        ));
    } else {
        write(
            Level::Info,
            format_args!("{args} ({suppressed} similar lines suppressed)"),
        );
    }
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
/// A refusal at `info`, rate-limited per kind; the arguments are only
/// formatted (and a peer address only looked up) when the line is written.
macro_rules! refusal {
    ($kind:expr, $($arg:tt)*) => {
        if let Some(n) = $crate::log::admit_refusal($kind) {
            $crate::log::write_refusal(n, format_args!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two servers in one process log at their own levels: the level is
    /// the loop thread's, not the process's.
    #[test]
    fn each_thread_has_its_own_level() {
        let quiet = std::thread::spawn(|| {
            set_thread_level(Some(Level::Error));
            (enabled(Level::Error), enabled(Level::Info))
        });
        let chatty = std::thread::spawn(|| {
            set_thread_level(Some(Level::Debug));
            enabled(Level::Debug)
        });
        assert_eq!(quiet.join().unwrap(), (true, false));
        assert!(chatty.join().unwrap());
        let before = set_thread_level(Some(Level::Off));
        assert!(!enabled(Level::Error));
        set_thread_level(before);
    }

    #[test]
    fn bucket_allows_a_burst_then_one_per_second_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        for _ in 0..10 {
            assert_eq!(b.admit(t0), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(b.admit(t0), None);
        }
        assert_eq!(b.admit(t0 + Duration::from_millis(500)), None);
        assert_eq!(b.admit(t0 + Duration::from_millis(1000)), Some(501));
        assert_eq!(b.admit(t0 + Duration::from_millis(1001)), None);
        // A long quiet spell refills the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(b.admit(later).is_some());
        }
        assert_eq!(b.admit(later), None);
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse(" Debug "), Some(Level::Debug));
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_LINE);
        let line = format_line(Level::Debug, format_args!("{long}"));
        assert!(line.len() <= MAX_LINE + "…\n".len(), "{}", line.len());
        assert!(line.starts_with("wspush debug: éé") && line.ends_with("…\n"));
        assert_eq!(format_line(Level::Warn, format_args!("x")), "wspush warn: x\n");
        assert_eq!(
            format_line(Level::Info, format_args!("a\nwspush error: forged\r")),
            "wspush info: a\\nwspush error: forged\\r\n"
        );
    }

    #[test]
    fn dates_match_a_day_by_day_count() {
        // Independent of the formula: walk the calendar one day at a time
        // from 1970 to 2400 (both century rules and many leap years).
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_millis() {
        let at = |secs: u64, ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_735_689_600, 120), "2025-01-01T00:00:00.120Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z",
            "a clock before 1970 does not panic"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let now = UNIX_EPOCH + Duration::from_millis(1_709_251_199_123);
        let line = render(Format::Json, now, Level::Warn, "a \"quoted\"\nsecond line", &[]);
        assert_eq!(
            line,
            "{\"time\":\"2024-02-29T23:59:59.123Z\",\"level\":\"warn\",\"message\":\"a \\\"quoted\\\"\\nsecond line\"}\n"
        );
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["message"], "a \"quoted\"\nsecond line");
        let with = render(
            Format::Json,
            now,
            Level::Info,
            "refused",
            &[("suppressed", 3.into())],
        );
        let v: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(v["fields"]["suppressed"], 3);
        assert_eq!(v["level"], "info");
        let long = "é".repeat(MAX_LINE);
        let line = render(Format::Json, now, Level::Debug, &long, &[]);
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v["message"].as_str().unwrap().ends_with('…'));
        assert!(v["message"].as_str().unwrap().len() <= MAX_LINE + '…'.len_utf8());
        // Control characters never break the line either.
        let odd = render(Format::Json, now, Level::Info, "\r\u{0}\u{7f}\u{2028}", &[]);
        assert_eq!(odd.matches('\n').count(), 1);
        assert!(serde_json::from_str::<Value>(&odd).is_ok());
    }

    #[test]
    fn the_dropped_lines_note_in_both_formats() {
        assert_eq!(
            dropped_line(Format::Text, UNIX_EPOCH, 5),
            "wspush warn: 5 log lines dropped: stderr was not keeping up\n"
        );
        let v: Value = serde_json::from_str(&dropped_line(Format::Json, UNIX_EPOCH, 5)).unwrap();
        assert_eq!(v["fields"]["dropped"], 5);
        assert_eq!(v["level"], "warn");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn formats_parse_and_print() {
        assert_eq!(Format::parse(" JSON "), Some(Format::Json));
        assert_eq!(Format::parse("text"), Some(Format::Text));
        assert_eq!(Format::parse("yaml"), None);
        assert_eq!(Format::Json.to_string(), "json");
        assert_eq!(Format::default(), Format::Text);
        assert_eq!(
            Format::Text.line(Level::Error, "cannot start"),
            "wspush error: cannot start\n"
        );
        let v: Value = serde_json::from_str(&Format::Json.line(Level::Error, "cannot start")).unwrap();
        assert_eq!(v["message"], "cannot start");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
