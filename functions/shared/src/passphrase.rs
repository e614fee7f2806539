//! The export passphrase: 32 characters from [A-Za-z0-9] drawn from the operating system's
//! randomness, which ACM accepts (4-128 ASCII bytes, no `# $ %`).

use crate::CertshipError;
use rand::TryRng;
use rand::rngs::SysRng;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Characters in a passphrase: 32 of 62 symbols is over 190 bits.
pub const LENGTH: usize = 32;

/// A passphrase that never prints itself: `Debug` is redacted and there is no `Display`.
pub struct Passphrase(String);

impl Passphrase {
    /// Draws a new passphrase. Bytes of 248 or more are rejected so every symbol is equally likely.
    pub fn generate() -> Result<Self, CertshipError> {
        let mut out = String::with_capacity(LENGTH);
        let mut buf = [0u8; 64];
        while out.len() < LENGTH {
            SysRng
                .try_fill_bytes(&mut buf)
                .map_err(|e| CertshipError::Service(format!("the OS random source failed: {e}")))?;
            for b in buf {
                if out.len() == LENGTH {
                    break;
                }
                if b < 248 {
                    out.push(ALPHABET[(b % 62) as usize] as char);
                }
            }
        }
        Ok(Self(out))
    }

    /// The passphrase itself, for ACM and the secret bundle only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn passphrases_are_long_alphanumeric_and_fresh() {
        let seen: HashSet<String> = (0..200)
            .map(|_| Passphrase::generate().unwrap().expose().to_string())
            .collect();
        assert_eq!(seen.len(), 200);
        for p in &seen {
            assert_eq!(p.len(), LENGTH);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()), "{p}");
        }
        // Every symbol shows up across 6400 draws (each missing with p < 1e-40).
        let symbols: HashSet<char> = seen.iter().flat_map(|p| p.chars()).collect();
        assert_eq!(symbols.len(), 62);
    }

    #[test]
    fn debug_never_shows_the_passphrase() {
        let p = Passphrase::generate().unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains(p.expose()));
        assert_eq!(shown, "Passphrase([redacted])");
    }
}
