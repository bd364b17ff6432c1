//! `fleetflow opensearch setup`: puts the index templates of every OpenSearch sink of a config,
//! one per stream routed to it, with mappings from the fields the stream's analysis declares.
//! Running it again replaces them with the same: it is idempotent.

use anyhow::Context;
use clap::Args;

use crate::config::{Config, SinkConfig};
use crate::sinks::opensearch::client::Client;
use crate::sinks::opensearch::index::IndexPattern;
use crate::sinks::opensearch::setup::put_templates;
use crate::stream::StreamName;

/// `fleetflow opensearch setup` flags.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The job's TOML config (its OpenSearch sinks and routes say which templates to put).
    #[arg(long)]
    pub config: std::path::PathBuf,
}

/// Puts the templates; returns one line per template.
pub fn setup(args: &SetupArgs) -> anyhow::Result<Vec<String>> {
    let config = Config::from_file(&args.config)?;
    config.validate()?;
    let routes = config.routes()?;
    let mut lines = Vec::new();
    for (name, sink) in &config.sinks {
        let SinkConfig::OpenSearch(cfg) = sink else { continue };
        let streams: Vec<StreamName> = routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| *s).collect();
        let client = Client::new(name, cfg)?;
        let pattern = IndexPattern::parse(&cfg.index).map_err(|e| anyhow::anyhow!("sinks.{name}.index: {e}"))?;
        let put = crate::aws::runtime().block_on(put_templates(&client, name, &pattern, &streams));
        lines.extend(put.map_err(anyhow::Error::msg).with_context(|| format!("setting up sink {name}"))?);
    }
    if lines.is_empty() {
        anyhow::bail!(
            "{}: no stream is routed to an OpenSearch sink; add [sinks.NAME] kind = \"opensearch\" and routes to it",
            args.config.display()
        );
    }
    Ok(lines)
}
