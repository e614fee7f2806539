//! The issued certificate: the key generated for it, its CSR, what is read from the chain the CA
//! returns, and the bundle stored as a new version of the certificate's secret, in the format
//! ACM exports take (so hosts install either source with the same document).

use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
use aws_sdk_secretsmanager::types::Tag;
use certship_shared::acme::{IssueRequest, KeyType, SOURCE_PREFIX, certificate_secret_name};
use certship_shared::bundle::{AcmeFields, SecretBundle, fullchain, written_version};
use certship_shared::passphrase::Passphrase;
use certship_shared::{CertshipError, ExportResult, pem, time};
use std::time::{Duration, SystemTime};

/// Tag key carrying the ACME certificate's id on its secret.
pub const CERTIFICATE_ID_TAG: &str = "certship:acme-certificate-id";

/// A fresh key of `key_type` and a CSR for the request's names (the first is the common name),
/// both DER. The key stays in this process until it is encrypted into the bundle.
pub fn key_and_csr(
    key_type: KeyType,
    domains: &[String],
) -> Result<(rcgen::KeyPair, Vec<u8>), CertshipError> {
    let crypto = |e: rcgen::Error| CertshipError::Service(format!("key or CSR generation: {e}"));
    let key = match key_type {
        KeyType::EcP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcP384 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .map_err(crypto)?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec()).map_err(crypto)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = domains.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let csr = params.serialize_request(&key).map_err(crypto)?;
    Ok((key, csr.der().to_vec()))
}

/// What is read from the CA's chain: the leaf, the rest of the chain, and the leaf's serial,
/// expiry and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub leaf: String,
    pub chain: String,
    pub serial: String,
    pub not_after: SystemTime,
    pub domains: Vec<String>,
}

impl Issued {
    /// Splits the PEM chain the CA returned (leaf first, RFC 8555 §7.4.2) and reads the leaf.
    pub fn from_chain(pem_chain: &str) -> Result<Self, CertshipError> {
        let bad = |what: &str| {
            CertshipError::AcmeFailed(format!("the CA returned a certificate chain that {what}"))
        };
        let blocks = pem_blocks(pem_chain);
        let leaf = blocks
            .first()
            .ok_or_else(|| bad("holds no certificate"))?
            .clone();
        let chain = blocks[1..].concat();
        let der = pem::first_certificate_der(&leaf).ok_or_else(|| bad("is not PEM"))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| bad("does not parse"))?;
        let not_after = u64::try_from(cert.validity().not_after.timestamp())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| bad("expires before 1970"))?;
        let mut domains = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                    domains.push(dns.to_string());
                }
            }
        }
        let serial = pem::pem_serial(&leaf).ok_or_else(|| bad("has no serial"))?;
        Ok(Self {
            leaf,
            chain,
            serial,
            not_after,
            domains,
        })
    }

    /// Whole days left before the certificate expires, at `now`.
    pub fn days_left(&self, now: SystemTime) -> u64 {
        self.not_after
            .duration_since(now)
            .map(|d| d.as_secs() / 86_400)
            .unwrap_or(0)
    }
}

/// Each `-----BEGIN CERTIFICATE-----` block of `pem`, ending in a newline.
fn pem_blocks(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

/// Encrypts the key with a fresh passphrase and writes the bundle as the certificate's secret's
/// new current version. Returns `$.Issued`, which holds references only.
pub async fn store(
    secrets: &aws_sdk_secretsmanager::Client,
    request: &IssueRequest,
    certificate_id: &str,
    key: &rcgen::KeyPair,
    issued: &Issued,
) -> Result<ExportResult, CertshipError> {
    let passphrase = Passphrase::generate()?;
    let encrypted_key = crate::pkcs8::encrypt_pem(&key.serialize_der(), passphrase.expose())
        .map_err(|e| CertshipError::Service(format!("encrypting the key: {e}")))?;
    let now = time::rfc3339(SystemTime::now());
    let not_after = time::rfc3339(issued.not_after);
    let source = format!("{SOURCE_PREFIX}{certificate_id}");
    let bundle = SecretBundle {
        certificate_arn: &source,
        certificate: &issued.leaf,
        chain: &issued.chain,
        fullchain: fullchain(&issued.leaf, &issued.chain),
        encrypted_private_key: &encrypted_key,
        passphrase: passphrase.expose(),
        serial: &issued.serial,
        not_after: &not_after,
        domains: &issued.domains,
        exported_at: &now,
        acme: Some(AcmeFields {
            expiry: &not_after,
            obtained_at: &now,
            key_type: request.key_type.as_str(),
            directory: request.directory_url(),
        }),
    };
    let secret_string = serde_json::to_string(&bundle)
        .map_err(|e| CertshipError::Service(format!("could not encode the bundle: {e}")))?;
    let name = certificate_secret_name(certificate_id);
    let (secret_arn, secret_version_id) =
        write_secret(secrets, &name, secret_string, certificate_id).await?;
    tracing::info!(
        certificate = %source,
        serial = %issued.serial,
        not_after = %not_after,
        secret_arn = %secret_arn,
        secret_version_id = %secret_version_id,
        "stored the issued certificate as a new secret version"
    );
    Ok(ExportResult {
        secret_arn,
        secret_version_id,
        serial: issued.serial.clone(),
        not_after,
        key_algorithm: request.key_type.acm_name().to_string(),
        domains: issued.domains.clone(),
        exported_at: now,
    })
}

async fn write_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    name: &str,
    secret_string: String,
    certificate_id: &str,
) -> Result<(String, String), CertshipError> {
    let tag = Tag::builder()
        .key(CERTIFICATE_ID_TAG)
        .value(certificate_id)
        .build();
    let created = secrets
        .create_secret()
        .name(name)
        .description(format!("certship ACME certificate {certificate_id}"))
        .secret_string(secret_string.clone())
        .tags(tag)
        .send()
        .await;
    match created {
        Ok(out) => return written_version("CreateSecret", out.arn, out.version_id),
        Err(err) => match err.as_service_error() {
            Some(CreateSecretError::ResourceExistsException(_)) => {}
            _ => return Err(CertshipError::from_sdk("CreateSecret", err)),
        },
    }
    let put = secrets
        .put_secret_value()
        .secret_id(name)
        .secret_string(secret_string)
        .send()
        .await
        .map_err(|e| CertshipError::from_sdk("PutSecretValue", e))?;
    written_version("PutSecretValue", put.arn, put.version_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_names_every_domain_and_a_chain_splits_into_leaf_and_rest() {
        // given a self-signed certificate standing in for an issued leaf, and a second block
        let (key, csr) =
            key_and_csr(KeyType::EcP256, &["x.test".into(), "*.x.test".into()]).unwrap();
        assert!(!csr.is_empty());
        let params =
            rcgen::CertificateParams::new(vec!["x.test".into(), "*.x.test".into()]).unwrap();
        let leaf = params.self_signed(&key).unwrap().pem();
        let other = rcgen::CertificateParams::new(vec!["ca.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        // when the chain is read
        let issued = Issued::from_chain(&format!("{leaf}{other}")).unwrap();
        // then the leaf is the first block, the rest is the chain, and the names are the SANs
        assert_eq!(issued.leaf.trim(), leaf.trim());
        assert_eq!(issued.chain.trim(), other.trim());
        assert_eq!(issued.domains, ["x.test", "*.x.test"]);
        assert_eq!(Some(issued.serial.clone()), pem::pem_serial(&leaf));
        assert!(issued.days_left(SystemTime::now()) > 300);
    }

    #[test]
    fn each_key_type_makes_its_key() {
        for (key_type, alg) in [
            (KeyType::EcP256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (KeyType::EcP384, &rcgen::PKCS_ECDSA_P384_SHA384),
            (KeyType::Rsa2048, &rcgen::PKCS_RSA_SHA256),
        ] {
            let (key, _) = key_and_csr(key_type, &["x.test".into()]).unwrap();
            assert!(key.is_compatible(alg), "{key_type:?}");
        }
    }

    #[test]
    fn a_chain_without_certificates_is_refused() {
        let err = Issued::from_chain("not a chain").unwrap_err();
        assert_eq!(err.name(), "AcmeFailed");
    }
}
