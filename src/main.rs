//! The `wspush` binary: flags and environment → `Config` → a running server.

use std::io::Write;
use std::process::ExitCode;
use wspush::config::{self, Cli};

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    let config = match config::parse_cli(args, |k| std::env::var(k).ok()) {
        Ok(Cli::Run(c)) => c,
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
