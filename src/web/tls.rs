//! HTTPS on the one listen port: certificates (configured files, or a local CA and a server
//! certificate generated into the state directory) and a listener that sniffs each connection
//! and serves TLS or plain HTTP on the same port.
//!
//! A connection whose first byte is `0x16` (a TLS handshake record) is handed to rustls; any
//! other connection is plain HTTP, allowed per `server.plain_http` and otherwise answered with
//! a redirect to `https://` on the same port. Handshakes run in their own tasks, bounded by
//! the pending-connection limits and header timeout ([`super::pending`]), so a slow client
//! never holds up the accept loop.

use super::pending::{Pending, PendingGuard};
use crate::config::{Config, PlainHttp, TlsMode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Validity of a generated server certificate, days (iOS refuses more than 825).
const SERVER_CERT_DAYS: i64 = 800;
/// A generated server certificate is re-issued when it expires within this many days.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Validity of the generated local CA, days.
const CA_DAYS: i64 = 3650;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate/key pair.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Io { what, path, source }
}

/// The files of a generated certificate set in `STATE_DIR/tls/`.
#[derive(Debug, Clone)]
pub struct GeneratedPaths {
    /// The local CA certificate (PEM): what phones install to trust the gateway.
    pub ca_cert: PathBuf,
    /// The local CA private key (PEM, mode 0600).
    pub ca_key: PathBuf,
    /// The server certificate chain (PEM: server certificate then CA).
    pub server_cert: PathBuf,
    /// The server private key (PEM, mode 0600).
    pub server_key: PathBuf,
    /// The names the server certificate was issued for and its expiry (to re-issue on change).
    pub server_names: PathBuf,
}

impl GeneratedPaths {
    /// The paths under `STATE_DIR/tls/`.
    pub fn new(state_dir: &Path) -> Self {
        let d = state_dir.join("tls");
        Self {
            ca_cert: d.join("ca.pem"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            server_names: d.join("server.names"),
        }
    }
}

/// The TLS side of the listener, ready to accept.
#[derive(Clone)]
pub struct TlsSetup {
    /// The rustls acceptor.
    pub acceptor: TlsAcceptor,
    /// The local CA certificate (PEM) when the certificate was generated (`tls = "auto"`).
    pub ca_pem: Option<String>,
    /// The names the certificate covers (generated certificates only; empty for files).
    pub names: Vec<String>,
}

/// Builds the TLS setup the configuration asks for: `None` for `tls = "off"`.
///
/// # Errors
/// [`TlsError`] when the files cannot be read, hold no certificate or key, or generation fails.
pub fn setup(cfg: &Config) -> Result<Option<TlsSetup>, TlsError> {
    let (chain, key, ca_pem, names) = match cfg.server.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => {
            let (c, k) = read_pair(&cfg.server.tls_cert_file, &cfg.server.tls_key_file)?;
            (c, k, None, Vec::new())
        }
        TlsMode::Auto => {
            let paths = GeneratedPaths::new(&cfg.state.dir);
            let names = local_names(cfg);
            ensure_generated(&paths, &names)?;
            let (c, k) = read_pair(&paths.server_cert, &paths.server_key)?;
            let ca = std::fs::read_to_string(&paths.ca_cert)
                .map_err(io_err("cannot read", &paths.ca_cert))?;
            (c, k, Some(ca), names)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsSetup {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        ca_pem,
        names,
    }))
}

fn read_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem_err = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let cert_text = std::fs::read(cert).map_err(io_err("cannot read certificate", cert))?;
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, format!("bad PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE block".into()));
    }
    let key_text = std::fs::read(key).map_err(io_err("cannot read key", key))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_text)
        .map_err(|e| pem_err(key, format!("no usable private key: {e}")))?;
    Ok((chain, key_der))
}

/// The names a generated certificate covers: localhost, loopback addresses, the host name and
/// `HOSTNAME.local`, the listen address (when not a wildcard), every interface address, and
/// `server.tls_names`. Sorted and without duplicates.
pub fn local_names(cfg: &Config) -> Vec<String> {
    let mut names = BTreeSet::new();
    names.insert("localhost".to_string());
    names.insert("127.0.0.1".to_string());
    names.insert("::1".to_string());
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_ascii_lowercase();
        if !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            names.insert(format!("{h}.local"));
            names.insert(h);
        }
    }
    let listen = cfg.server.listen.ip();
    if !listen.is_unspecified() {
        names.insert(listen.to_string());
    }
    for ip in interface_ips() {
        names.insert(ip.to_string());
    }
    names.extend(cfg.server.tls_names.iter().cloned());
    names.into_iter().collect()
}

/// Every IPv4/IPv6 address of the box's interfaces (link-local IPv6 left out).
fn interface_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    #[cfg(unix)]
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(a) = ifa.address else { continue };
            if let Some(v4) = a.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = a.as_sockaddr_in6() {
                let ip = v6.ip();
                if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    out.push(IpAddr::V6(ip));
                }
            }
        }
    }
    out
}

fn ca_params(ca_key: &KeyPair) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let id: String = ca_key
        .public_key_raw()
        .iter()
        .rev()
        .take(4)
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("radiogate local CA {id}"));
    dn.push(DnType::OrganizationName, "radiogate");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Creates the local CA (once) and (re-)issues the server certificate when it is missing,
/// covers other names than `names`, or expires within 30 days.
///
/// # Errors
/// [`TlsError`] when the files cannot be written or generation fails.
pub fn ensure_generated(paths: &GeneratedPaths, names: &[String]) -> Result<(), TlsError> {
    if let Some(dir) = paths.ca_cert.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    }
    let now = time::OffsetDateTime::now_utc();
    let existing_ca_key = std::fs::read_to_string(&paths.ca_key).ok();
    let (ca_key, fresh_ca) = match existing_ca_key.as_deref().map(KeyPair::from_pem) {
        Some(Ok(k)) if paths.ca_cert.exists() => (k, false),
        _ => (KeyPair::generate()?, true),
    };
    let mut ca = ca_params(&ca_key)?;
    if fresh_ca {
        ca.not_before = now - time::Duration::days(1);
        ca.not_after = now + time::Duration::days(CA_DAYS);
        let cert = ca.self_signed(&ca_key)?;
        write_file(&paths.ca_key, &ca_key.serialize_pem(), true)?;
        write_file(&paths.ca_cert, &cert.pem(), false)?;
        tracing::info!(path = %paths.ca_cert.display(), "generated a local certificate authority");
    }
    let want = names_record(names);
    let current = std::fs::read_to_string(&paths.server_names).unwrap_or_default();
    let still_valid = current
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("expires "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .is_some_and(|exp| exp > (now + time::Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp());
    let same_names = current.lines().skip(1).eq(want.lines());
    if !fresh_ca
        && still_valid
        && same_names
        && paths.server_cert.exists()
        && paths.server_key.exists()
    {
        return Ok(());
    }
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "radiogate");
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let not_after = now + time::Duration::days(SERVER_CERT_DAYS);
    p.not_before = now - time::Duration::days(1);
    p.not_after = not_after;
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let cert = p.signed_by(&key, &issuer)?;
    let ca_pem =
        std::fs::read_to_string(&paths.ca_cert).map_err(io_err("cannot read", &paths.ca_cert))?;
    write_file(&paths.server_key, &key.serialize_pem(), true)?;
    write_file(
        &paths.server_cert,
        &format!("{}{ca_pem}", cert.pem()),
        false,
    )?;
    write_file(
        &paths.server_names,
        &format!("expires {}\n{want}", not_after.unix_timestamp()),
        false,
    )?;
    tracing::info!(path = %paths.server_cert.display(), names = ?names,
                   "issued a server certificate from the local CA");
    Ok(())
}

fn names_record(names: &[String]) -> String {
    names.iter().map(|n| format!("{n}\n")).collect()
}

fn write_file(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(io_err("cannot write", path))?;
    f.write_all(text.as_bytes())
        .map_err(io_err("cannot write", path))
}

/// The transport of a [`Conn`]: plain TCP or TLS over TCP.
pub enum Io {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Pending connections closed at once when accept finds no file descriptor left.
const EVICT_ON_EMFILE: usize = 4;

/// A connection accepted by [`Listener`]. It fails its reads and writes once its pending
/// guard is cancelled (it stayed pending too long, or was evicted: see [`super::pending`]),
/// which makes the HTTP server drop it.
pub struct Conn {
    io: Io,
    closed: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _guard: PendingGuard,
}

impl Conn {
    fn new(io: Io, guard: PendingGuard) -> Self {
        Self {
            io,
            closed: Box::pin(guard.token.clone().cancelled_owned()),
            _guard: guard,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request in time, or evicted by newer connections",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// An [`axum::serve::Listener`] serving HTTPS and plain HTTP on one TCP port.
///
/// A background task accepts TCP connections; each is sniffed and (for TLS) handshaken in its
/// own task, and ready connections are handed to axum in the order they become ready.
pub struct Listener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener {
    /// Starts accepting on `tcp`. `tls` `None` serves plain HTTP to everyone. Each
    /// connection is pending (bounded and timed out by `pending`) until a request arrives.
    ///
    /// # Errors
    /// When the bound address cannot be read.
    pub fn new(
        tcp: TcpListener,
        tls: Option<TlsSetup>,
        plain: PlainHttp,
        pending: Pending,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, tls, plain, tx, pending));
        Ok(Self {
            ready: rx,
            local,
            acceptor,
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsSetup>,
    plain: PlainHttp,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
    pending: Pending,
) {
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            _ = sweep.tick() => {
                pending.expire(std::time::Instant::now());
                continue;
            }
        };
        let (stream, remote) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors: close the oldest pending connection to make room;
                // with none to close, back off instead of spinning.
                // A few at once: each frees its descriptor only when its task drops it.
                let evicted = (0..EVICT_ON_EMFILE)
                    .filter(|_| pending.evict_oldest())
                    .count();
                if evicted > 0 {
                    tracing::debug!(error = %e, evicted, "accept failed; closed the oldest pending connections");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let guard = pending.admit(remote);
        // Small frames (floor grants) must not wait for delayed ACKs.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let Some(tls) = tls.clone() else {
            if tx
                .send((Conn::new(Io::Plain(stream), guard), remote))
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            // Bounded by the pending guard: the header timeout, or eviction by newer ones.
            let token = guard.token.clone();
            tokio::select! {
                io = classify(stream, remote, &tls, plain) => {
                    if let Some(io) = io {
                        let _ = tx.send((Conn::new(io, guard), remote)).await;
                    }
                }
                _ = token.cancelled() => {
                    tracing::debug!(%remote, "connection closed before finishing its TLS handshake");
                }
            }
        });
    }
}

/// Whether a plain HTTP client at `remote` is served (else redirected to https).
pub fn plain_allowed(plain: PlainHttp, remote: &SocketAddr) -> bool {
    match plain {
        PlainHttp::Any => true,
        PlainHttp::None => false,
        PlainHttp::Loopback => match remote.ip() {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        },
    }
}

async fn classify(
    stream: TcpStream,
    remote: SocketAddr,
    tls: &TlsSetup,
    plain: PlainHttp,
) -> Option<Io> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.ok()?;
    if n == 0 {
        return None;
    }
    if first[0] == 0x16 {
        return match tls.acceptor.accept(stream).await {
            Ok(s) => Some(Io::Tls(Box::new(s))),
            Err(e) => {
                // Typically a browser that does not trust the certificate yet.
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                None
            }
        };
    }
    if plain_allowed(plain, &remote) {
        return Some(Io::Plain(stream));
    }
    redirect_to_https(stream).await;
    None
}

/// Reads one request head and answers `308` to the same host and path over `https://`.
async fn redirect_to_https(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let response = match redirect_location(&head) {
        Some(loc) => format!(
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: {loc}\r\nContent-Type: text/plain\r\n\
             Content-Length: 21\r\nConnection: close\r\n\r\nuse https:// instead\n"
        ),
        None => "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\
                 Connection: close\r\n\r\nuse https:// instead\n"
            .to_string(),
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `https://HOST/PATH` for a plain request head, if it has a sane request line and Host.
pub fn redirect_location(head: &str) -> Option<String> {
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?;
    if !path.starts_with('/') || path.chars().any(|c| c.is_control()) {
        return None;
    }
    let host = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
    })?;
    let sane = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    sane.then(|| format!("https://{host}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_host_and_path() {
        let head = "GET /?token=abc HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            redirect_location(head).as_deref(),
            Some("https://10.0.0.5:8080/?token=abc")
        );
        assert_eq!(redirect_location("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            redirect_location("GET / HTTP/1.1\r\nHost: evil\r\n x\r\n\r\n").as_deref(),
            Some("https://evil/")
        );
        assert_eq!(
            redirect_location("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            None
        );
    }

    #[test]
    fn loopback_policy() {
        let lo: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let lan: SocketAddr = "192.168.1.9:5".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().unwrap();
        assert!(plain_allowed(PlainHttp::Loopback, &lo));
        assert!(plain_allowed(PlainHttp::Loopback, &mapped));
        assert!(!plain_allowed(PlainHttp::Loopback, &lan));
        assert!(plain_allowed(PlainHttp::Any, &lan));
        assert!(!plain_allowed(PlainHttp::None, &lo));
    }

    #[test]
    fn generated_certificate_is_reused_and_reissued_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let paths = GeneratedPaths::new(dir.path());
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        ensure_generated(&paths, &names).unwrap();
        let ca1 = std::fs::read_to_string(&paths.ca_cert).unwrap();
        let srv1 = std::fs::read_to_string(&paths.server_cert).unwrap();
        ensure_generated(&paths, &names).unwrap();
        assert_eq!(srv1, std::fs::read_to_string(&paths.server_cert).unwrap());
        let more = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "10.1.2.3".to_string(),
        ];
        ensure_generated(&paths, &more).unwrap();
        assert_eq!(ca1, std::fs::read_to_string(&paths.ca_cert).unwrap());
        let srv2 = std::fs::read_to_string(&paths.server_cert).unwrap();
        assert_ne!(srv1, srv2);
        assert!(srv2.ends_with(&ca1), "chain ends with the CA");
        let (chain, _key) = read_pair(&paths.server_cert, &paths.server_key).unwrap();
        assert_eq!(chain.len(), 2);
    }
}
