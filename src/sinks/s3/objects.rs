//! Objects in an S3 bucket as a sealed sink's file store: an object is uploaded whole (one
//! `PutObject`, or a multipart upload completed only once every part is in), so no partial object
//! is ever visible; a failed multipart upload is aborted. Throttling, server errors and timeouts
//! are retried with backoff within the sink's budget; an object still failing then goes to the
//! dead-letter folder, so the job neither stops nor loses it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::operations::metrics::Metrics;
use crate::operations::sink_counters::SinkCounters;
use crate::sinks::delivery::dead_letter::DeadLetter;
use crate::sinks::delivery::retry::RetryPolicy;
use crate::sinks::delivery::{classify, Attempt};
use crate::sinks::folder::store::FileStore;
use crate::sinks::SinkError;

/// A bucket and key prefix.
pub struct S3Objects {
    /// The client.
    pub client: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
    /// Objects above this size go in parts of it.
    pub part_bytes: usize,
    /// Retries of a failing upload.
    pub retry: RetryPolicy,
    /// Where an object goes that could not be uploaded.
    pub dead_letter: Arc<DeadLetter>,
    /// The sink's counters.
    pub counters: Arc<SinkCounters>,
}

/// A failed request: what went wrong, and whether trying again may help.
type Failure = (String, bool);

fn failure(attempt: Attempt) -> Failure {
    match attempt {
        Attempt::Failed { error, retryable } => (error, retryable),
        Attempt::Answered(_) => (String::new(), true),
    }
}

impl S3Objects {
    fn key(&self, relative: &Path) -> String {
        format!("{}{}", self.prefix, relative.display())
    }

    /// Uploads `bytes` as `key` once: one request, or a multipart upload aborted on failure.
    async fn upload(&self, key: &str, bytes: &[u8]) -> Result<(), Failure> {
        let c = &self.client;
        if bytes.len() <= self.part_bytes {
            let body = ByteStream::from(bytes.to_vec());
            return c.put_object().bucket(&self.bucket).key(key).body(body).send().await.map(|_| ()).map_err(|e| failure(classify(&e)));
        }
        let started = c.create_multipart_upload().bucket(&self.bucket).key(key).send().await.map_err(|e| failure(classify(&e)))?;
        let id = started.upload_id().unwrap_or_default().to_string();
        let result = self.parts(key, &id, bytes).await;
        if result.is_err() {
            // Best effort: an upload left behind is invisible, and a lifecycle rule removes it.
            let _ = c.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&id).send().await;
        }
        result
    }

    /// Uploads the parts of multipart upload `id` and completes it.
    async fn parts(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), Failure> {
        let c = &self.client;
        let mut done = Vec::new();
        for (i, part) in bytes.chunks(self.part_bytes).enumerate() {
            let number = i as i32 + 1;
            let body = ByteStream::from(part.to_vec());
            let out = c
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| failure(classify(&e)))?;
            done.push(CompletedPart::builder().set_e_tag(out.e_tag().map(String::from)).part_number(number).build());
        }
        let parts = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
        c.complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id)
            .multipart_upload(parts)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure(classify(&e)))
    }
}

impl FileStore for S3Objects {
    fn read(&self, relative: &Path) -> Result<Option<Vec<u8>>, SinkError> {
        let key = self.key(relative);
        let fail = |e: String| SinkError::Delivery(format!("reading s3://{}/{key}: {e}", self.bucket));
        crate::aws::runtime().block_on(async {
            match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
                Ok(out) => Ok(Some(out.body.collect().await.map_err(|e| fail(e.to_string()))?.into_bytes().to_vec())),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(fail(crate::sinks::delivery::error_text(&e))),
            }
        })
    }

    fn write(&self, relative: &Path, bytes: &[u8]) -> Result<(), SinkError> {
        let key = self.key(relative);
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            Metrics::add(&self.counters.requests, 1);
            let (error, retryable) = match crate::aws::runtime().block_on(self.upload(&key, bytes)) {
                Ok(()) => {
                    Metrics::add(&self.counters.delivered, 1);
                    return Ok(());
                }
                Err(e) => e,
            };
            Metrics::add(&self.counters.failed_requests, 1);
            self.counters.note_error(&error);
            let wait = self.retry.backoff(attempt);
            if !retryable || !self.retry.may_retry(started, wait) {
                let target = format!("s3://{}/{key}", self.bucket);
                let path = self
                    .dead_letter
                    .write(&target, &format!("{error} (after {attempt} attempts)"), attempt, &[bytes])
                    .map_err(|e| SinkError::Delivery(format!("{target}: could not dead-letter the object ({error}): {e}")))?;
                Metrics::add(&self.counters.dead_lettered, 1);
                tracing::error!("{target}: the object is dead-lettered to {} ({error})", path.display());
                return Ok(());
            }
            tracing::warn!("s3://{}/{key}: upload failed ({error}); attempt {} in {wait:?}", self.bucket, attempt + 1);
            std::thread::sleep(wait);
        }
    }
}
