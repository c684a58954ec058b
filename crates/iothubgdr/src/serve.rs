#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not built yet")
}
