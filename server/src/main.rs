//! The `livekeep` binary: parse the configuration, set up logs, then serve or run an admin
//! command.

use std::process::ExitCode;

use clap::Parser;
use livekeep_server::{
    admin,
    config::{Cli, Command},
    startup::Application,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::Admin(command)) => admin::run(&cli.config, command)
            .await
            .map(|done| println!("{done}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("livekeep: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: livekeep_server::config::Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    // Scripts and tests read the real address (port 0 binds a free one) from this line.
    println!("Livekeep listening on http://{}/", app.address());
    app.run_until_stopped(livekeep_server::startup::shutdown_signal())
        .await
}
