//! `fleetflow aws setup`: creates what the configured AWS sinks write to, so a new user can
//! point the job at an account (or an emulator): the S3 bucket, one Firehose delivery stream per
//! output stream routed to a Firehose sink (DirectPut, to S3 under `<stream>/`, so S3 is laid
//! out as the local folder sink lays out its folder), the SNS topics, and each S3 sink's bucket.
//! Existing resources are left as they are. The IAM role Firehose assumes is made once by hand (docs/aws.md).

use anyhow::{bail, Context};
use aws_sdk_firehose::types::{BufferingHints, CompressionFormat, DeliveryStreamType, ExtendedS3DestinationConfiguration};
use clap::Args;

use crate::aws::{load, runtime, AwsSettings};
use crate::config::{Config, SinkConfig};
use crate::config::{FirehoseConfig, SnsConfig};
use crate::stream::StreamName;

/// `fleetflow aws setup` flags.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The job's TOML config (its Firehose and SNS sinks and routes say what to create).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// The S3 bucket the delivery streams write to (created if missing); needed with Firehose sinks.
    #[arg(long)]
    pub bucket: Option<String>,
    /// The IAM role Firehose assumes to write to the bucket; needed with Firehose sinks.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// Firehose buffering hint: MiB.
    #[arg(long, default_value_t = 5)]
    pub buffer_mib: i32,
    /// Firehose buffering hint: seconds.
    #[arg(long, default_value_t = 60)]
    pub buffer_secs: i32,
}

/// What was created (or found).
#[derive(Debug, Default, PartialEq)]
pub struct SetupReport {
    /// Delivery streams created.
    pub created_streams: Vec<String>,
    /// Delivery streams that existed already.
    pub existing_streams: Vec<String>,
    /// Topic ARNs.
    pub topics: Vec<String>,
    /// The buckets (Firehose's, and each S3 sink's), and whether each was created.
    pub buckets: Vec<(String, bool)>,
}

impl SetupReport {
    /// Creates `bucket` unless this setup has seen it already or it exists.
    fn bucket(&mut self, sdk: &aws_config::SdkConfig, settings: &AwsSettings, bucket: &str) -> anyhow::Result<()> {
        if !self.buckets.iter().any(|(b, _)| b == bucket) {
            let created = ensure_bucket(sdk, settings, bucket)?;
            self.buckets.push((bucket.to_string(), created));
        }
        Ok(())
    }
}

/// Creates the bucket, delivery streams and topics of `args.config`.
pub fn setup(args: &SetupArgs) -> anyhow::Result<SetupReport> {
    let config = Config::from_file(&args.config)?;
    config.validate()?;
    let routes = config.routes()?;
    let mut report = SetupReport::default();
    for (name, sink) in &config.sinks {
        let streams: Vec<StreamName> = routes.iter().filter(|(_, to)| to.contains(name)).map(|(s, _)| *s).collect();
        let Some(settings) = sink.aws_settings() else { continue };
        let sdk = load(&settings, &format!("sinks.{name}"))?;
        match sink {
            SinkConfig::Firehose(FirehoseConfig { delivery_stream, .. }) => {
                let (Some(bucket), Some(role_arn)) = (&args.bucket, &args.role_arn) else {
                    bail!("sinks.{name}: a Firehose sink needs --bucket (the S3 bucket its delivery streams write to) and --role-arn (the IAM role Firehose assumes)");
                };
                report.bucket(&sdk, &settings, bucket)?;
                let client = aws_sdk_firehose::Client::new(&sdk);
                for stream in streams {
                    let target = crate::sinks::firehose::target(delivery_stream, stream);
                    if runtime().block_on(client.describe_delivery_stream().delivery_stream_name(&target).send()).is_ok() {
                        report.existing_streams.push(target);
                        continue;
                    }
                    let destination = ExtendedS3DestinationConfiguration::builder()
                        .role_arn(role_arn)
                        .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                        .prefix(format!("{}/", stream.as_str()))
                        .error_output_prefix(format!("firehose-errors/{}/!{{firehose:error-output-type}}/", stream.as_str()))
                        .buffering_hints(
                            BufferingHints::builder().size_in_mbs(args.buffer_mib).interval_in_seconds(args.buffer_secs).build(),
                        )
                        .compression_format(CompressionFormat::Uncompressed)
                        .build()
                        .context("building the S3 destination")?;
                    runtime()
                        .block_on(
                            client
                                .create_delivery_stream()
                                .delivery_stream_name(&target)
                                .delivery_stream_type(DeliveryStreamType::DirectPut)
                                .extended_s3_destination_configuration(destination)
                                .send(),
                        )
                        .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))
                        .with_context(|| format!("creating delivery stream {target} (sinks.{name})"))?;
                    report.created_streams.push(target);
                }
            }
            SinkConfig::Sns(SnsConfig { topic_arn, .. }) => {
                let topic = topic_arn.rsplit(':').next().unwrap_or_default();
                let client = aws_sdk_sns::Client::new(&sdk);
                let out = runtime()
                    .block_on(client.create_topic().name(topic).send())
                    .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))
                    .with_context(|| format!("creating topic {topic} (sinks.{name})"))?;
                let arn = out.topic_arn().unwrap_or_default().to_string();
                if arn != *topic_arn {
                    bail!("sinks.{name}.topic_arn: the topic was created as {arn}, not {topic_arn}; put that ARN in the config");
                }
                report.topics.push(arn);
            }
            SinkConfig::S3(s3) => report.bucket(&sdk, &settings, &s3.bucket)?,
            _ => {}
        }
    }
    Ok(report)
}

/// Creates `bucket` unless it exists; returns whether it was created.
fn ensure_bucket(sdk: &aws_config::SdkConfig, settings: &AwsSettings, bucket: &str) -> anyhow::Result<bool> {
    let client = s3_client(sdk, settings);
    if runtime().block_on(client.head_bucket().bucket(bucket).send()).is_ok() {
        return Ok(false);
    }
    let mut create = client.create_bucket().bucket(bucket);
    if let Some(region) = sdk.region().map(|r| r.to_string()).filter(|r| r != "us-east-1") {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region.as_str())).build(),
        );
    }
    runtime()
        .block_on(create.send())
        .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))
        .with_context(|| format!("creating bucket {bucket}"))?;
    Ok(true)
}

/// An S3 client; path-style addressing when an endpoint is overridden (emulators).
pub fn s3_client(sdk: &aws_config::SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk).force_path_style(settings.endpoint_url.is_some()).build();
    aws_sdk_s3::Client::from_conf(config)
}
