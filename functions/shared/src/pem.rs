//! Just enough PEM and DER to read a certificate's serial number, so that the serial the workflow
//! expects is the serial of the very certificate that was exported. The notation is
//! [`crate::serial`]'s.

use crate::serial::Serial;
use base64::Engine;

/// The DER bytes of the first `CERTIFICATE` block of `pem`.
pub fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Reads one DER tag-length header at `pos`, returning (tag, content start, content end).
fn header(der: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(pos)?;
    let first = *der.get(pos + 1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, pos + 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..count {
            len = (len << 8) | *der.get(pos + 2 + i)? as usize;
        }
        (len, pos + 2 + count)
    };
    let end = start.checked_add(len)?;
    (end <= der.len()).then_some((tag, start, end))
}

/// The serial number of an X.509 certificate (DER), as the integer's bytes without sign padding.
pub fn certificate_serial(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, cert_start, _) = header(der, 0)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs_start, _) = header(der, cert_start)?;
    if tag != 0x30 {
        return None;
    }
    let mut pos = tbs_start;
    let (mut tag, mut start, mut end) = header(der, pos)?;
    if tag == 0xa0 {
        // [0] EXPLICIT version
        pos = end;
        (tag, start, end) = header(der, pos)?;
    }
    if tag != 0x02 || start == end {
        return None;
    }
    let mut serial = &der[start..end];
    while serial.len() > 1 && serial[0] == 0 {
        serial = &serial[1..];
    }
    Some(serial.to_vec())
}

/// The serial of the first certificate in `pem`, in ACM's notation.
pub fn pem_serial(pem: &str) -> Option<String> {
    first_certificate_der(pem)
        .and_then(|der| certificate_serial(&der))
        .map(|s| Serial::from_bytes(&s).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256
    /// -set_serial 0x00c0ffee01 -subj /CN=t -days 1`.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBXzCCAQSgAwIBAgIFAMD/7gEwCgYIKoZIzj0EAwIwDDEKMAgGA1UEAwwBdDAe
Fw0yNjExMjMwMDI0MDZaFw0yNjExMjQwMDI0MDZaMAwxCjAIBgNVBAMMAXQwWTAT
BgcqhkjOPQIBBggqhkjOPQMBBwNCAASl9HtgT9brXuKp4oGVG0PM6NorNaBPfArH
pcStUla20NHGID5Dq97qCN3JJNX/2F/5GbO3dpbSor+IeVOigQX6o1MwUTAdBgNV
HQ4EFgQU+EdG+1BZXNkrteht1wNHK/yoVLswHwYDVR0jBBgwFoAU+EdG+1BZXNkr
teht1wNHK/yoVLswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA
+iTQHdjRQvoaxdHSIxSX7Vj4hos8Hm9tI6aSu5U1/rACIQDIGMyGpeJa0mqeUCn0
qy9KiQsmCZzQGw/dVIZDN1ZmKA==
-----END CERTIFICATE-----
";

    #[test]
    fn reads_the_serial_after_the_version() {
        assert_eq!(pem_serial(PEM).as_deref(), Some("c0:ff:ee:01"));
    }

    #[test]
    fn rejects_what_is_not_a_certificate() {
        assert_eq!(pem_serial("no pem here"), None);
        assert_eq!(certificate_serial(&[0x30, 0x03, 0x02, 0x01]), None);
        assert_eq!(certificate_serial(&[]), None);
    }
}
