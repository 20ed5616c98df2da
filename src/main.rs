//! The `wspush` binary: flags and environment → `Config` → a running server.
//!
//! Nothing here may panic on a closed stdout or stderr (`println!` would):
//! a server started with its output thrown away must still run and exit
//! with the status it means.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use wspush::config::{self, Cli};

const TOKEN_USAGE: &str =
    "usage: wspush token (--jwt-secret SECRET | --jwt-secret-file FILE) --sub USER [--ttl 1h]\n\
     \x20                  [--events 'chat:*,news'] [--jwt-audience AUD] [--jwt-issuer ISS]\n\
     Prints an HS256 JWT for a server run with the same secret; --ttl takes seconds or a unit:\n\
     90, 90s, 15m, 1h, 7d (default 1h, at most a year). With --jwt-secret-file, the file's first\n\
     secret signs; --jwt-secret wins over the file. --events lists the events the token\n\
     permits, comma-separated: exact names or prefixes ending in * (the claim \"events\";\n\
     without it every event, with --events '' none). --jwt-audience and --jwt-issuer set\n\
     aud and iss. Each may also come from its environment variable (WSPUSH_JWT_SECRET,\n\
     WSPUSH_JWT_SECRET_FILE, WSPUSH_JWT_AUDIENCE, WSPUSH_JWT_ISSUER), as the server reads them.";

/// Exit status for settings that cannot be used.
const BAD_SETTINGS: u8 = 2;
/// How long the last log lines get to reach stderr at exit.
const LOG_FLUSH: Duration = Duration::from_secs(1);

fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// `wspush token`: mint a JWT so JWT mode can be tried with curl and a
/// browser in a minute, without writing a token service first. Signs with
/// the secret the server mints with: `--jwt-secret` if given (flag or
/// env), else the first line of `--jwt-secret-file`.
fn token(args: &[String]) -> Result<String, String> {
    let mut secret = std::env::var("WSPUSH_JWT_SECRET").ok().map(wspush::Secret::new);
    let mut file = std::env::var("WSPUSH_JWT_SECRET_FILE").ok();
    let (mut sub, mut ttl) = (None, 3600);
    let mut claims = serde_json::Map::new();
    for (env, claim) in [("WSPUSH_JWT_AUDIENCE", "aud"), ("WSPUSH_JWT_ISSUER", "iss")] {
        if let Ok(v) = std::env::var(env) {
            claims.insert(claim.into(), v.into());
        }
    }
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(TOKEN_USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{TOKEN_USAGE}"))?;
        match flag.as_str() {
            "--jwt-secret" => secret = Some(wspush::Secret::new(value.as_str())),
            "--jwt-secret-file" => file = Some(value.clone()),
            "--sub" => sub = Some(value.clone()),
            "--ttl" => ttl = wspush::parse_ttl(value).map_err(|e| format!("--ttl: {e}"))?,
            "--events" => {
                let list: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .collect();
                claims.insert("events".into(), list.into());
            }
            "--jwt-audience" => {
                claims.insert("aud".into(), value.as_str().into());
            }
            "--jwt-issuer" => {
                claims.insert("iss".into(), value.as_str().into());
            }
            _ => return Err(format!("unknown option {flag}\n{TOKEN_USAGE}")),
        }
    }
    let secret = match (secret, file) {
        (Some(s), _) => Some(s),
        (None, Some(f)) => config::read_secret_lines(f.as_ref())?.into_iter().next(),
        (None, None) => None,
    };
    let secret = secret.filter(|s| !s.expose().is_empty());
    let secret = secret.ok_or_else(|| format!("a JWT secret is needed\n{TOKEN_USAGE}"))?;
    let sub = sub.filter(|s| !s.is_empty());
    let sub = sub.ok_or_else(|| format!("--sub is needed\n{TOKEN_USAGE}"))?;
    Ok(wspush::sign_jwt_with(
        &sub,
        secret.expose().as_bytes(),
        wspush::unix_now(),
        ttl,
        claims,
    ))
}

fn main() -> ExitCode {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("token") {
        return match token(&all[1..]) {
            Ok(t) => {
                say(&mut out, format_args!("{t}"));
                ExitCode::SUCCESS
            }
            Err(e) if e == TOKEN_USAGE => {
                say(&mut out, format_args!("{e}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                say(&mut err, format_args!("wspush token: {e}"));
                ExitCode::from(BAD_SETTINGS)
            }
        };
    }
    let args = all.into_iter();
    let config = match config::parse_cli(args, |k| std::env::var(k).ok()) {
        Ok(Cli::Run(c)) => *c,
        Ok(Cli::Help) => {
            let _ = out.write_all(config::help().as_bytes());
            let _ = out.flush();
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Version) => {
            say(&mut out, format_args!("wspush {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            say(&mut err, format_args!("wspush: {e}"));
            return ExitCode::from(BAD_SETTINGS);
        }
    };
    // Before bind, so its lines (auth mode, warnings) are already in the
    // chosen format.
    let log_format = config.log_format;
    log_format.install();
    let server = match wspush::Builder::new()
        .config(config)
        .handle_signals(true)
        .systemd(true)
        .bind()
    {
        Ok(s) => s,
        Err(e) => {
            wspush::flush_log(LOG_FLUSH);
            last_words(&mut err, log_format, format_args!("cannot start: {e}"));
            return match e {
                wspush::Error::Config(_) => ExitCode::from(BAD_SETTINGS),
                _ => ExitCode::FAILURE,
            };
        }
    };
    // Scripts and tests wait for these exact lines to learn the real
    // addresses: one per listener, in the order given.
    for addr in server.listen_addrs() {
        say(&mut out, format_args!("listening on {addr}"));
    }
    let result = server.run();
    wspush::flush_log(LOG_FLUSH);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            last_words(&mut err, log_format, format_args!("{e}"));
            ExitCode::FAILURE
        }
    }
}

/// A fatal error on stderr, in the log's format: with `--log-format json`
/// a log shipper must be able to read the reason the server stopped too.
fn last_words(err: &mut dyn Write, format: config::LogFormat, text: std::fmt::Arguments<'_>) {
    match format {
        config::LogFormat::Text => say(err, format_args!("wspush: {text}")),
        config::LogFormat::Json => {
            let _ = err.write_all(format.line(wspush::Level::Error, &text.to_string()).as_bytes());
            let _ = err.flush();
        }
    }
}
