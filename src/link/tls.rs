//! The link's WebSocket connection to its upstream: plain TCP for `ws://`, TLS (rustls, ring)
//! for `wss://` trusting only the certificates of `[[link]] ca_file`.

use super::LinkError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream the WebSocket runs over (TCP, or TLS over TCP).
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

/// The WebSocket to the upstream.
pub type Ws = tokio_tungstenite::WebSocketStream<Box<dyn IoStream>>;

/// `HOST:PORT` and the host of `url` (`ws://HOST:PORT/...`); the port defaults to 80 / 443.
fn authority(url: &str) -> Result<(String, String), LinkError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| LinkError::Unreachable(format!("bad URL {url:?}")))?;
    let auth = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h.to_string(), p.to_string()),
        _ => (
            auth.to_string(),
            if scheme == "wss" { "443" } else { "80" }.to_string(),
        ),
    };
    Ok((
        format!("{host}:{port}"),
        host.trim_matches(['[', ']']).to_string(),
    ))
}

/// Connects to `url` (`ws://` or `wss://`) and makes the WebSocket handshake.
///
/// # Errors
/// [`LinkError::Unreachable`] (TCP, TLS, handshake), [`LinkError::Refused`] (an HTTP status
/// instead of the upgrade: a bad token, a ban).
pub async fn connect(url: &str, ca_file: Option<&Path>) -> Result<Ws, LinkError> {
    let (addr, host) = authority(url)?;
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| LinkError::Unreachable(format!("{addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn IoStream> = if url.starts_with("wss://") {
        let ca = ca_file.ok_or_else(|| LinkError::Refused("wss:// needs ca_file".into()))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| LinkError::Refused(format!("{}: {e}", ca.display())))?;
        for c in certs {
            let c = c.map_err(|e| LinkError::Refused(format!("{}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| LinkError::Refused(format!("{}: {e}", ca.display())))?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Refused(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(host)
            .map_err(|e| LinkError::Refused(format!("server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| LinkError::Unreachable(format!("TLS: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    match tokio_tungstenite::client_async(url, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            Err(LinkError::Refused(format!(
                "HTTP {}: {body}",
                resp.status()
            )))
        }
        Err(e) => Err(LinkError::Unreachable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            authority("ws://127.0.0.1:9000/ws?token=x").unwrap(),
            ("127.0.0.1:9000".to_string(), "127.0.0.1".to_string())
        );
        assert_eq!(
            authority("wss://hub.example/ws").unwrap(),
            ("hub.example:443".to_string(), "hub.example".to_string())
        );
    }
}
