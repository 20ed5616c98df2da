//! `--auth-tokens FILE`: a static table of `token userId [P,P,...]` lines.
//!
//! Blank lines and `#` comments are allowed; the optional third column
//! lists the events the token may receive (SPEC §9: exact names or
//! prefixes ending in `*`; without it, every event). Anything else — one
//! field, four, a bad pattern list, a token listed twice — stops startup
//! (or, on SIGHUP, keeps the old table) with the file and line named,
//! because a silently skipped line is a user who cannot log in and no clue
//! why.

use super::patterns::{PatternError, Patterns};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What one line grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub user: String,
    /// The third column; `None`: every event. Shared by every connection
    /// that registers with this token.
    pub events: Option<Arc<Patterns>>,
}

/// The table, by token.
pub type Table = HashMap<String, Line>;

const SHAPE: &str = "expected \"token userId\" or \"token userId P,P,...\"";

/// Parses the file's text; `name` is used in error messages.
pub fn parse(text: &str, name: &str) -> Result<Table, String> {
    let mut table = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{name}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (token, user, events) = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(token), Some(user), events, None) => (token, user, events),
            _ => return Err(format!("{}: {SHAPE}", at())),
        };
        let events = match events {
            None => None,
            Some(list) => {
                if list.split(',').any(str::is_empty) {
                    return Err(format!("{}: an empty event pattern in the third column", at()));
                }
                let p = Patterns::new(list.split(',')).map_err(|e| match e {
                    PatternError::TooMany => format!(
                        "{}: too many event patterns (at most {})",
                        at(),
                        super::patterns::MAX_PATTERNS
                    ),
                    other => format!("{}: {}", at(), other.reason()),
                })?;
                Some(Arc::new(p))
            }
        };
        let entry = Line {
            user: user.to_string(),
            events,
        };
        if table.insert(token.to_string(), entry).is_some() {
            return Err(format!("{}: token listed twice", at()));
        }
    }
    Ok(table)
}

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<Table, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    parse(&text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_blanks() {
        let t = parse("# tokens\n\nabc alice\n  def\tbob  \n", "f").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t["abc"].user, "alice");
        assert_eq!(t["def"].user, "bob");
        assert_eq!(t["abc"].events, None);
    }

    #[test]
    fn a_third_column_lists_the_events() {
        let t = parse("t1 alice chat:*,news\nt2 bob *\n", "f").unwrap();
        let p = t["t1"].events.as_ref().unwrap();
        assert!(p.allows("chat:1") && p.allows("news"));
        assert!(!p.allows("admin") && !p.allows("news2"));
        assert!(t["t2"].events.as_ref().unwrap().allows("anything"));
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            parse("a b\nlonely\n", "tokens.txt"),
            Err(format!("tokens.txt:2: {SHAPE}"))
        );
        assert_eq!(parse("a b c d\n", "f"), Err(format!("f:1: {SHAPE}")));
        assert!(SHAPE.contains("expected \"token userId\""));
        assert_eq!(parse("a b\na c\n", "f"), Err("f:2: token listed twice".into()));
        assert_eq!(
            parse("a b x,,y\n", "f"),
            Err("f:1: an empty event pattern in the third column".into())
        );
        assert_eq!(
            parse("a b x,\n", "f"),
            Err("f:1: an empty event pattern in the third column".into())
        );
        let many: Vec<String> = (0..10_000).map(|i| format!("e{i}")).collect();
        assert_eq!(
            parse(&format!("ok u\na b {}\n", many.join(",")), "f"),
            Err("f:2: too many event patterns (at most 256)".into())
        );
        assert_eq!(
            parse(&format!("a b {}\n", "x".repeat(300)), "f"),
            Err("f:1: event pattern too long".into())
        );
    }

    #[test]
    fn missing_file() {
        let e = load(Path::new("/nonexistent/wspush-tokens")).unwrap_err();
        assert!(e.starts_with("/nonexistent/wspush-tokens: "), "{e}");
    }
}
