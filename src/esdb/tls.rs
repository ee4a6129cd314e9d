//! The rustls configuration handed to reqwest: the `ring` crypto provider chosen explicitly, the
//! system trust roots plus an optional CA file, and the ALPN list.
//!
//! System roots come from `rustls-native-certs` rather than `webpki-roots`: standby runs on
//! operator-managed hosts where the OS trust store is the administered source of truth (corporate
//! CAs added with `update-ca-certificates`, removals shipped by OS updates, `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` honoured), whereas `webpki-roots` freezes Mozilla's list at build time and ignores
//! the host. It is also already in the dependency tree through reqwest's platform verifier. Event
//! Store clusters usually have their own CA; that one goes in [`ClientConfig::ca_file`].
//!
//! [`ClientConfig::ca_file`]: super::config::ClientConfig::ca_file

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;

use super::error::Error;

fn config_error(detail: impl Into<String>) -> Error {
    Error::Config {
        detail: detail.into(),
    }
}

/// Adds every certificate of a PEM file to `roots`; returns how many were added.
///
/// # Errors
///
/// [`Error::Config`] if the file cannot be read, is not PEM, or holds no usable certificate.
pub fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, Error> {
    let file = File::open(path).map_err(|e| {
        config_error(format!(
            "cannot open the CA file {}: {e}; check the ca_file setting and the file permissions",
            path.display()
        ))
    })?;
    let mut reader = BufReader::new(file);
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| {
            config_error(format!(
                "cannot read the CA file {} as PEM: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            config_error(format!(
                "the CA file {} holds a certificate rustls cannot use: {e}",
                path.display()
            ))
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(config_error(format!(
            "the CA file {} contains no PEM certificate (-----BEGIN CERTIFICATE-----); give the \
             cluster CA certificate in PEM format",
            path.display()
        )));
    }
    Ok(added)
}

/// Builds the client TLS configuration.
///
/// `require_roots`: fail when no trust root at all is available (for `https` base URLs).
///
/// # Errors
///
/// [`Error::Config`] for an unusable CA file, or no trust roots when they are required.
pub fn client_config(
    ca_file: Option<&Path>,
    http2: bool,
    require_roots: bool,
) -> Result<rustls::ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if !native.errors.is_empty() || ignored > 0 {
        tracing::debug!(
            added,
            ignored,
            errors = native.errors.len(),
            "some system CA certificates could not be loaded"
        );
    }
    if let Some(path) = ca_file {
        add_pem_file(&mut roots, path)?;
    }
    if require_roots && roots.is_empty() {
        return Err(config_error(
            "no trusted CA certificate is available for https: install the system CA bundle \
             (e.g. the ca-certificates package) or set ca_file to the cluster CA in PEM format",
        ));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The TLS configuration of the gRPC client: ALPN `h2` only (gRPC needs HTTP/2), the same trust
/// roots as [`client_config`], an optional X.509 user certificate sent as the client certificate
/// (`userCertFile`/`userKeyFile`), and, with `verify == false` (`tlsVerifyCert=false`), any server
/// certificate accepted; signatures are still checked, so the handshake stays a real one.
///
/// # Errors
///
/// [`Error::Config`] for an unusable CA, certificate or key file, or no trust roots.
pub fn grpc_client_config(
    ca_file: Option<&Path>,
    verify: bool,
    user_certificate: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, Error> {
    let mut config = client_config(ca_file, true, verify)?;
    if let Some((cert_file, key_file)) = user_certificate {
        let certs = read_certs(cert_file, "userCertFile")?;
        let key = read_key(key_file)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = config_roots(ca_file)?;
        config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                config_error(format!(
                    "the user certificate {} and key {} do not make a usable client \
                     certificate: {e}",
                    cert_file.display(),
                    key_file.display()
                ))
            })?;
    }
    config.alpn_protocols = vec![b"h2".to_vec()];
    if !verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyServerCertificate(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))));
    }
    Ok(config)
}

fn config_roots(ca_file: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        add_pem_file(&mut roots, path)?;
    }
    Ok(roots)
}

fn read_certs(
    path: &Path,
    setting: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
    let file = File::open(path)
        .map_err(|e| config_error(format!("cannot open the {setting} {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("cannot read {} as PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "the {setting} {} contains no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, Error> {
    let file = File::open(path).map_err(|e| {
        config_error(format!(
            "cannot open the userKeyFile {}: {e}",
            path.display()
        ))
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| config_error(format!("cannot read {} as PEM: {e}", path.display())))?
        .ok_or_else(|| {
            config_error(format!(
                "the userKeyFile {} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ))
        })
}

/// `tlsVerifyCert=false`: accepts any certificate chain and name, but still verifies the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// ISRG Root X1 (a public root certificate): a known-good PEM for tests.
#[cfg(test)]
pub(crate) const ISRG_ROOT_X1: &str = "-----BEGIN CERTIFICATE-----
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=
-----END CERTIFICATE-----
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn builds_with_a_custom_ca_and_alpn() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(ISRG_ROOT_X1.as_bytes()).unwrap();
        let config = client_config(Some(file.path()), false, true).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let config = client_config(Some(file.path()), true, true).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2".to_vec());
        let mut roots = RootCertStore::empty();
        assert_eq!(add_pem_file(&mut roots, file.path()).unwrap(), 1);
    }

    #[test]
    fn grpc_config_speaks_h2_and_takes_a_user_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let certs = devnode::DevCerts::ensure(dir.path()).unwrap();
        let config = grpc_client_config(Some(&certs.ca_file()), true, None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(!config.client_auth_cert_resolver.has_certs());
        // Any certificate with its key works as a client certificate.
        let user = (certs.cert_file(), certs.key_file());
        let config =
            grpc_client_config(Some(&certs.ca_file()), true, Some((&user.0, &user.1))).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        // tlsVerifyCert=false needs no trust roots at all.
        grpc_client_config(None, false, None).unwrap();

        let err = grpc_client_config(None, true, Some((&user.0, &user.0))).unwrap_err();
        assert!(err.to_string().contains("no PEM private key"), "{err}");
        let missing = Path::new("/nonexistent/user.key");
        let err = grpc_client_config(None, true, Some((&user.0, missing))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/user.key"), "{err}");
    }

    #[test]
    fn bad_ca_files_are_config_errors() {
        let missing = Path::new("/nonexistent/standby-ca.pem");
        let err = client_config(Some(missing), false, false).unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        assert!(err.to_string().contains("/nonexistent/standby-ca.pem"));

        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"not a certificate").unwrap();
        let err = client_config(Some(file.path()), false, false).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
