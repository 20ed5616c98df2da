//! The `wspush` binary: flags and environment → `Config` → a running server.

use std::io::Write;
use std::process::ExitCode;
use wspush::config::{self, Cli};

const TOKEN_USAGE: &str =
    "usage: wspush token (--jwt-secret SECRET | --jwt-secret-file FILE) --sub USER [--ttl 1h]\n\
     Prints an HS256 JWT for a server run with the same --jwt-secret; --ttl takes 90s, 15m, 1h or 7d\n\
     (default 1h). The secret may also come from WSPUSH_JWT_SECRET or WSPUSH_JWT_SECRET_FILE.";

/// `wspush token`: mint a JWT so JWT mode can be tried with curl and a
/// browser in a minute, without writing a token service first.
fn token(args: &[String]) -> Result<String, String> {
    let mut secret = match (
        std::env::var("WSPUSH_JWT_SECRET"),
        std::env::var("WSPUSH_JWT_SECRET_FILE"),
    ) {
        (_, Ok(f)) => Some(config::read_secret_file(&f)?),
        (Ok(s), _) => Some(wspush::Secret::new(s)),
        _ => None,
    };
    let (mut sub, mut ttl) = (None, 3600);
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
            "--jwt-secret-file" => secret = Some(config::read_secret_file(value)?),
            "--sub" => sub = Some(value.clone()),
            "--ttl" => ttl = wspush::parse_ttl(value)?,
            _ => return Err(format!("unknown option {flag}\n{TOKEN_USAGE}")),
        }
    }
    let secret = secret.filter(|s| !s.expose().is_empty());
    let secret = secret.ok_or_else(|| format!("a JWT secret is needed\n{TOKEN_USAGE}"))?;
    let sub = sub.filter(|s| !s.is_empty());
    let sub = sub.ok_or_else(|| format!("--sub is needed\n{TOKEN_USAGE}"))?;
    Ok(wspush::sign_jwt(
        &sub,
        secret.expose().as_bytes(),
        wspush::unix_now(),
        ttl,
    ))
}

fn main() -> ExitCode {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("token") {
        return match token(&all[1..]) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) if e == TOKEN_USAGE => {
                println!("{e}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wspush token: {e}");
                ExitCode::from(2)
            }
        };
    }
    let args = all.into_iter();
    let config = match config::parse_cli(args, |k| std::env::var(k).ok()) {
        Ok(Cli::Run(c)) => *c,
        Ok(Cli::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Version) => {
            println!("wspush {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wspush: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match wspush::Builder::new().config(config).handle_signals(true).bind() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wspush: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests wait for this exact line to learn the real address.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", server.local_addr());
    let _ = out.flush();
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wspush: {e}");
            ExitCode::FAILURE
        }
    }
}
