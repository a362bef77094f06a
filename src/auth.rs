//! Auth phase: registry credentials, held in memory only.
//!
//! ECR credentials come from GetAuthorizationToken through the default AWS credential chain (environment,
//! profile, web identity for GitHub/GitLab OIDC, container credentials in CodeBuild). Nothing is written to
//! disk, and the password is never formatted into a log line or an error.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_ecr::error::{DisplayErrorContext, SdkError};
use base64::Engine;

use crate::error::{Error, Result};
use crate::identity::Registry;

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: Secret },
}

impl Credentials {
    /// The form the daemon takes in X-Registry-Auth.
    pub fn for_daemon(&self, registry: &Registry) -> Option<bollard::auth::DockerCredentials> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Basic { username, password } => Some(bollard::auth::DockerCredentials {
                username: Some(username.clone()),
                password: Some(password.expose().to_string()),
                serveraddress: Some(registry.host().to_string()),
                ..Default::default()
            }),
        }
    }
}

/// How long ECR authorization tokens are valid.
const ECR_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// An ECR authorization token, decoded.
#[derive(Debug, Clone)]
pub struct EcrToken {
    pub credentials: Credentials,
    /// The registry the token is for (`https://<account>.dkr.ecr.<region>.amazonaws.com`).
    pub proxy_endpoint: Option<Registry>,
    pub expires_at: Option<SystemTime>,
}

/// The AWS SDK configuration from the default chain, with a rustls/ring HTTPS client
/// (no aws-lc C build, a smaller binary).
/// `attempts` bounds the SDK's own retries (throttling, 5xx, timeouts) of every AWS call.
pub async fn aws_config(region: Option<&str>, attempts: u32) -> aws_config::SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(attempts.max(1)),
        );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    loader.load().await
}

/// Where the ECR API is, for error messages (an endpoint override, else the regional endpoint).
fn ecr_endpoint(config: &aws_config::SdkConfig) -> String {
    std::env::var("AWS_ENDPOINT_URL_ECR")
        .ok()
        .or_else(|| config.endpoint_url().map(str::to_string))
        .unwrap_or_else(|| {
            let region = config
                .region()
                .map_or("<no region>".to_string(), |r| r.to_string());
            format!("api.ecr.{region}.amazonaws.com")
        })
}

/// A run's registry credentials, fetched once by whichever service asks first and awaited by the
/// others: the registry, the credentials and when they expire; `None` when they could not be had (each
/// asker then fetches its own and reports the error).
pub type SharedCredentials = futures_util::future::Shared<
    futures_util::future::BoxFuture<'static, Option<(Registry, Credentials, Option<SystemTime>)>>,
>;

/// Fetch an ECR authorization token. Called right before pushing, so a long build cannot outlive it.
pub async fn ecr_token(config: &aws_config::SdkConfig) -> Result<EcrToken> {
    let target = format!("ECR at {}", ecr_endpoint(config));
    if config.region().is_none() {
        return Err(Error::usage(
            "--region",
            "no AWS region: pass --region or set AWS_REGION (ECR tokens are regional)",
        ));
    }
    let client = aws_sdk_ecr::Client::new(config);
    let requested_at = SystemTime::now();
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        client.get_authorization_token().send(),
    )
    .await
    .map_err(|_| Error::AuthFailed {
        target: target.clone(),
        detail: "GetAuthorizationToken did not answer within 60 s".to_string(),
    })?
    .map_err(|e| Error::AuthFailed {
        target: target.clone(),
        detail: describe_sdk_error(&e),
    })?;
    let data = response
        .authorization_data()
        .first()
        .ok_or_else(|| Error::AuthFailed {
            target: target.clone(),
            detail: "GetAuthorizationToken returned no authorization data".to_string(),
        })?;
    let encoded = data
        .authorization_token()
        .ok_or_else(|| Error::AuthFailed {
            target: target.clone(),
            detail: "GetAuthorizationToken returned no token".to_string(),
        })?;
    let credentials = decode_token(encoded).ok_or_else(|| Error::AuthFailed {
        target: target.clone(),
        detail: "the authorization token is not base64 of USER:PASSWORD".to_string(),
    })?;
    let proxy_endpoint = data
        .proxy_endpoint()
        .and_then(|endpoint| Registry::parse("proxyEndpoint", endpoint).ok());
    // An expiry that is already past when the token arrives comes from a skewed clock or an ECR
    // stand-in; assume ECR's documented 12-hour lifetime (a refused token is still refreshed once).
    let expires_at = data
        .expires_at()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .filter(|at| *at > requested_at)
        .or_else(|| requested_at.checked_add(ECR_TOKEN_LIFETIME));
    Ok(EcrToken {
        credentials,
        proxy_endpoint,
        expires_at,
    })
}

/// Make sure the ECR repository exists, creating it when asked (scan on push, AES256 encryption).
/// A missing repository is a clear error naming it and the region, never a retry loop.
pub async fn ensure_repository(
    config: &aws_config::SdkConfig,
    repository: &str,
    create: bool,
) -> Result<RepositoryState> {
    use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
    use aws_sdk_ecr::types::{EncryptionConfiguration, EncryptionType, ImageScanningConfiguration};

    let region = config
        .region()
        .map_or("<no region>".to_string(), |r| r.to_string());
    let client = aws_sdk_ecr::Client::new(config);
    let target = format!("ECR at {}", ecr_endpoint(config));
    let described = client
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await;
    match described {
        Ok(_) => Ok(RepositoryState::Existing),
        Err(SdkError::ServiceError(e)) if matches!(e.err(), DescribeRepositoriesError::RepositoryNotFoundException(_)) => {
            if !create {
                return Err(Error::RepositoryNotFound {
                    repository: repository.to_string(),
                    registry: format!("ECR in {region}"),
                });
            }
            client
                .create_repository()
                .repository_name(repository)
                .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
                .encryption_configuration(
                    EncryptionConfiguration::builder()
                        .encryption_type(EncryptionType::Aes256)
                        .build()
                        .map_err(|e| Error::Internal(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| Error::AuthFailed {
                    target: target.clone(),
                    detail: format!(
                        "could not create repository {repository}: {}; the role needs ecr:CreateRepository",
                        describe_sdk_error(&e)
                    ),
                })?;
            Ok(RepositoryState::Created)
        }
        Err(e) => Err(Error::AuthFailed {
            target,
            detail: format!(
                "{} (checking repository {repository}; the role needs ecr:DescribeRepositories, or pass --no-preflight)",
                describe_sdk_error(&e)
            ),
        }),
    }
}

/// Whether the repository was there or was just created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryState {
    Existing,
    Created,
}

fn decode_token(encoded: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: username.to_string(),
        password: Secret::new(password),
    })
}

/// A one-line reason for an SDK failure that says what to check. Never includes request headers.
fn describe_sdk_error<E, R>(error: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    match error {
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            "cannot connect to the ECR API; check the network, the region and AWS_ENDPOINT_URL_ECR"
                .to_string()
        }
        SdkError::DispatchFailure(failure) => match failure.as_other() {
            Some(_) | None => {
                let detail = DisplayErrorContext(error).to_string();
                if detail.contains("credentials") || detail.contains("Credentials") {
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE (OIDC)".to_string()
                } else {
                    format!("request could not be sent: {detail}")
                }
            }
        },
        SdkError::TimeoutError(_) => "the ECR API timed out".to_string(),
        SdkError::ServiceError(service) => format!(
            "{}; check that the role may call ecr:GetAuthorizationToken",
            DisplayErrorContext(service.err())
        ),
        other => DisplayErrorContext(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_formatted() {
        let creds = Credentials::Basic {
            username: "AWS".into(),
            password: Secret::new("hunter2-token"),
        };
        let shown = format!("{creds:?} {}", Secret::new("hunter2-token"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn token_decodes_to_user_and_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("AWS:pa:ss");
        match decode_token(&encoded) {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!(username, "AWS");
                assert_eq!(password.expose(), "pa:ss");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode_token("not base64!").is_none());
    }
}
