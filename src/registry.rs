//! Read-only access to the registry's HTTP API (OCI distribution), through `oci-client`: it already speaks
//! the token and Basic auth flows of ECR and other registries. Used to prove what was pushed.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::auth::Credentials;
use crate::plan::{Registry, Repository, Tag};

/// Why a registry read failed, in the terms a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum RegistryApiError {
    #[error("the registry refused the credentials")]
    Unauthorized,
    #[error("the repository does not exist")]
    RepositoryNotFound,
    #[error("{0}")]
    Other(String),
}

/// One repository in one registry, with the credentials to read it.
pub struct RegistryApi {
    client: Client,
    auth: RegistryAuth,
    registry: Registry,
    repository: Repository,
}

impl RegistryApi {
    pub fn new(registry: &Registry, repository: &Repository, credentials: &Credentials) -> Self {
        // reqwest is built without a bundled crypto provider; use ring, as the AWS client does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if registry.is_loopback() {
            ClientProtocol::HttpsExcept(vec![registry.host().to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let auth = match credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.expose().to_string())
            }
        };
        RegistryApi {
            client: Client::new(config),
            auth,
            registry: registry.clone(),
            repository: repository.clone(),
        }
    }

    fn reference(&self, tag: &Tag) -> Reference {
        Reference::with_tag(
            self.registry.host().to_string(),
            self.repository.as_str().to_string(),
            tag.as_str().to_string(),
        )
    }

    /// The manifest digest a tag resolves to, or `None` when the tag is absent.
    pub async fn manifest_digest(&self, tag: &Tag) -> Result<Option<String>, RegistryApiError> {
        match self
            .client
            .fetch_manifest_digest(&self.reference(tag), &self.auth)
            .await
        {
            Ok(digest) => Ok(Some(digest)),
            Err(e) => match classify(e) {
                Classified::ManifestUnknown => Ok(None),
                Classified::Error(e) => Err(e),
            },
        }
    }
}

enum Classified {
    ManifestUnknown,
    Error(RegistryApiError),
}

fn classify(error: OciDistributionError) -> Classified {
    match &error {
        OciDistributionError::ImageManifestNotFoundError(_) => Classified::ManifestUnknown,
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            Classified::Error(RegistryApiError::Unauthorized)
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| matches!(c, OciErrorCode::ManifestUnknown)) {
                Classified::ManifestUnknown
            } else if codes.iter().any(|c| matches!(c, OciErrorCode::NameUnknown)) {
                Classified::Error(RegistryApiError::RepositoryNotFound)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Classified::Error(RegistryApiError::Unauthorized)
            } else {
                Classified::Error(RegistryApiError::Other(error.to_string()))
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Classified::ManifestUnknown,
        OciDistributionError::ServerError { code: 401 | 403, .. } => {
            Classified::Error(RegistryApiError::Unauthorized)
        }
        _ => Classified::Error(RegistryApiError::Other(error.to_string())),
    }
}
