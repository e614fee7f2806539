//! The one notation of a certificate serial number. ACM writes serials as lowercase hex bytes
//! joined by colons (`0a:1b:2c`), openssl as uppercase hex without them (`A1B2C`); both name the
//! same number, so a [`Serial`] reads either and compares numbers, not spellings.

use std::fmt;
use std::str::FromStr;

/// A certificate serial number. Displays in ACM's notation; parses ACM's, openssl's, or any mix
/// of hex case, colons and leading zeros, which all compare equal when they name one number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Serial {
    /// Lowercase hex digits without colons or leading zeros (`"0"` for zero).
    digits: String,
}

/// A string that is not a serial in any notation certship reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a serial number (hex digits, optionally in colon-separated pairs)")]
pub struct ParseSerialError(String);

impl Serial {
    /// The serial whose big-endian bytes are `bytes` (as [`crate::pem::certificate_serial`]
    /// reads them).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::from_digits(&hex::encode(bytes))
    }

    /// `hex` must hold hex digits only.
    fn from_digits(hex: &str) -> Self {
        let trimmed = hex.trim_start_matches('0');
        Self {
            digits: if trimmed.is_empty() {
                "0".to_string()
            } else {
                trimmed.to_ascii_lowercase()
            },
        }
    }
}

impl FromStr for Serial {
    type Err = ParseSerialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ParseSerialError(s.to_string()));
        }
        Ok(Self::from_digits(&digits))
    }
}

/// ACM's notation: lowercase hex bytes joined by colons, the first byte zero-padded (`0a:1b`).
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let padded = if self.digits.len() % 2 == 1 {
            format!("0{}", self.digits)
        } else {
            self.digits.clone()
        };
        let pairs: Vec<&str> = (0..padded.len())
            .step_by(2)
            .map(|i| &padded[i..i + 2])
            .collect();
        f.write_str(&pairs.join(":"))
    }
}

/// Whether two written serials name the same number, in whichever notation each is written.
/// Strings that are not serials are the same only when they are written identically.
pub fn same_serial(a: &str, b: &str) -> bool {
    match (a.parse::<Serial>(), b.parse::<Serial>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(s: &str) -> Serial {
        s.parse().unwrap()
    }

    #[test]
    fn displays_in_acm_notation_and_parses_back() {
        for (written, acm) in [
            ("0a:1b:2c", "0a:1b:2c"),
            ("A1B2C", "0a:1b:2c"),
            ("6A20E6", "6a:20:e6"),
            ("EC256", "0e:c2:56"),
            ("00:c0:ff:ee:01", "c0:ff:ee:01"),
            ("0", "00"),
            ("00:00", "00"),
            ("f", "0f"),
        ] {
            let parsed = serial(written);
            assert_eq!(parsed.to_string(), acm, "{written}");
            assert_eq!(serial(&parsed.to_string()), parsed, "{written} round trips");
        }
        assert_eq!(
            Serial::from_bytes(&[0x00, 0xc0, 0xff, 0xee, 0x01]).to_string(),
            "c0:ff:ee:01"
        );
        assert_eq!(Serial::from_bytes(&[0x0a, 0x1b]).to_string(), "0a:1b");
        assert_eq!(Serial::from_bytes(&[0]).to_string(), "00");
    }

    #[test]
    fn equality_ignores_case_colons_and_leading_zeros() {
        assert_eq!(serial("0a:1b:2c"), serial("0A1B2C"));
        assert_eq!(serial("0a:1b:2c"), serial("a1b2c"));
        assert_eq!(serial("00:c0:ff:ee"), serial("C0FFEE"));
        assert_ne!(serial("0a:1b:2c"), serial("0A1B2D"));
        assert_ne!(serial("0a:1b"), serial("0a:1b:00"));
    }

    #[test]
    fn what_is_not_hex_is_not_a_serial() {
        for bad in ["", ":", "not hex", "0x0a", "0a-1b", "0a:1g"] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?}");
        }
        assert!(
            "zz".parse::<Serial>()
                .unwrap_err()
                .to_string()
                .contains("\"zz\"")
        );
    }

    #[test]
    fn serial_notations_compare_equal() {
        assert!(same_serial("0a:1b:2c", "0A1B2C"));
        assert!(same_serial("00:c0:ff:ee", "C0FFEE"));
        assert!(!same_serial("0a:1b:2c", "0A1B2D"));
        assert!(same_serial("?", "?"));
        assert!(!same_serial("?", "0a"));
    }
}
