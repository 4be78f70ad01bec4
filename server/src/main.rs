//! The `livekeep` binary: parse the configuration, set up logs, then serve or run an admin
//! command.

use std::process::ExitCode;

use clap::Parser;
use livekeep_server::{
    config::{AdminCommand, Cli, Command, Config},
    ops::admin,
    startup::{self, Application},
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = telemetry::init();
    let result = match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::Admin(command)) => run_admin(&cli.config, command).await,
    };
    // The buffered log lines go before the error, which ends the log.
    drop(logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("livekeep: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    // Scripts and tests read the real address (port 0 binds a free one) from this line.
    println!("Livekeep listening on http://{}/", app.address());
    app.run_until_stopped(startup::shutdown_signal()).await
}

/// Runs one admin command on the same database and storage as the server, and prints its result.
async fn run_admin(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let state = startup::open_state(config).await?;
    let done = admin::run(&state, command).await;
    state.db.close().await;
    println!("{}", done?);
    Ok(())
}
