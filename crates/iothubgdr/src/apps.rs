#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// List app registrations.
    List,
}

pub async fn run(command: AppsCommand) -> anyhow::Result<()> {
    let _ = command;
    anyhow::bail!("not built yet")
}
