//! Building the configured sinks: once per process, what each kind prepares (AWS clients from
//! the standard credential chain, the check that every delivery stream and topic the routes need
//! exists, shared rate limiters); then, per worker, the sink instances. Each kind's building is
//! in its own folder.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::firehose::build::PreparedFirehose;
use super::opensearch::build::PreparedOpenSearch;
use super::s3::build::PreparedS3;
use super::sns::build::PreparedSns;
use super::{NamedSink, Sink, SinkConfig, SinkError};
use crate::aws::AwsError;
use crate::operations::metrics::Metrics;
use crate::stream::{Routes, StreamName};

/// A sink as each worker builds it.
enum Prepared {
    Folder(super::folder::FolderConfig),
    Kafka(super::kafka::KafkaSinkConfig, Option<super::kafka::Transactional>),
    Firehose(PreparedFirehose),
    Sns(PreparedSns),
    OpenSearch(Box<PreparedOpenSearch>),
    S3(Box<PreparedS3>),
}

/// The process's sinks, ready to be instantiated by each worker.
pub struct SinkPlan {
    sinks: Vec<(String, Prepared)>,
    metrics: Arc<Metrics>,
    /// The checkpoint interval, ms (the exactly-once Kafka sink commits with checkpoints).
    every: fleetflow_dataflows::Time,
}

/// What a job that checkpoints tells its sinks: its Kafka group and checkpoint interval (ms).
pub type Checkpointing<'a> = Option<(&'a str, fleetflow_dataflows::Time)>;

impl SinkPlan {
    /// Prepares the configured `sinks` (validated), checking the resources of the streams `routes`
    /// send them; an exactly-once sink needs the job to checkpoint (`checkpointing`).
    pub fn prepare(
        sinks: &BTreeMap<String, SinkConfig>,
        routes: &Routes,
        checkpointing: Checkpointing<'_>,
        metrics: Arc<Metrics>,
    ) -> Result<SinkPlan, AwsError> {
        let mut prepared = Vec::new();
        for (name, sink) in sinks {
            let streams: Vec<StreamName> = routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| *s).collect();
            let ready = match sink {
                SinkConfig::Folder(f) => Prepared::Folder(f.clone()),
                SinkConfig::Kafka(k) => {
                    let transactional = checkpointing.and_then(|(group, _)| k.transactional(name, group));
                    Prepared::Kafka(k.clone(), transactional)
                }
                SinkConfig::Firehose(f) => Prepared::Firehose(super::firehose::build::prepare(name, f, &streams)?),
                SinkConfig::Sns(s) => Prepared::Sns(super::sns::build::prepare(name, s, !streams.is_empty())?),
                SinkConfig::S3(s) => Prepared::S3(Box::new(super::s3::build::prepare(name, s, !streams.is_empty())?)),
                SinkConfig::OpenSearch(o) => {
                    Prepared::OpenSearch(Box::new(super::opensearch::build::prepare(name, o, !streams.is_empty())?))
                }
            };
            prepared.push((name.clone(), ready));
        }
        Ok(SinkPlan { sinks: prepared, metrics, every: checkpointing.map_or(0, |(_, every)| every) })
    }

    /// The sink instances of worker `worker` of `peers`, by name; `tag` names its files.
    pub fn build(&self, tag: &str, (worker, peers): (usize, usize)) -> Result<Vec<NamedSink>, SinkError> {
        self.sinks
            .iter()
            .map(|(name, prepared)| -> Result<NamedSink, SinkError> {
                let counters = self.metrics.sink(name);
                let sink: Box<dyn Sink> = match prepared {
                    Prepared::Folder(f) => f.instance(tag, (worker, peers), self.every > 0),
                    Prepared::Kafka(k, transactional) => k.instance(transactional.as_ref(), self.every, worker)?,
                    Prepared::Firehose(f) => Box::new(f.instance(name, tag, counters)),
                    Prepared::Sns(s) => Box::new(s.instance(name, tag, counters)),
                    Prepared::OpenSearch(o) => Box::new(o.instance(name, tag, counters)),
                    Prepared::S3(s) => s.instance(name, tag, (worker, peers), self.every > 0, counters),
                };
                Ok((name.clone(), sink))
            })
            .collect()
    }
}
