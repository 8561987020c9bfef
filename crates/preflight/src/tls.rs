//! TLS certificates: trusted, valid for the host, not close to expiry.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cutover_core::checklist::{Check, CheckContext, CheckResult};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;

/// Connects to a TLS server and checks its certificate: trusted by the given CA (or the
/// system's roots), valid for the host name, within its validity period, and with more than
/// `min_days` left (fail) or `warn_days` left (warn).
///
/// ```yaml
/// tls: { address: "api.internal:443", server_name: api.internal, ca_file: /etc/ssl/internal-ca.pem, warn_days: 30, min_days: 7 }
/// ```
#[derive(Debug, Clone)]
pub struct TlsCheck {
    address: String,
    server_name: String,
    ca_file: Option<PathBuf>,
    warn_days: i64,
    min_days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsParams {
    address: String,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "thirty")]
    warn_days: i64,
    #[serde(default = "seven")]
    min_days: i64,
}

fn thirty() -> i64 {
    30
}

fn seven() -> i64 {
    7
}

impl TlsCheck {
    /// Checks the certificate `address` (`host:port`) presents for `server_name`.
    pub fn new(address: impl Into<String>, server_name: impl Into<String>) -> Self {
        TlsCheck {
            address: address.into(),
            server_name: server_name.into(),
            ca_file: None,
            warn_days: 30,
            min_days: 7,
        }
    }

    /// Trusts the CA certificates in this PEM file instead of the system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Warns with fewer than `warn` days left, fails with fewer than `min`.
    pub fn days(mut self, warn: i64, min: i64) -> Self {
        self.warn_days = warn;
        self.min_days = min;
        self
    }

    pub(crate) fn from_params(p: TlsParams) -> Result<Self, (String, String)> {
        let server_name = match p.server_name {
            Some(n) => n,
            None => p
                .address
                .rsplit_once(':')
                .map(|(h, _)| h.to_owned())
                .ok_or(("address".to_owned(), format!("`{}` has no port", p.address)))?,
        };
        if p.min_days > p.warn_days {
            return Err(("min_days".into(), "must not be above `warn_days`".into()));
        }
        Ok(TlsCheck {
            address: p.address,
            server_name,
            ca_file: p.ca_file,
            warn_days: p.warn_days,
            min_days: p.min_days,
        })
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
                {
                    let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("CA file {}: {e}", path.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // Unusable system certificates are skipped, as browsers do.
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(roots)
    }
}

/// The server's certificate (DER) and what the real verifier said about it.
type Seen = (Vec<u8>, Result<(), rustls::Error>);

/// Lets every handshake finish, remembering the certificate and what the real verifier said.
#[derive(Debug)]
struct Capture {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((end_entity.to_vec(), verdict));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What the certificate says about itself.
struct Facts {
    subject: String,
    issuer: String,
    names: Vec<String>,
    not_after: i64,
}

fn facts(der: &[u8]) -> Result<Facts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the server's certificate does not parse: {e}"))?;
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => format!("{ip:?}"),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Facts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl TlsCheck {
    async fn handshake(&self) -> Result<Seen, CheckResult> {
        let error = |m: String| Err(CheckResult::error(m).evidence("address", &self.address));
        let roots = match self.roots() {
            Ok(r) => Arc::new(r),
            Err(e) => return error(e),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let inner = match WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
        {
            Ok(v) => v,
            Err(e) => return error(format!("no usable CA certificate: {e}")),
        };
        let capture = Arc::new(Capture {
            inner,
            seen: Mutex::new(None),
        });
        let config = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(b) => b
                .dangerous()
                .with_custom_certificate_verifier(
                    Arc::clone(&capture) as Arc<dyn ServerCertVerifier>
                )
                .with_no_client_auth(),
            Err(e) => return error(format!("TLS setup: {e}")),
        };
        let Ok(name) = ServerName::try_from(self.server_name.clone()) else {
            return error(format!("`{}` is not a valid server name", self.server_name));
        };
        let tcp = match tokio::net::TcpStream::connect(&self.address).await {
            Ok(s) => s,
            Err(e) => {
                return Err(
                    CheckResult::error(format!("cannot connect to {}: {e}", self.address))
                        .hint("check that the server listens there")
                        .evidence("address", &self.address),
                );
            }
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(name, tcp).await;
        let seen = capture.seen.lock().ok().and_then(|mut s| s.take());
        match (seen, handshake) {
            (Some(seen), _) => Ok(seen),
            (None, Err(e)) => error(format!("TLS handshake with {} failed: {e}", self.address)),
            (None, Ok(_)) => error("the server presented no certificate".into()),
        }
    }
}

#[async_trait]
impl Check for TlsCheck {
    async fn run(&self, ctx: &CheckContext) -> CheckResult {
        let (der, verdict) = match self.handshake().await {
            Ok(seen) => seen,
            Err(result) => return result,
        };
        let facts = match facts(&der) {
            Ok(f) => f,
            Err(e) => return CheckResult::error(e).evidence("address", &self.address),
        };
        let now = i64::try_from(ctx.now.unix_millis() / 1000).unwrap_or(i64::MAX);
        let days_left = (facts.not_after - now).div_euclid(86_400);
        let expires = jiff::Timestamp::from_second(facts.not_after)
            .map_or_else(|_| facts.not_after.to_string(), |t| t.to_string());
        let with_facts = |r: CheckResult| {
            r.evidence("address", &self.address)
                .evidence("server_name", &self.server_name)
                .evidence("subject", &facts.subject)
                .evidence("issuer", &facts.issuer)
                .evidence("names", &facts.names)
                .evidence("not_after", &expires)
                .evidence("days_left", days_left)
        };
        let renew = "renew the certificate (and check the automation that should have)";
        if let Err(e) = verdict {
            let (message, hint) = match &e {
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => (
                    format!("certificate expired on {expires}"),
                    renew.to_owned(),
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => (
                    format!(
                        "certificate is not valid for `{}` (it names {})",
                        self.server_name,
                        facts.names.join(", ")
                    ),
                    format!(
                        "issue a certificate that names `{}`, or fix the server_name",
                        self.server_name
                    ),
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
                ) => (
                    "certificate is not valid yet".to_owned(),
                    "check the server's certificate and this machine's clock".to_owned(),
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => (
                    format!("certificate is not trusted: issued by {}", facts.issuer),
                    "serve the full chain from a trusted CA, or give the right `ca_file`"
                        .to_owned(),
                ),
                other => (format!("certificate rejected: {other}"), renew.to_owned()),
            };
            return with_facts(CheckResult::fail(message).hint(hint));
        }
        if days_left < self.min_days {
            return with_facts(
                CheckResult::fail(format!(
                    "certificate expires in {days_left} days ({expires}), fewer than {}",
                    self.min_days
                ))
                .hint(renew),
            );
        }
        if days_left < self.warn_days {
            return with_facts(
                CheckResult::warn(format!(
                    "certificate expires in {days_left} days ({expires})"
                ))
                .hint(renew),
            );
        }
        with_facts(CheckResult::pass(format!(
            "valid for `{}`, {days_left} days left",
            self.server_name
        )))
    }
}
