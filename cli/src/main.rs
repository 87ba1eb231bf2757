//! `trialport`: the command line of the trialport export engine.
//!
//! One module per command group: [`args`] (what clap parses), [`convert`] (`formats`, `convert`, `verify`),
//! [`engine_cmds`] (`init`, `export`, `jobs`, `download`, `keys`, `purge`, `worker`), [`audit_cmds`] (`audit`),
//! [`serve_cmd`] (`serve`, the HTTP service), [`demo`] (the guided tour), with [`output`] and [`wait`] shared by
//! them. Errors print the standard error JSON on stderr and exit 1.

mod args;
mod audit_cmds;
mod convert;
mod demo;
mod engine_cmds;
mod hints;
mod output;
mod serve_cmd;
mod signing_cmds;
mod wait;

use args::{Cli, Command};
use clap::Parser;
use engine_cmds::Ctx;
use std::process::ExitCode;
use trialport_core::error::Reason;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let surface = match cli.command {
        Command::Formats | Command::Convert(_) | Command::Verify(_) | Command::Demo(_) => {
            hints::Surface::Files
        }
        _ => hints::Surface::Home,
    };
    let json = cli.json;
    match run(cli) {
        Ok(code) => {
            output::flush_warnings();
            code
        }
        Err(e) => {
            // On failure stderr holds the standard error JSON (and, on a terminal, its hint); warnings are not
            // printed.
            output::error(&e, hints::for_error(&e, surface).as_deref(), json);
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refuses: with `--json`, the standard error JSON (EXP002 `usage`) on stderr; otherwise
/// clap's text. Exit status 2 either way; `--help` and `--version` print and exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = std::env::args()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    let shows_help = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shows_help || !json {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_string();
    let error = trialport_core::Error::validation(Reason::Usage, message);
    output::error(
        &error,
        Some("see `trialport --help` and `trialport COMMAND --help` for the commands and their flags"),
        true,
    );
    ExitCode::from(2)
}

fn run(cli: Cli) -> trialport_core::Result<ExitCode> {
    let json = cli.json;
    let ctx = Ctx::new(cli.home, cli.credential, json);
    match &cli.command {
        Command::Formats => convert::formats(json).map(|()| ExitCode::SUCCESS),
        Command::Convert(a) => convert::convert(a, json).map(|()| ExitCode::SUCCESS),
        Command::Demo(a) => demo::run(a, json),
        Command::Init(a) => engine_cmds::init(&ctx, a),
        Command::Export(c) => engine_cmds::export(&ctx, c),
        Command::Jobs(c) => engine_cmds::jobs(&ctx, c),
        Command::Download(a) => engine_cmds::download(&ctx, a),
        Command::Keys(c) => engine_cmds::keys(&ctx, c),
        Command::Studies(c) => engine_cmds::studies(&ctx, c),
        Command::Audit(c) => audit_cmds::audit(&ctx, c),
        Command::Purge => engine_cmds::purge(&ctx),
        Command::Verify(a) => convert::verify(a, json).map(|()| ExitCode::SUCCESS),
        Command::Signing(c) => signing_cmds::signing(&ctx, c),
        Command::Serve(a) => serve_cmd::serve(&ctx, a),
        Command::Worker(a) => engine_cmds::worker(&ctx, a),
    }
}
