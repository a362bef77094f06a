//! One registry blob, read as a stream and checked while it streams: every byte goes through SHA-256,
//! the count must be the descriptor's size (the tar header was written with it), and the hash must be
//! the digest when the last byte arrives. A connection that fails mid-blob is resumed at the byte
//! where it stopped (a range request), under the retry policy; the hash carries on across resumes.

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, FailureKind, Result};
use crate::registry::{classify_blob_read, BlobStream, RegistryApi, RegistryApiError};
use crate::report::Reporter;
use crate::retry::{retry, RetryPolicy};

/// What a blob reader needs besides the blob: where from, the retry policy, where warnings go, and
/// the names errors give.
pub struct Source<'a> {
    pub api: &'a RegistryApi,
    pub retry: &'a RetryPolicy,
    pub reporter: &'a Reporter,
    /// `registry/repository:tag` or `…@digest`, as asked for.
    pub reference: &'a str,
    pub registry: &'a str,
    pub repository: &'a str,
}

/// A blob being read; [`VerifiedBlob::next`] yields its chunks, then `None` once all `size` bytes
/// arrived and hash to `digest`.
pub struct VerifiedBlob<'a> {
    source: &'a Source<'a>,
    digest: String,
    size: u64,
    read: u64,
    hasher: Sha256,
    stream: Option<BlobStream>,
    resumes: u32,
}

impl<'a> VerifiedBlob<'a> {
    pub fn new(source: &'a Source<'a>, digest: &str, size: u64) -> Self {
        VerifiedBlob {
            source,
            digest: digest.to_string(),
            size,
            read: 0,
            hasher: Sha256::new(),
            stream: None,
            resumes: 0,
        }
    }

    /// The whole blob, for the small ones (configs).
    pub async fn read_all(mut self) -> Result<Vec<u8>> {
        let mut all = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 20));
        while let Some(chunk) = self.next().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    /// The next chunk, or `None` at the verified end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            let stream = match self.stream.as_mut() {
                Some(stream) => stream,
                None => self.stream.insert(self.open().await?),
            };
            match stream.stream.next().await {
                Some(Ok(chunk)) => {
                    if let Some(chunk) = self.accept(chunk)? {
                        return Ok(Some(chunk));
                    }
                }
                Some(Err(error)) => match classify_blob_read(&error) {
                    Err(mismatch) => return Err(self.corrupt(mismatch)),
                    Ok(FailureKind::Transient) => self.resume(error.to_string()).await?,
                    Ok(kind) => return Err(self.failed(error.to_string(), kind)),
                },
                None if self.read < self.size => {
                    self.resume(format!(
                        "the registry ended the blob after {} of {} bytes",
                        self.read, self.size
                    ))
                    .await?;
                }
                None => return self.finish().map(|()| None),
            }
        }
    }

    /// Count and hash a chunk, dropping what a registry that ignored a range sent again.
    fn accept(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>> {
        if let Some(stream) = self.stream.as_mut() {
            if stream.skip > 0 {
                let drop = usize::try_from(stream.skip)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                stream.skip -= drop as u64;
                chunk = chunk.slice(drop..);
            }
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        self.read += chunk.len() as u64;
        if self.read > self.size {
            return Err(self.corrupt(format!(
                "the registry sent more than the {} bytes its descriptor gives",
                self.size
            )));
        }
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }

    fn finish(&mut self) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual == self.digest {
            Ok(())
        } else {
            Err(self.corrupt(format!("its {} bytes hash to {actual}", self.size)))
        }
    }

    /// Open the blob at the byte reached so far, retrying transient failures.
    async fn open(&self) -> Result<BlobStream> {
        let what = format!("read of blob {}", self.digest);
        let source = self.source;
        retry(source.retry, &what, source.reporter, || async {
            source
                .api
                .blob_stream(&self.digest, self.read)
                .await
                .map_err(|e| self.registry_error(e))
        })
        .await
    }

    /// After a transient failure mid-blob: wait, then read on from where it stopped.
    async fn resume(&mut self, detail: String) -> Result<()> {
        self.stream = None;
        self.resumes += 1;
        let policy = self.source.retry;
        if self.resumes >= policy.attempts.max(1) {
            return Err(self.failed(
                format!("{detail} (gave up after {} attempts)", self.resumes),
                FailureKind::Transient,
            ));
        }
        let delay = policy.delay(self.resumes - 1);
        self.source.reporter.warn(format!(
            "read of blob {} stopped at byte {} ({detail}); resuming in {:.1} s",
            self.digest,
            self.read,
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::BlobCorrupt {
            reference: self.source.reference.to_string(),
            digest: self.digest.clone(),
            detail,
        }
    }

    fn failed(&self, detail: String, kind: FailureKind) -> Error {
        Error::ExportFailed {
            target: self.source.reference.to_string(),
            detail: format!("reading blob {}: {detail}", self.digest),
            kind,
        }
    }

    fn registry_error(&self, error: RegistryApiError) -> Error {
        registry_error(self.source, &format!("blob {}", self.digest), error)
    }
}

/// A registry failure while exporting `reference`, as the run's error: refused credentials (naming the
/// read), a missing repository or object, or a failure with its kind.
pub fn registry_error(source: &Source, what: &str, error: RegistryApiError) -> Error {
    let reference = source.reference;
    match error {
        RegistryApiError::Unauthorized => Error::AuthFailed {
            target: reference.to_string(),
            detail: format!(
                "the registry refused to let these credentials read {what} (pull: ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the repository)"
            ),
        },
        RegistryApiError::RepositoryNotFound => Error::RepositoryNotFound {
            repository: source.repository.to_string(),
            registry: source.registry.to_string(),
        },
        RegistryApiError::Failed {
            kind: FailureKind::NotFound,
            detail,
        } => Error::ImageNotFound {
            reference: reference.to_string(),
            detail,
        },
        RegistryApiError::Failed { kind, detail } => Error::ExportFailed {
            target: reference.to_string(),
            detail: format!("reading {what}: {detail}"),
            kind,
        },
    }
}
