//! `--auth-tokens FILE`: a static table of `token userId` lines.
//!
//! Blank lines and `#` comments are allowed; anything else that is not
//! exactly two fields stops startup with the file and line named, because a
//! silently skipped line is a user who cannot log in and no clue why.

use std::collections::HashMap;
use std::path::Path;

/// Parses the file's text; `name` is used in error messages.
pub fn parse(text: &str, name: &str) -> Result<HashMap<String, String>, String> {
    let mut table = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(token), Some(user), None) => {
                if table.insert(token.to_string(), user.to_string()).is_some() {
                    return Err(format!("{name}:{}: token listed twice", i + 1));
                }
            }
            _ => return Err(format!("{name}:{}: expected \"token userId\"", i + 1)),
        }
    }
    Ok(table)
}

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<HashMap<String, String>, String> {
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
        assert_eq!(t["abc"], "alice");
        assert_eq!(t["def"], "bob");
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            parse("a b\nlonely\n", "tokens.txt"),
            Err("tokens.txt:2: expected \"token userId\"".into())
        );
        assert_eq!(
            parse("a b c\n", "f"),
            Err("f:1: expected \"token userId\"".into())
        );
        assert_eq!(parse("a b\na c\n", "f"), Err("f:2: token listed twice".into()));
    }

    #[test]
    fn missing_file() {
        let e = load(Path::new("/nonexistent/wspush-tokens")).unwrap_err();
        assert!(e.starts_with("/nonexistent/wspush-tokens: "), "{e}");
    }
}
