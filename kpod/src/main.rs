//! kpod: push container images from local storage to anywhere.

mod cli;
mod destination;
mod images;
mod options;
mod plugins_cmd;
mod policy;
mod progress;
mod pull;
mod push;
mod retry;
mod tag;

use clap::Parser;
use cli::{Cli, Command, LogLevel};
use kpod_core::plugin_host::{search_dirs, PluginSet};
use kpod_core::storage::{Store, StoreOptions};
use kpod_plugin_sdk::error::one_line;
use std::process::ExitCode;

/// Exit code of a failed command (podman's).
const EXIT_FAILURE: u8 = 125;

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Trace => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(filter)
        .format(|buf, record| {
            use std::io::Write;
            let word = match record.level() {
                log::Level::Error => "Error",
                log::Level::Warn => "Warning",
                log::Level::Info => "Info",
                log::Level::Debug => "Debug",
                log::Level::Trace => "Trace",
            };
            writeln!(buf, "{word}: {}", record.args())
        })
        .init();
}

/// The plugins in the search path, none loaded yet; what was refused or
/// ignored is warned about.
fn find_plugins(cli: &Cli) -> PluginSet {
    let plugins = PluginSet::discover(&search_dirs(cli.plugin_dir.as_deref()));
    for line in &plugins.ignored {
        log::warn!("{line}");
    }
    for skipped in &plugins.refused {
        log::warn!("{}", skipped.message());
    }
    plugins
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Plugins(args) => {
            match &args.confirm {
                Some(file) => plugins_cmd::confirm(file),
                None => plugins_cmd::run(&PluginSet::discover(&search_dirs(
                    cli.plugin_dir.as_deref(),
                ))),
            }
            Ok(())
        }
        Command::Push(args) => push::run(&find_plugins(cli), &store_options(cli), args),
        Command::Images(args) => images::run(&Store::open(&store_options(cli))?, args),
        Command::Pull(args) => pull::run(&find_plugins(cli), &store_options(cli), args),
        Command::Load(args) => pull::load(&find_plugins(cli), &store_options(cli), args),
        Command::Tag(args) => tag::tag(&store_options(cli), args),
        Command::Rmi(args) => tag::rmi(&store_options(cli), args),
    }
}

fn store_options(cli: &Cli) -> StoreOptions {
    StoreOptions {
        graph_root: cli.root.clone(),
        run_root: cli.runroot.clone(),
        driver: cli.storage_driver.clone(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", one_line(err.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
