//! Encrypts PKCS#8 keys into the PEM `ENCRYPTED PRIVATE KEY` that hosts' `openssl pkey -passin`
//! reads: RFC 5958 `EncryptedPrivateKeyInfo`, RFC 8018 PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    AES_256, AES_256_KEY_LEN, DecryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::pbkdf2;
use base64::Engine as _;

/// PBKDF2 iterations: OpenSSL's own default (`openssl pkcs8 -topk8`), and above the 1000 that
/// aws-lc's FIPS indicator asks for. More would buy nothing: the passphrase is 32 random alphanumerics (~190 bits),
/// beyond brute force at any count, and it sits in the same secret as the key, so extra rounds
/// would only slow every host's decryption.
const PBKDF2_ITERATIONS: NonZeroU32 = match NonZeroU32::new(2048) {
    Some(n) => n,
    None => panic!("PBKDF2 needs at least one iteration"),
};

/// RFC 8018 asks for at least 8 bytes (OpenSSL 3.0 writes 8); NIST SP 800-132 and aws-lc's FIPS
/// indicator ask for 16.
const SALT_LEN: usize = 16;

const PBES2: &[u32] = &[1, 2, 840, 113549, 1, 5, 13];
const PBKDF2: &[u32] = &[1, 2, 840, 113549, 1, 5, 12];
const HMAC_WITH_SHA256: &[u32] = &[1, 2, 840, 113549, 2, 9];
const AES_256_CBC: &[u32] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];

const PEM_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----\n";
const PEM_END: &str = "-----END ENCRYPTED PRIVATE KEY-----\n";

/// Why a key could not be encrypted. The variants carry no data, so no message can leak the
/// passphrase or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("the private key is not DER (a PKCS#8 key starts with a SEQUENCE)")]
    NotDer,
    /// Hosts read the passphrase as one line (`-passin fd:3`), so these could never decrypt.
    #[error("the passphrase is empty or contains a line break")]
    UnusablePassphrase,
    #[error("the system random generator failed")]
    Random,
    #[error("AES-256-CBC encryption failed")]
    Cipher,
}

/// Encrypts `private_key_pkcs8_der` (a PKCS#8 `PrivateKeyInfo`, e.g. rcgen's
/// `KeyPair::serialize_der`) under `passphrase`, with a fresh salt and IV on every call.
pub fn encrypt_pem(private_key_pkcs8_der: &[u8], passphrase: &str) -> Result<String, EncryptError> {
    if private_key_pkcs8_der.first() != Some(&der::SEQUENCE) {
        return Err(EncryptError::NotDer);
    }
    if passphrase.is_empty() || passphrase.contains(['\r', '\n']) {
        return Err(EncryptError::UnusablePassphrase);
    }

    let mut salt = [0u8; SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| EncryptError::Random)?;

    let unbound = cipher_key(passphrase, &salt, PBKDF2_ITERATIONS).ok_or(EncryptError::Cipher)?;
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(unbound).map_err(|_| EncryptError::Cipher)?;

    // Encrypted in place. Room for the padding up front, so the buffer never reallocates and
    // leaves a plaintext copy behind in freed memory.
    let mut data = Vec::with_capacity(private_key_pkcs8_der.len() + AES_256.block_len());
    data.extend_from_slice(private_key_pkcs8_der);
    // `encrypt` draws a random IV itself and hands it back in the context.
    let context = match key.encrypt(&mut data) {
        Ok(context) => context,
        Err(_) => {
            data.fill(0);
            return Err(EncryptError::Cipher);
        }
    };
    let iv: &[u8] = (&context).try_into().map_err(|_| EncryptError::Cipher)?;

    Ok(pem(&encrypted_private_key_info(&salt, iv, &data)))
}

/// Why an encrypted key could not be read back. No variant carries data, so no message can leak
/// the passphrase or key bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the key is not a PEM ENCRYPTED PRIVATE KEY")]
    NotPem,
    #[error("the encrypted key's DER is malformed")]
    Malformed,
    /// Only what [`encrypt_pem`] writes is read: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC.
    #[error(
        "the key is encrypted with another algorithm than PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC"
    )]
    Unsupported,
    /// A wrong passphrase, or a damaged ciphertext.
    #[error("the key does not decrypt with this passphrase")]
    Decrypt,
}

/// The PKCS#8 `PrivateKeyInfo` DER inside `pem` (what [`encrypt_pem`] writes), decrypted with
/// `passphrase`. The caller holds the plaintext key: keep it short-lived.
pub fn decrypt_pem(pem: &str, passphrase: &str) -> Result<Vec<u8>, DecryptError> {
    use x509_parser::der_parser::ber::BerObject;
    use x509_parser::der_parser::parse_der;

    let body = pem
        .trim()
        .strip_prefix(PEM_BEGIN.trim_end())
        .and_then(|rest| rest.strip_suffix(PEM_END.trim_end()))
        .ok_or(DecryptError::NotPem)?;
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| DecryptError::NotPem)?;
    let (rest, info) = parse_der(&der).map_err(|_| DecryptError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecryptError::Malformed);
    }
    fn sequence<'a>(o: &BerObject<'a>) -> Result<Vec<BerObject<'a>>, DecryptError> {
        o.as_sequence()
            .cloned()
            .map_err(|_| DecryptError::Malformed)
    }
    fn is(o: &BerObject<'_>, oid: &[u32]) -> bool {
        o.as_oid()
            .is_ok_and(|found| found.as_bytes() == &der::oid(oid)[2..])
    }
    fn octets(o: &BerObject<'_>) -> Result<Vec<u8>, DecryptError> {
        o.as_slice()
            .map(<[u8]>::to_vec)
            .map_err(|_| DecryptError::Malformed)
    }
    // EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData }
    let [algorithm, ciphertext] = sequence(&info)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;
    let [pbes2, params] = sequence(&algorithm)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;
    if !is(&pbes2, PBES2) {
        return Err(DecryptError::Unsupported);
    }
    let [kdf, scheme] = sequence(&params)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;
    let [kdf_oid, kdf_params] = sequence(&kdf)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;
    let [scheme_oid, iv] = sequence(&scheme)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;
    if !is(&kdf_oid, PBKDF2) || !is(&scheme_oid, AES_256_CBC) {
        return Err(DecryptError::Unsupported);
    }
    // PBKDF2-params ::= SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT sha1 }
    let kdf_params = sequence(&kdf_params)?;
    let (salt, iterations) = match kdf_params.as_slice() {
        [salt, iterations, ..] => (
            octets(salt)?,
            iterations.as_u32().map_err(|_| DecryptError::Malformed)?,
        ),
        _ => return Err(DecryptError::Malformed),
    };
    let mut prf_is_sha256 = false;
    for extra in &kdf_params[2..] {
        if let Ok(length) = extra.as_u32() {
            if length as usize != AES_256_KEY_LEN {
                return Err(DecryptError::Unsupported);
            }
        } else if let Ok(prf) = sequence(extra) {
            prf_is_sha256 = prf.first().is_some_and(|oid| is(oid, HMAC_WITH_SHA256));
        }
    }
    if !prf_is_sha256 {
        return Err(DecryptError::Unsupported);
    }
    let iterations = NonZeroU32::new(iterations).ok_or(DecryptError::Malformed)?;
    let iv: [u8; 16] = octets(&iv)?
        .try_into()
        .map_err(|_| DecryptError::Malformed)?;

    let unbound = cipher_key(passphrase, &salt, iterations).ok_or(DecryptError::Decrypt)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(unbound).map_err(|_| DecryptError::Decrypt)?;
    let mut data = octets(&ciphertext)?;
    let plain_len = match key.decrypt(&mut data, DecryptionContext::Iv128(iv.into())) {
        Ok(plain) => plain.len(),
        Err(_) => {
            data.fill(0);
            return Err(DecryptError::Decrypt);
        }
    };
    data.truncate(plain_len);
    // A wrong passphrase passes the padding check about once in 256: the result must still be
    // a DER SEQUENCE filling the whole plaintext.
    if parse_der(&data).map_or(true, |(rest, o)| {
        !rest.is_empty() || o.as_sequence().is_err()
    }) {
        data.fill(0);
        return Err(DecryptError::Decrypt);
    }
    Ok(data)
}

/// The AES-256 key PBKDF2-HMAC-SHA256 derives from `passphrase` and `salt`, for both directions.
fn cipher_key(passphrase: &str, salt: &[u8], iterations: NonZeroU32) -> Option<UnboundCipherKey> {
    let mut derived = [0u8; AES_256_KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase.as_bytes(),
        &mut derived,
    );
    // UnboundCipherKey copies the key into a buffer it zeroes on drop; wipe our copy (best effort).
    let unbound = UnboundCipherKey::new(&AES_256, &derived);
    derived.fill(0);
    std::hint::black_box(&derived);
    unbound.ok()
}

/// A PKCS#8 `PrivateKeyInfo` as the PEM `PRIVATE KEY` ACM's ImportCertificate takes.
pub fn private_key_pem(private_key_pkcs8_der: &[u8]) -> String {
    pem_labelled(private_key_pkcs8_der, "PRIVATE KEY")
}

/// `EncryptedPrivateKeyInfo` (RFC 5958) with PBES2 parameters (RFC 8018, appendix A.2/A.4).
fn encrypted_private_key_info(salt: &[u8], iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    // keyLength is omitted: AES-256 has a fixed key length, and OpenSSL omits it too.
    let pbkdf2_params = der::sequence(&[
        &der::octet_string(salt),
        &der::integer(PBKDF2_ITERATIONS.get()),
        &der::sequence(&[&der::oid(HMAC_WITH_SHA256), &der::null()]),
    ]);
    let pbes2_params = der::sequence(&[
        &der::sequence(&[&der::oid(PBKDF2), &pbkdf2_params]),
        &der::sequence(&[&der::oid(AES_256_CBC), &der::octet_string(iv)]),
    ]);
    der::sequence(&[
        &der::sequence(&[&der::oid(PBES2), &pbes2_params]),
        &der::octet_string(ciphertext),
    ])
}

/// PEM with the 64-column base64 body RFC 7468 asks for.
fn pem(der: &[u8]) -> String {
    pem_labelled(der, "ENCRYPTED PRIVATE KEY")
}

fn pem_labelled(der: &[u8], label: &str) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let newlines = body.len().div_ceil(64);
    let mut out = String::with_capacity(2 * label.len() + 32 + body.len() + newlines);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(64) {
        out.extend(line.iter().copied().map(char::from));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Just the DER this module writes: definite lengths, primitive types, no parsing.
mod der {
    pub const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    const NULL: u8 = 0x05;
    const OBJECT_IDENTIFIER: u8 = 0x06;

    /// Short form below 128, else 0x80 | count followed by the minimal big-endian bytes (X.690 8.1.3).
    pub fn push_length(len: usize, out: &mut Vec<u8>) {
        if len < 0x80 {
            out.push(len as u8);
            return;
        }
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len() + 6);
        out.push(tag);
        push_length(content.len(), &mut out);
        out.extend_from_slice(content);
        out
    }

    pub fn sequence(items: &[&[u8]]) -> Vec<u8> {
        tlv(SEQUENCE, &items.concat())
    }

    pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
        tlv(OCTET_STRING, bytes)
    }

    pub fn null() -> Vec<u8> {
        tlv(NULL, &[])
    }

    /// A non-negative INTEGER: minimal two's complement, so a set top bit gets a 0x00 in front.
    pub fn integer(value: u32) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        let skip = bytes
            .iter()
            .take_while(|&&b| b == 0)
            .count()
            .min(bytes.len() - 1);
        let mut content = Vec::with_capacity(bytes.len() + 1);
        if bytes[skip] & 0x80 != 0 {
            content.push(0);
        }
        content.extend_from_slice(&bytes[skip..]);
        tlv(INTEGER, &content)
    }

    /// The first two arcs share one subidentifier (40 * a + b); each is base 128, high bit set on
    /// all but its last byte (X.690 8.19). Only for this module's constants, all of two arcs or more.
    pub fn oid(arcs: &[u32]) -> Vec<u8> {
        let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
        let mut content = Vec::new();
        for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
            let mut groups = [0u8; 5];
            let mut start = groups.len();
            let mut rest = arc;
            loop {
                start -= 1;
                let continuation = if start == groups.len() - 1 { 0 } else { 0x80 };
                groups[start] = (rest & 0x7f) as u8 | continuation;
                rest >>= 7;
                if rest == 0 {
                    break;
                }
            }
            content.extend_from_slice(&groups[start..]);
        }
        tlv(OBJECT_IDENTIFIER, &content)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Output};

    use base64::Engine as _;

    use super::*;

    const PASSPHRASE: &str = "q7Rk2VbN9xWm4TcJ8pLz3HsYd6Fg5Ae1";

    /// Runs the openssl CLI in `dir`. A missing openssl fails the test: never a silent skip.
    fn openssl(dir: &Path, args: &[&str]) -> Output {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("the openssl CLI is required for these tests: {e}"))
    }

    fn openssl_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = openssl(dir, args);
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Writes the key encrypted under PASSPHRASE, and the passphrase openssl is to try (a file,
    /// never argv), to a fresh directory.
    fn write_encrypted(der: &[u8], passin: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = encrypt_pem(der, PASSPHRASE).expect("encrypt");
        std::fs::write(dir.path().join("key.pem"), pem).expect("write key.pem");
        std::fs::write(dir.path().join("pass"), format!("{passin}\n")).expect("write pass");
        dir
    }

    /// The DER in a PEM block labelled `label`.
    fn pem_body(pem: &str, label: &str) -> Vec<u8> {
        let mut lines = pem.lines();
        assert_eq!(
            lines.next(),
            Some(format!("-----BEGIN {label}-----").as_str())
        );
        let body: String = lines.take_while(|l| !l.starts_with("-----END")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }

    /// openssl decrypts the key back to the very PKCS#8 DER that went in. Its PEM output, not
    /// `-outform DER`: OpenSSL 3 writes DER in the key type's own form (SEC1 for EC), PEM as PKCS#8.
    fn assert_openssl_round_trip(key: rcgen::KeyPair) {
        let der = key.serialize_der();
        let dir = write_encrypted(&der, PASSPHRASE);
        let decrypted = openssl_ok(
            dir.path(),
            &["pkey", "-in", "key.pem", "-passin", "file:pass"],
        );
        let decrypted = pem_body(&String::from_utf8_lossy(&decrypted), "PRIVATE KEY");
        // Not assert_eq: a failure should not print key bytes.
        assert!(decrypted == der, "openssl decrypted a different key");
    }

    #[test]
    fn pkcs8_decrypts_what_it_encrypts_for_each_key_type() {
        for key in [
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key"),
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("RSA key"),
        ] {
            let der = key.serialize_der();
            let pem = encrypt_pem(&der, PASSPHRASE).expect("encrypt");
            let decrypted = decrypt_pem(&pem, PASSPHRASE).expect("decrypt");
            assert!(decrypted == der, "a different key came back");
            // and the PEM ACM takes is the key itself, which openssl reads
            let plain = private_key_pem(&decrypted);
            assert!(pem_body(&plain, "PRIVATE KEY") == der);
        }
    }

    #[test]
    fn pkcs8_decrypts_what_openssl_encrypts_and_refuses_other_ciphers() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("plain.pem"), key.serialize_pem()).expect("write");
        std::fs::write(dir.path().join("pass"), format!("{PASSPHRASE}\n")).expect("write");
        let encrypted = |cipher: &str| {
            let out = openssl_ok(
                dir.path(),
                &[
                    "pkcs8",
                    "-topk8",
                    "-in",
                    "plain.pem",
                    "-v2",
                    cipher,
                    "-v2prf",
                    "hmacWithSHA256",
                    "-passout",
                    "file:pass",
                ],
            );
            String::from_utf8(out).expect("PEM")
        };
        let by_openssl = decrypt_pem(&encrypted("aes-256-cbc"), PASSPHRASE).expect("decrypt");
        assert!(
            by_openssl == key.serialize_der(),
            "a different key came back"
        );
        assert_eq!(
            decrypt_pem(&encrypted("aes-128-cbc"), PASSPHRASE),
            Err(DecryptError::Unsupported)
        );
    }

    #[test]
    fn pkcs8_decrypt_refuses_a_wrong_passphrase_and_broken_input() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let pem = encrypt_pem(&key.serialize_der(), PASSPHRASE).expect("encrypt");
        for wrong in ["x", "q7Rk2VbN9xWm4TcJ8pLz3HsYd6Fg5Ae2", ""] {
            assert_eq!(
                decrypt_pem(&pem, wrong),
                Err(DecryptError::Decrypt),
                "{wrong}"
            );
        }
        assert_eq!(
            decrypt_pem(&key.serialize_pem(), PASSPHRASE),
            Err(DecryptError::NotPem)
        );
        let truncated = format!(
            "{PEM_BEGIN}{}\n{PEM_END}",
            &pem.lines().nth(1).expect("a body line")[..40]
        );
        assert_eq!(
            decrypt_pem(&truncated, PASSPHRASE),
            Err(DecryptError::Malformed)
        );
    }

    #[test]
    fn pkcs8_openssl_decrypts_ec_p256() {
        assert_openssl_round_trip(
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key"),
        );
    }

    #[test]
    fn pkcs8_openssl_decrypts_ec_p384() {
        assert_openssl_round_trip(
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key"),
        );
    }

    #[test]
    fn pkcs8_openssl_decrypts_rsa_2048() {
        assert_openssl_round_trip(
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("RSA-2048 key"),
        );
    }

    #[test]
    fn pkcs8_openssl_asn1parse_names_the_algorithms() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let dir = write_encrypted(&key.serialize_der(), PASSPHRASE);
        let parsed = openssl_ok(dir.path(), &["asn1parse", "-in", "key.pem"]);
        let parsed = String::from_utf8_lossy(&parsed);
        for name in [":PBES2", ":PBKDF2", ":hmacWithSHA256", ":aes-256-cbc"] {
            assert!(parsed.contains(name), "no {name} in\n{parsed}");
        }
    }

    #[test]
    fn pkcs8_openssl_rejects_a_wrong_passphrase() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let dir = write_encrypted(&key.serialize_der(), "not-the-passphrase");
        let out = openssl(
            dir.path(),
            &[
                "pkey",
                "-in",
                "key.pem",
                "-passin",
                "file:pass",
                "-outform",
                "DER",
            ],
        );
        assert!(!out.status.success(), "openssl accepted a wrong passphrase");
        assert!(
            out.stdout.is_empty(),
            "openssl wrote a key with a wrong passphrase"
        );
    }

    /// One TLV of the DER this module writes: (tag, content, rest).
    fn read_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first, rest) = (input[0], input[1], &input[2..]);
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            let len = rest[..count]
                .iter()
                .fold(0, |len, &b| len << 8 | usize::from(b));
            (len, &rest[count..])
        };
        (tag, &rest[..len], &rest[len..])
    }

    /// The elements (whole TLVs) of the SEQUENCE `tlv`.
    fn elements(tlv: &[u8]) -> Vec<&[u8]> {
        let (tag, mut rest, _) = read_tlv(tlv);
        assert_eq!(tag, 0x30, "not a SEQUENCE");
        let mut items = Vec::new();
        while !rest.is_empty() {
            let (_, _, next) = read_tlv(rest);
            items.push(&rest[..rest.len() - next.len()]);
            rest = next;
        }
        items
    }

    /// (salt, iteration count, IV, ciphertext), read back from the PEM.
    fn fields(pem: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let der = pem_body(pem, "ENCRYPTED PRIVATE KEY");
        let (_, _, trailing) = read_tlv(&der);
        assert!(
            trailing.is_empty(),
            "bytes after the EncryptedPrivateKeyInfo"
        );
        let top = elements(&der);
        let algorithm = elements(top[0]);
        let pbes2 = elements(algorithm[1]);
        let kdf = elements(pbes2[0]);
        let pbkdf2_params = elements(kdf[1]);
        let cipher = elements(pbes2[1]);
        let content = |tlv: &[u8]| read_tlv(tlv).1.to_vec();
        (
            content(pbkdf2_params[0]),
            content(pbkdf2_params[1]),
            content(cipher[1]),
            content(top[1]),
        )
    }

    #[test]
    fn pkcs8_two_encryptions_use_fresh_salt_and_iv() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let der = key.serialize_der();
        let a = encrypt_pem(&der, PASSPHRASE).expect("encrypt");
        let b = encrypt_pem(&der, PASSPHRASE).expect("encrypt");
        let (salt_a, iterations, iv_a, data_a) = fields(&a);
        let (salt_b, _, iv_b, data_b) = fields(&b);
        assert_eq!((salt_a.len(), iv_a.len()), (16, 16));
        assert_eq!(iterations, [0x08, 0x00], "2048 iterations");
        assert_ne!(salt_a, salt_b, "salt reused");
        assert_ne!(iv_a, iv_b, "IV reused");
        assert_ne!(data_a, data_b, "same ciphertext twice");
        // PKCS#7 always pads, by a whole block when the length is already a multiple.
        assert_eq!(data_a.len(), (der.len() / 16 + 1) * 16);
    }

    #[test]
    fn pkcs8_pem_wraps_at_64_columns() {
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .expect("key");
        let pem = encrypt_pem(&key.serialize_der(), PASSPHRASE).expect("encrypt");
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        );
        assert_eq!(lines.last(), Some(&"-----END ENCRYPTED PRIVATE KEY-----"));
        let body = &lines[1..lines.len() - 1];
        assert!(body.len() > 2);
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert!((1..=64).contains(&body[body.len() - 1].len()));
        assert!(pem.ends_with('\n'));
    }

    #[test]
    fn pkcs8_rejects_unusable_input() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let der = key.serialize_der();
        for passphrase in ["", "abc\ndef", "abc\r"] {
            assert!(matches!(
                encrypt_pem(&der, passphrase),
                Err(EncryptError::UnusablePassphrase)
            ));
        }
        assert!(matches!(
            encrypt_pem(&[], PASSPHRASE),
            Err(EncryptError::NotDer)
        ));
        let pem = key.serialize_pem();
        assert!(matches!(
            encrypt_pem(pem.as_bytes(), PASSPHRASE),
            Err(EncryptError::NotDer)
        ));
    }

    fn length(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        der::push_length(len, &mut out);
        out
    }

    #[test]
    fn pkcs8_der_length_short_and_long_form() {
        assert_eq!(length(0), [0x00]);
        assert_eq!(length(127), [0x7f]);
        assert_eq!(length(128), [0x81, 0x80]);
        assert_eq!(length(255), [0x81, 0xff]);
        assert_eq!(length(256), [0x82, 0x01, 0x00]);
        assert_eq!(length(65535), [0x82, 0xff, 0xff]);
        assert_eq!(length(65536), [0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn pkcs8_der_octet_string_with_long_length() {
        let encoded = der::octet_string(&[0xab; 300]);
        assert_eq!(encoded[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(encoded.len(), 4 + 300);
    }

    #[test]
    fn pkcs8_der_integer_is_minimal_and_positive() {
        assert_eq!(der::integer(0), [0x02, 0x01, 0x00]);
        assert_eq!(der::integer(127), [0x02, 0x01, 0x7f]);
        assert_eq!(der::integer(128), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der::integer(256), [0x02, 0x02, 0x01, 0x00]);
        assert_eq!(der::integer(2048), [0x02, 0x02, 0x08, 0x00]);
        assert_eq!(
            der::integer(u32::MAX),
            [0x02, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn pkcs8_der_oids_match_their_registered_encodings() {
        let pkcs5 = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05];
        assert_eq!(der::oid(PBES2), [&pkcs5[..], &[0x0d]].concat());
        assert_eq!(der::oid(PBKDF2), [&pkcs5[..], &[0x0c]].concat());
        assert_eq!(
            der::oid(HMAC_WITH_SHA256),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09]
        );
        assert_eq!(
            der::oid(AES_256_CBC),
            [
                0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a
            ]
        );
        assert_eq!(der::null(), [0x05, 0x00]);
    }
}
