//! TLS for the secure mode of the v20+ profiles: the rustls server configuration (ring provider,
//! as standby's client uses), a listener that hands axum finished TLS connections, and the
//! development certificates of `--dev-certs`.
//!
//! The real server loads its node certificate in `LoadNodeCertificate`
//! (`src/EventStore.Core/ClusterVNodeOptionsExtensions.cs`, `ClusterNodeOptionsExtensions.cs` in
//! 20.10) and refuses to start without one unless `--insecure` is set; see
//! [`SecurityError::CertificateRequired`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Profile;

/// Why a node's security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// v20–v26.1 without a certificate and without `--insecure`: the real server's own message
    /// (`LoadNodeCertificate`, see the module docs).
    #[error("A certificate is required unless insecure mode (--insecure) is set.")]
    CertificateRequired,
    /// A security option the imitated server generation does not have.
    #[error("{option} does not exist in profile {profile}: {hint}")]
    NotInProfile {
        option: &'static str,
        profile: Profile,
        hint: &'static str,
    },
    #[error("the TLS certificate is unusable: {0}; give the node certificate chain in PEM format")]
    Certificate(String),
    #[error(
        "the TLS private key is unusable: {0}; give the node's PKCS#8, PKCS#1 or SEC1 key in PEM format"
    )]
    Key(String),
    #[error("cannot write the development certificates to {dir}: {source}; check that the directory is writable")]
    DevCertsIo {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot generate the development certificates: {0}")]
    DevCertsGenerate(#[from] rcgen::Error),
}

/// A CA and a node certificate for `127.0.0.1` and `localhost`, as files in one directory:
/// `ca.crt` (give it to clients as their CA file), `node.crt` and `node.key` (the node's).
///
/// The CA's private key is not kept: nothing else is ever signed with it.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub dir: PathBuf,
}

impl DevCerts {
    pub const CA_FILE: &'static str = "ca.crt";
    pub const CERT_FILE: &'static str = "node.crt";
    pub const KEY_FILE: &'static str = "node.key";

    /// Uses the certificates already in `dir` when all three files are there (a restarted node
    /// keeps the CA its clients trust), otherwise generates new ones (creating `dir`).
    ///
    /// # Errors
    ///
    /// [`SecurityError::DevCertsIo`] when `dir` cannot be created or written.
    pub fn ensure(dir: impl Into<PathBuf>) -> Result<DevCerts, SecurityError> {
        let certs = DevCerts { dir: dir.into() };
        let present = [Self::CA_FILE, Self::CERT_FILE, Self::KEY_FILE]
            .iter()
            .all(|f| certs.dir.join(f).is_file());
        if !present {
            certs.generate()?;
        }
        Ok(certs)
    }

    fn generate(&self) -> Result<(), SecurityError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let io_err = |source| SecurityError::DevCertsIo {
            dir: self.dir.clone(),
            source,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "devnode development CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::from_params(&ca, &ca_key);

        let node_key = KeyPair::generate()?;
        // `new` turns "127.0.0.1" into an IP address SAN and "localhost" into a DNS name.
        let mut node =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        // The node name es-gencert-cli gives every node (the real server reads it as the
        // reserved node common name).
        node.distinguished_name
            .push(DnType::CommonName, "eventstoredb-node");
        node.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        node.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let node_cert = node.signed_by(&node_key, &issuer)?;

        std::fs::create_dir_all(&self.dir).map_err(io_err)?;
        std::fs::write(self.ca_file(), ca_cert.pem()).map_err(io_err)?;
        std::fs::write(self.cert_file(), node_cert.pem()).map_err(io_err)?;
        write_private(&self.key_file(), node_key.serialize_pem().as_bytes()).map_err(io_err)?;
        Ok(())
    }

    /// The CA certificate (PEM) clients trust, e.g. standby's `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(Self::CA_FILE)
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join(Self::CERT_FILE)
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join(Self::KEY_FILE)
    }

    /// The node's certificate and key (PEM), for [`crate::NodeConfig::tls`].
    ///
    /// # Errors
    ///
    /// [`SecurityError::DevCertsIo`] when a file cannot be read.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), SecurityError> {
        let read = |p: PathBuf| {
            std::fs::read(p).map_err(|source| SecurityError::DevCertsIo {
                dir: self.dir.clone(),
                source,
            })
        };
        Ok((read(self.cert_file())?, read(self.key_file())?))
    }
}

/// Writes a private key readable by its owner only (on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    io::Write::write_all(&mut opts.open(path)?, bytes)
}

/// The rustls server configuration for a PEM certificate chain and key. ALPN offers `h2`
/// (gRPC) and `http/1.1` (AtomPub), as the real server's Kestrel does on its one port.
pub(crate) fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, SecurityError> {
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(SecurityError::Certificate(
            "no -----BEGIN CERTIFICATE----- block".into(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| SecurityError::Key(e.to_string()))?
        .ok_or_else(|| SecurityError::Key("no PEM private key block".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SecurityError::Key(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have finished the TLS handshake. Handshakes run in their own
/// tasks (bounded by a timeout), so one slow or plaintext client cannot hold up the others.
pub(crate) struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

/// How long a client may take to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // As axum's own listener: errors such as EMFILE are transient.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                // As the plaintext listener: Nagle off, as Kestrel.
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): wait for the graceful shutdown to stop serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_are_written_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let certs = DevCerts::ensure(dir.path().join("certs")).unwrap();
        let ca = std::fs::read(certs.ca_file()).unwrap();
        let (cert, key) = certs.read().unwrap();
        server_config(&cert, &key).unwrap();
        // A second call keeps the CA clients already trust.
        let again = DevCerts::ensure(dir.path().join("certs")).unwrap();
        assert_eq!(std::fs::read(again.ca_file()).unwrap(), ca);
    }

    #[test]
    fn unusable_pem_is_refused_with_a_hint() {
        let err = server_config(b"nothing", b"nothing").unwrap_err();
        assert!(err.to_string().contains("PEM"), "{err}");
    }
}
