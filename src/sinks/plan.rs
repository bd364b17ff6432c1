//! Building the configured sinks: once per process, what each kind prepares (AWS clients from
//! the standard credential chain, the check that every delivery stream and topic the routes need
//! exists, shared rate limiters); then, per worker, the sink instances. Each kind's building is
//! in its own folder.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::firehose::build::PreparedFirehose;
use super::sns::build::PreparedSns;
use super::{NamedSink, Sink, SinkConfig, SinkError};
use crate::aws::AwsError;
use crate::operations::metrics::Metrics;
use crate::stream::{Routes, StreamName};

/// A sink as each worker builds it.
enum Prepared {
    Folder(super::folder::FolderConfig),
    Kafka(super::kafka::KafkaSinkConfig),
    Firehose(PreparedFirehose),
    Sns(PreparedSns),
}

/// The process's sinks, ready to be instantiated by each worker.
pub struct SinkPlan {
    sinks: Vec<(String, Prepared)>,
    metrics: Arc<Metrics>,
}

impl SinkPlan {
    /// Prepares the configured `sinks` (validated), checking the resources of the streams `routes` send them.
    pub fn prepare(sinks: &BTreeMap<String, SinkConfig>, routes: &Routes, metrics: Arc<Metrics>) -> Result<SinkPlan, AwsError> {
        let mut prepared = Vec::new();
        for (name, sink) in sinks {
            let streams: Vec<StreamName> = routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| *s).collect();
            let ready = match sink {
                SinkConfig::Folder(f) => Prepared::Folder(f.clone()),
                SinkConfig::Kafka(k) => Prepared::Kafka(k.clone()),
                SinkConfig::Firehose(f) => Prepared::Firehose(super::firehose::build::prepare(name, f, &streams)?),
                SinkConfig::Sns(s) => Prepared::Sns(super::sns::build::prepare(name, s, !streams.is_empty())?),
            };
            prepared.push((name.clone(), ready));
        }
        Ok(SinkPlan { sinks: prepared, metrics })
    }

    /// One worker's sink instances, by name; `tag` names its files.
    pub fn build(&self, tag: &str) -> Result<Vec<NamedSink>, SinkError> {
        self.sinks
            .iter()
            .map(|(name, prepared)| -> Result<NamedSink, SinkError> {
                let counters = self.metrics.sink(name);
                let sink: Box<dyn Sink> = match prepared {
                    Prepared::Folder(f) => f.instance(tag),
                    Prepared::Kafka(k) => Box::new(k.instance()?),
                    Prepared::Firehose(f) => Box::new(f.instance(name, tag, counters)),
                    Prepared::Sns(s) => Box::new(s.instance(name, tag, counters)),
                };
                Ok((name.clone(), sink))
            })
            .collect()
    }
}
