#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not built yet")
}
