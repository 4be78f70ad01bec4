//! The `livekeep` binary: parse the configuration, set up logs, serve.

use clap::Parser;
use livekeep_server::{config::Cli, startup::Application, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    let app = Application::build(cli.config).await?;
    // Scripts and tests read the real address (port 0 binds a free one) from this line.
    println!("Livekeep listening on http://{}/", app.address());
    app.run_until_stopped(livekeep_server::startup::shutdown_signal())
        .await
}
