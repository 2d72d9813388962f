//! The `supervisor` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use supervisor::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => supervisor::run::run(args),
        Command::Check {
            config,
            strict,
            json,
        } => supervisor::run::check(&config, strict, json),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "supervisor", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::anyhow!("writing the completion script: {e}"))
                }
                _ => Ok(0),
            }
        }
        control => Ok(supervisor::client::run(control)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("supervisor: {e:#}");
            ExitCode::from(2)
        }
    }
}
