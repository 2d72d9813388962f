//! The `supervisor` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;

use supervisor::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => supervisor::run::run(args),
        Command::Check { config } => supervisor::run::check(&config),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("supervisor: {e:#}");
            ExitCode::from(2)
        }
    }
}
