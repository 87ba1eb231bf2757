//! `trialport`: the command line of the trialport export engine.
//!
//! One module per command group: [`args`] (what clap parses), [`convert`] (`formats`, `convert`, `verify`),
//! [`engine_cmds`] (`init`, `export`, `jobs`, `download`, `keys`, `purge`, `worker`), [`audit_cmds`] (`audit`),
//! [`demo`] (the
//! guided tour), with [`output`] and [`wait`] shared by them. Errors print the standard error JSON on
//! stderr and exit 1.

mod args;
mod audit_cmds;
mod convert;
mod demo;
mod engine_cmds;
mod output;
mod signing_cmds;
mod wait;

use args::{Cli, Command};
use clap::Parser;
use engine_cmds::Ctx;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => {
            output::flush_warnings();
            code
        }
        Err(e) => {
            // On failure stderr holds the standard error JSON alone.
            output::error(&e);
            ExitCode::FAILURE
        }
    }
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
        Command::Worker(a) => engine_cmds::worker(&ctx, a),
    }
}
