//! Connection to the Docker daemon, shared by the build and push phases.

use std::time::Duration;

use bollard::Docker;

use crate::error::{Error, Result};

/// The daemon address in force: `DOCKER_HOST`, else the local socket.
pub fn daemon_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// Whether the daemon is remote, where compressing the context pays for itself.
pub fn is_remote(host: &str) -> bool {
    host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://")
}

/// Connect and ping, so an absent daemon is reported before any work starts.
pub async fn connect(timeout: Duration) -> Result<Docker> {
    let host = daemon_host();
    let unreachable = |detail: String| Error::DaemonUnreachable {
        host: host.clone(),
        detail,
    };
    let docker = Docker::connect_with_defaults()
        .map_err(|e| unreachable(e.to_string()))?
        .with_timeout(timeout)
        .with_request_modifier(url_safe_registry_auth);
    // A short ping: the long timeout above is for the context upload, not for finding out nobody answers.
    match tokio::time::timeout(Duration::from_secs(15), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no answer to ping within 15 s".to_string())),
    }
}

/// Engine 20.10 decodes X-Registry-Auth as URL-safe base64 and silently drops what it cannot read, while
/// bollard encodes it as standard base64; passwords whose encoding holds `+` or `/` would then be lost.
fn url_safe_registry_auth(mut request: bollard::BollardRequest) -> bollard::BollardRequest {
    if let Some(value) = request.headers().get("X-Registry-Auth") {
        if let Ok(text) = value.to_str() {
            let fixed = text.replace('+', "-").replace('/', "_");
            if let Ok(header) = fixed.parse() {
                request.headers_mut().insert("X-Registry-Auth", header);
            }
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_becomes_url_safe() {
        let request = http::Request::builder()
            .header("X-Registry-Auth", "ab+c/d==")
            .body(bollard::body_full(bytes::Bytes::new()))
            .unwrap();
        let fixed = url_safe_registry_auth(request);
        assert_eq!(fixed.headers()["X-Registry-Auth"], "ab-c_d==");
    }

    #[test]
    fn remote_daemons_are_tcp() {
        assert!(is_remote("tcp://docker:2375"));
        assert!(!is_remote("unix:///var/run/docker.sock"));
    }
}
