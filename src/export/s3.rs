//! The S3 side of an export: a multipart upload fed as a stream. Bytes fill one part buffer; a full
//! part is uploaded by its own task while the next one fills, with at most `parallel` parts in
//! flight, so memory stays near `(parallel + 1) × part_size` whatever the image's size. Each part
//! carries a CRC32 that S3 checks, and a part that fails transiently is retried alone under the retry
//! policy. The upload is completed only when every part is in; on any failure it is aborted, leaving
//! neither an object nor a pending upload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{Error, FailureKind, Result};
use crate::report::Reporter;
use crate::retry::{retry, RetryPolicy};

/// S3 allows this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// An object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Server-side encryption of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with this key id, ARN or alias.
    Kms(String),
}

/// How the upload is cut and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    pub part_size: usize,
    /// Parts uploaded at once.
    pub parallel: usize,
    pub encryption: Encryption,
}

/// The object's description: metadata (`x-amz-meta-*`) and content type.
#[derive(Debug, Clone, Default)]
pub struct ObjectInfo {
    pub metadata: BTreeMap<String, String>,
    pub content_type: String,
}

/// An S3 client for `config`, with path-style addressing for an endpoint on an IP address or
/// `localhost` (an S3 stand-in has no virtual-host names), and no retries of its own: every request
/// is retried by [`crate::retry`], a part on its own.
pub fn client(config: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build();
    let builder = aws_sdk_s3::config::Builder::from(config)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(timeouts)
        .force_path_style(endpoint.is_some_and(needs_path_style));
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Whether an endpoint URL's host is an IP address or `localhost`.
pub fn needs_path_style(endpoint: &str) -> bool {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The part size for an archive of about `estimate` bytes: `requested`, or larger when the archive
/// would need more than 9,000 parts of it (S3 allows 10,000; compression rarely grows a tar), in
/// whole MiB.
pub fn part_size_for(estimate: u64, requested: usize) -> usize {
    const MIB: u64 = 1 << 20;
    let needed = estimate.div_ceil(9_000).div_ceil(MIB) * MIB;
    usize::try_from(needed).map_or(requested, |needed| needed.max(requested))
}

/// What S3 needs to reach an object, shared by the part tasks.
#[derive(Clone)]
struct Upload {
    client: aws_sdk_s3::Client,
    target: S3Target,
    id: String,
    endpoint: String,
    retry: RetryPolicy,
    reporter: Reporter,
}

/// A multipart upload in progress. End it with [`MultipartUpload::complete`] or
/// [`MultipartUpload::abort`].
pub struct MultipartUpload {
    upload: Upload,
    part_size: usize,
    buffer: BytesMut,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart>>,
    slots: Arc<Semaphore>,
    parts: Vec<CompletedPart>,
    written: u64,
}

/// The finished object.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub bytes: u64,
    pub parts: usize,
    pub checksum: Option<String>,
}

/// Everything [`MultipartUpload::start`] needs besides the client.
pub struct StartUpload<'a> {
    pub target: &'a S3Target,
    pub options: &'a UploadOptions,
    pub info: &'a ObjectInfo,
    pub endpoint: Option<&'a str>,
    pub retry: &'a RetryPolicy,
    pub reporter: &'a Reporter,
}

impl MultipartUpload {
    /// CreateMultipartUpload, with the metadata, encryption and checksum algorithm of the object.
    pub async fn start(client: aws_sdk_s3::Client, start: StartUpload<'_>) -> Result<Self> {
        let target = start.target;
        let endpoint = start
            .endpoint
            .map_or_else(|| "the regional S3 endpoint".to_string(), str::to_string);
        let id = retry(start.retry, "CreateMultipartUpload", start.reporter, || {
            let mut request = client
                .create_multipart_upload()
                .bucket(&target.bucket)
                .key(&target.key)
                .content_type(&start.info.content_type)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_metadata(Some(start.info.metadata.clone().into_iter().collect()));
            request = match &start.options.encryption {
                Encryption::Aes256 => request.server_side_encryption(ServerSideEncryption::Aes256),
                Encryption::Kms(key) => request
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(key),
            };
            let endpoint = &endpoint;
            async move {
                let created = request.send().await.map_err(|e| {
                    s3_error(e, "s3:PutObject (CreateMultipartUpload)", target, endpoint)
                })?;
                created.upload_id().map(str::to_string).ok_or_else(|| {
                    Error::Internal("CreateMultipartUpload returned no upload id".to_string())
                })
            }
        })
        .await?;
        let part_size = start.options.part_size;
        Ok(MultipartUpload {
            upload: Upload {
                client,
                target: target.clone(),
                id,
                endpoint,
                retry: *start.retry,
                reporter: start.reporter.clone(),
            },
            part_size,
            buffer: BytesMut::with_capacity(part_size),
            next_part: 1,
            in_flight: JoinSet::new(),
            slots: Arc::new(Semaphore::new(start.options.parallel.max(1))),
            parts: Vec::new(),
            written: 0,
        })
    }

    /// Add bytes to the object; a full part is sent, waiting while `parallel` parts are in flight.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let take = (self.part_size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.written += take as u64;
            if self.buffer.len() == self.part_size {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// The upload of the part in the buffer starts; the buffer starts afresh.
    async fn send_part(&mut self) -> Result<()> {
        self.collect_finished()?;
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("upload slots closed: {e}")))?;
        // A part that failed for good freed its slot: stop before sending more.
        self.collect_finished()?;
        let number = self.next_part;
        if u64::try_from(number).unwrap_or(u64::MAX) > MAX_PARTS {
            return Err(Error::ExportFailed {
                target: self.upload.target.to_string(),
                detail: format!(
                    "the archive needs more than {MAX_PARTS} parts of {} MiB: raise --part-size",
                    self.part_size >> 20
                ),
                kind: FailureKind::Permanent,
            });
        }
        self.next_part += 1;
        let body = self.buffer.split().freeze();
        self.buffer.reserve(self.part_size);
        let upload = self.upload.clone();
        self.in_flight.spawn(async move {
            let part = upload.part(number, body).await;
            drop(slot);
            part
        });
        Ok(())
    }

    /// Take the parts whose upload ended; the first failure ends the export.
    fn collect_finished(&mut self) -> Result<()> {
        while let Some(joined) = self.in_flight.try_join_next() {
            self.parts.push(joined_part(joined)?);
        }
        Ok(())
    }

    /// Send the last part, wait for every part, then CompleteMultipartUpload. On an error the caller
    /// must still [`abort`](MultipartUpload::abort).
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part().await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.parts.push(joined_part(joined)?);
        }
        Ok(())
    }

    /// CompleteMultipartUpload with every part, in order. Call after [`MultipartUpload::flush`].
    pub async fn complete(&mut self) -> Result<Uploaded> {
        self.parts.sort_by_key(|p| p.part_number());
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts.clone()))
            .build();
        let upload = &self.upload;
        let target = &upload.target;
        let done = retry(
            &upload.retry,
            "CompleteMultipartUpload",
            &upload.reporter,
            || {
                let request = upload
                    .client
                    .complete_multipart_upload()
                    .bucket(&target.bucket)
                    .key(&target.key)
                    .upload_id(&upload.id)
                    .multipart_upload(parts.clone());
                async move {
                    request.send().await.map_err(|e| {
                        s3_error(
                            e,
                            "s3:PutObject (CompleteMultipartUpload)",
                            target,
                            &upload.endpoint,
                        )
                    })
                }
            },
        )
        .await?;
        Ok(Uploaded {
            bytes: self.written,
            parts: self.parts.len(),
            checksum: done.checksum_crc32().map(str::to_string),
        })
    }

    /// Stop every part in flight, then AbortMultipartUpload: S3 then holds nothing of this upload.
    pub async fn abort(mut self) -> Result<()> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let upload = &self.upload;
        let target = &upload.target;
        retry(
            &upload.retry,
            "AbortMultipartUpload",
            &upload.reporter,
            || {
                let request = upload
                    .client
                    .abort_multipart_upload()
                    .bucket(&target.bucket)
                    .key(&target.key)
                    .upload_id(&upload.id);
                async move {
                    request.send().await.map_err(|e| {
                        s3_error(e, "s3:AbortMultipartUpload", target, &upload.endpoint)
                    })
                }
            },
        )
        .await
        .map(|_| ())
    }
}

fn joined_part(
    joined: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
) -> Result<CompletedPart> {
    joined.map_err(|e| Error::Internal(format!("a part upload task ended: {e}")))?
}

impl Upload {
    /// UploadPart with the part's CRC32, retried alone on a transient failure.
    async fn part(&self, number: i32, body: Bytes) -> Result<CompletedPart> {
        let crc =
            base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&body).to_be_bytes());
        let target = &self.target;
        let what = format!("upload of part {number} ({} bytes)", body.len());
        let uploaded = retry(&self.retry, &what, &self.reporter, || {
            let request = self
                .client
                .upload_part()
                .bucket(&target.bucket)
                .key(&target.key)
                .upload_id(&self.id)
                .part_number(number)
                .checksum_crc32(&crc)
                .body(ByteStream::from(body.clone()));
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| s3_error(e, "s3:PutObject (UploadPart)", target, &self.endpoint))
            }
        })
        .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(uploaded.e_tag().map(str::to_string))
            .checksum_crc32(crc)
            .build())
    }
}

/// An S3 failure as the run's error: a missing bucket, a refused action (named, with the resource the
/// role needs it on), or a failure with its kind (unreachable, 5xx, throttling pass; the rest do not).
fn s3_error<E>(error: SdkError<E>, action: &str, target: &S3Target, endpoint: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failed = |detail: String, kind| Error::ExportFailed {
        target: target.to_string(),
        detail,
        kind,
    };
    match &error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let code = context.err().code().unwrap_or("");
            let message = context.err().message().unwrap_or("");
            match code {
                "NoSuchBucket" => Error::BucketNotFound {
                    bucket: target.bucket.clone(),
                    action: action.to_string(),
                },
                _ if status == 403 || code == "AccessDenied" => Error::AuthFailed {
                    target: format!("S3 bucket {}", target.bucket),
                    detail: format!(
                        "{action} on {target} was denied ({code}: {message}); the role needs it on arn:aws:s3:::{}/{}",
                        target.bucket, target.key
                    ),
                },
                "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" => failed(
                    format!("{action}: {code} {message}"),
                    FailureKind::Transient,
                ),
                "" => failed(
                    format!("{action}: HTTP {status}: {}", DisplayErrorContext(&error)),
                    FailureKind::from_status(status),
                ),
                _ => failed(
                    format!("{action}: HTTP {status} {code} {message}"),
                    match FailureKind::from_status(status) {
                        FailureKind::Transient => FailureKind::Transient,
                        _ => FailureKind::Permanent,
                    },
                ),
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => failed(
            format!("{action}: cannot reach S3 at {endpoint}; check the network, the region and AWS_ENDPOINT_URL_S3"),
            FailureKind::Transient,
        ),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => failed(
            format!("{action}: {}", DisplayErrorContext(&error)),
            FailureKind::Transient,
        ),
        _ => {
            let detail = DisplayErrorContext(&error).to_string();
            if detail.contains("credentials") {
                Error::AuthFailed {
                    target: format!("S3 bucket {}", target.bucket),
                    detail: "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE (OIDC)".to_string(),
                }
            } else {
                failed(format!("{action}: {detail}"), FailureKind::Permanent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_only_when_an_archive_would_outgrow_the_part_limit() {
        assert_eq!(part_size_for(2 << 30, 8 << 20), 8 << 20);
        // 100 GiB in 9,000 parts: 12 MiB each.
        assert_eq!(part_size_for(100 << 30, 8 << 20), 12 << 20);
        assert!(part_size_for(100 << 30, 8 << 20) as u64 * 9_000 >= 100 << 30);
    }

    #[test]
    fn endpoints_on_addresses_use_path_style() {
        assert!(needs_path_style("http://127.0.0.1:5001"));
        assert!(needs_path_style("http://localhost:4566/"));
        assert!(needs_path_style("https://[::1]:9000"));
        assert!(needs_path_style("10.0.0.5"));
        assert!(!needs_path_style("https://s3.ap-northeast-1.amazonaws.com"));
        assert!(!needs_path_style(
            "https://bucket.vpce-123.s3.us-east-1.vpce.amazonaws.com"
        ));
    }
}
