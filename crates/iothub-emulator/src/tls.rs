//! The emulator's own certificate authority and server certificate, generated at start so
//! that clients exercise real TLS verification against `<hub>.azure-devices.net`.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) struct ServerTls {
    pub(crate) ca_cert_pem: String,
    pub(crate) config: Arc<rustls::ServerConfig>,
}

/// Generates a CA and a server certificate valid for the hub host, `localhost` and `127.0.0.1`.
pub(crate) fn generate(hub_host: &str) -> anyhow::Result<ServerTls> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "iothub-emulator test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;

    let server_key = KeyPair::generate().context("generating the server key")?;
    let mut server_params = CertificateParams::new(vec![
        hub_host.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ])
    .context("server certificate names")?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, hub_host);
    server_params.is_ca = IsCa::NoCa;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    let server_cert = server_params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .context("signing the server certificate")?;

    let chain: Vec<CertificateDer<'static>> =
        vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        ca_cert_pem: ca_cert.pem(),
        config: Arc::new(config),
    })
}
