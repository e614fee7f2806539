//! ACM certificate ARNs and AWS partitions: which partition a region is in, and the parts of a
//! certificate's ARN, checked one by one.

use crate::CertshipError;

/// The parts of an ACM certificate ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub id: String,
}

impl CertificateArn {
    /// Parses `arn:<partition>:acm:<region>:<account>:certificate/<id>`.
    pub fn parse(arn: &str) -> Result<Self, CertshipError> {
        let invalid = |why: &str| {
            CertshipError::InvalidRequest(format!(
                "CertificateArn {arn:?} is not an ACM certificate ARN \
                 (arn:aws:acm:REGION:ACCOUNT:certificate/ID): {why}"
            ))
        };
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(invalid("it needs six ':'-separated parts"));
        };
        if prefix != "arn" {
            return Err(invalid("it must start with arn:"));
        }
        if !matches!(
            partition,
            "aws"
                | "aws-cn"
                | "aws-us-gov"
                | "aws-iso"
                | "aws-iso-b"
                | "aws-iso-e"
                | "aws-iso-f"
                | "aws-eusc"
        ) {
            return Err(invalid("unknown partition"));
        }
        if service != "acm" {
            return Err(invalid("the service must be acm"));
        }
        if !is_region(region) {
            return Err(invalid("the region is not a region name"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the account must be 12 digits"));
        }
        let Some(id) = resource.strip_prefix("certificate/") else {
            return Err(invalid("the resource must be certificate/ID"));
        };
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "the certificate id must be 1-128 letters, digits or '-'",
            ));
        }
        if partition_of_region(region) != partition {
            return Err(invalid("the region is not in that partition"));
        }
        Ok(Self {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            id: id.to_string(),
        })
    }
}

fn is_region(region: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, us-isob-east-1
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The partition a region belongs to.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else if region.starts_with("eusc-") {
        "aws-eusc"
    } else {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_arn_parses_into_its_parts() {
        let arn = CertificateArn::parse(
            "arn:aws:acm:eu-west-1:123456789012:certificate/1f2e3d4c-0000-4000-8000-00000000abcd",
        )
        .unwrap();
        assert_eq!(
            (
                arn.partition.as_str(),
                arn.region.as_str(),
                arn.account.as_str()
            ),
            ("aws", "eu-west-1", "123456789012")
        );
        assert_eq!(arn.id, "1f2e3d4c-0000-4000-8000-00000000abcd");
    }

    #[test]
    fn regions_belong_to_their_partitions() {
        for (region, partition) in [
            ("eu-west-3", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-east-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(partition_of_region(region), partition, "{region}");
        }
    }
}
