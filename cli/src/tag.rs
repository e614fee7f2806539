//! `KEY=VALUE`, as `--target` and `--tag` take a tag: one grammar and AWS's tag rules, for the
//! operator's targets and the local cloud's hosts alike (a simulated host's tags are EC2 tags).

use certship_shared::rules::{validate_tag_key, validate_tag_value};

/// Splits `KEY=VALUE` at the first `=`; the key must not be empty. Only the grammar: `deploy`
/// uses it alone, because the request's own check applies the tag rules there and names the flag.
pub fn split(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE (for example env=prod)")),
    }
}

/// A tag as `KEY=VALUE`, checked with AWS's tag rules (key 1-128 characters and not `aws:`,
/// value 0-256, both of letters, digits, spaces and `_ . : / = + - @`).
pub fn parse(text: &str) -> Result<(String, String), String> {
    let (key, value) = split(text)?;
    validate_tag_key(&key).map_err(|e| e.to_string())?;
    validate_tag_value(&value).map_err(|e| e.to_string())?;
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_splits_at_the_first_equals_sign() {
        assert_eq!(parse("env=dev"), Ok(("env".into(), "dev".into())));
        assert_eq!(parse("env="), Ok(("env".into(), String::new())));
        assert_eq!(parse("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert!(split("env").unwrap_err().contains("not KEY=VALUE"));
        assert!(split("=dev").unwrap_err().contains("not KEY=VALUE"));
    }

    #[test]
    fn aws_tag_rules_apply() {
        assert!(parse("aws:x=1").unwrap_err().contains("aws:"));
        assert!(parse(&format!("{}=1", "k".repeat(129))).is_err());
        assert!(parse(&format!("k={}", "v".repeat(257))).is_err());
        assert!(parse("env=a;b").is_err());
        assert!(parse(&format!("{}={}", "k".repeat(128), "v".repeat(256))).is_ok());
        // the grammar alone lets the rules be applied later, by the request's check
        assert_eq!(split("aws:x=1"), Ok(("aws:x".into(), "1".into())));
    }
}
