//! The local ACME CA against a real moto server: the DNS responder answers what Route53 holds
//! right now (written with ChangeResourceRecordSets), Pebble serves its directory over HTTPS
//! signed by the CA it names, hands out its issuing root, and restarts as a new CA.
//!
//! DNS is asked with a hand-built query over UDP and TCP, independent of the responder's dnslib.

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use bytes::Bytes;
use certship_moto::{AcmeCa, AcmeCaOptions};
use certship_testkit::moto::{Moto, project_root, venv_python};
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZONE: &str = "certship.test.";
const CHALLENGE: &str = "_acme-challenge.certship.test.";
const TYPE_A: u16 = 1;
const TYPE_TXT: u16 = 16;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
const REFUSED: u8 = 5;

/// A DNS answer: the header bits the test cares about and the answer records (type, data).
#[derive(Debug)]
struct Answer {
    rcode: u8,
    authoritative: bool,
    recursion_available: bool,
    records: Vec<(u16, Vec<u8>)>,
}

impl Answer {
    /// The character-strings of every TXT answer, one list per record, sorted.
    fn txt(&self) -> Vec<Vec<String>> {
        let mut records: Vec<Vec<String>> = self
            .records
            .iter()
            .filter(|(rtype, _)| *rtype == TYPE_TXT)
            .map(|(_, data)| {
                let mut strings = Vec::new();
                let mut rest = &data[..];
                while let Some((&length, tail)) = rest.split_first() {
                    let (string, tail) = tail.split_at(usize::from(length));
                    strings.push(String::from_utf8(string.to_vec()).unwrap());
                    rest = tail;
                }
                strings
            })
            .collect();
        records.sort();
        records
    }
}

/// Asks `server` for `name`/`qtype` (class IN, RD set) over UDP or TCP.
fn query(server: SocketAddr, name: &str, qtype: u16, tcp: bool) -> Answer {
    let id = (std::process::id() as u16) ^ qtype ^ u16::from(tcp);
    let mut message = Vec::new();
    message.extend(id.to_be_bytes());
    message.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        message.push(u8::try_from(label.len()).unwrap());
        message.extend(label.as_bytes());
    }
    message.push(0);
    message.extend(qtype.to_be_bytes());
    message.extend(1u16.to_be_bytes());

    let timeout = Some(Duration::from_secs(10));
    let response = if tcp {
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(timeout).unwrap();
        stream
            .write_all(&u16::try_from(message.len()).unwrap().to_be_bytes())
            .unwrap();
        stream.write_all(&message).unwrap();
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).unwrap();
        let mut response = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut response).unwrap();
        response
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(timeout).unwrap();
        socket.send_to(&message, server).unwrap();
        let mut buffer = [0u8; 4096];
        let (length, _) = socket.recv_from(&mut buffer).unwrap();
        buffer[..length].to_vec()
    };
    parse(&response, id)
}

fn parse(response: &[u8], id: u16) -> Answer {
    let u16_at = |at: usize| u16::from_be_bytes([response[at], response[at + 1]]);
    assert_eq!(u16_at(0), id, "the answer carries the query's id");
    let flags = u16_at(2);
    assert!(flags & 0x8000 != 0, "QR: the message is an answer");
    assert_eq!(flags & 0x0200, 0, "TC: the answer is not truncated");
    let (questions, answers) = (u16_at(4), u16_at(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(response, at) + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        at = skip_name(response, at);
        let rtype = u16_at(at);
        let length = usize::from(u16_at(at + 8));
        at += 10;
        records.push((rtype, response[at..at + length].to_vec()));
        at += length;
    }
    Answer {
        rcode: (flags & 0x000f) as u8,
        authoritative: flags & 0x0400 != 0,
        recursion_available: flags & 0x0080 != 0,
        records,
    }
}

/// The offset after the name at `at` (labels, ending in a zero or a compression pointer).
fn skip_name(message: &[u8], mut at: usize) -> usize {
    loop {
        match message[at] {
            0 => return at + 1,
            length if length & 0xc0 == 0xc0 => return at + 2,
            length => at += 1 + usize::from(length),
        }
    }
}

/// A TXT record set of quoted values, as Route53 takes them.
fn txt_change(action: ChangeAction, values: &[&str]) -> Change {
    let mut record_set = ResourceRecordSet::builder()
        .name(CHALLENGE)
        .r#type(RrType::Txt)
        .ttl(60);
    for value in values {
        record_set =
            record_set.resource_records(ResourceRecord::builder().value(*value).build().unwrap());
    }
    Change::builder()
        .action(action)
        .resource_record_set(record_set.build().unwrap())
        .build()
        .unwrap()
}

async fn change(route53: &aws_sdk_route53::Client, zone_id: &str, change: Change) {
    route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .unwrap();
}

/// GETs `url` over HTTPS trusting only the CA in `ca_pem` (read from the file the CA names).
async fn get(url: &str, ca_pem: &std::path::Path) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Asserts the directory at `url` answers over HTTPS with ACME's resources on the same origin.
async fn assert_directory(ca: &AcmeCa) {
    let url = ca.directory_url();
    let (status, body) = get(&url, ca.tls_ca_pem_path()).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    let directory: serde_json::Value = serde_json::from_str(&body).unwrap();
    let origin = url.trim_end_matches("/dir");
    for resource in ["newAccount", "newNonce", "newOrder"] {
        let resource_url = directory[resource].as_str().unwrap_or_default();
        assert!(
            resource_url.starts_with(origin),
            "{resource} is {resource_url:?}, not under {origin}: {body}"
        );
    }
}

/// The certificates of a PEM text, asserting there is at least one.
fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!certificates.is_empty(), "no certificate in {pem:?}");
    certificates
}

#[tokio::test]
async fn pebble_serves_over_tls_and_its_dns_answers_what_route53_holds() {
    let moto = Moto::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let options = AcmeCaOptions::new(
        venv_python().unwrap(),
        project_root(),
        moto.endpoint.clone(),
        state.path(),
    );
    let started = Instant::now();
    let mut ca = AcmeCa::start(&options).unwrap();
    eprintln!("r53dns + pebble started in {:?}", started.elapsed());
    let dns = ca.dns_server();

    // Pebble asks this responder and nothing else.
    let log = std::fs::read_to_string(state.path().join("pebble.log")).unwrap();
    assert!(
        log.contains(&format!(
            "Using custom DNS resolver for ACME challenges: {dns}"
        )),
        "pebble.log does not name {dns}:\n{log}"
    );

    let route53 = aws_sdk_route53::Client::new(&moto.sdk_config("us-east-1").await);
    // Outside every hosted zone (none exists yet): REFUSED.
    assert_eq!(query(dns, CHALLENGE, TYPE_TXT, false).rcode, REFUSED);
    let zone_id = route53
        .create_hosted_zone()
        .name(ZONE)
        .caller_reference("pebble-test")
        .send()
        .await
        .unwrap()
        .hosted_zone
        .unwrap()
        .id;
    change(
        &route53,
        &zone_id,
        txt_change(
            ChangeAction::Upsert,
            &[r#""first-token""#, r#""second \"quoted\"" "two strings""#],
        ),
    )
    .await;

    let expected = vec![
        vec!["first-token".to_string()],
        vec![r#"second "quoted""#.to_string(), "two strings".to_string()],
    ];
    for tcp in [false, true] {
        let answer = query(dns, CHALLENGE, TYPE_TXT, tcp);
        assert_eq!(answer.rcode, NOERROR, "tcp={tcp}: {answer:?}");
        assert!(
            answer.authoritative && answer.recursion_available,
            "tcp={tcp}: {answer:?}"
        );
        assert_eq!(answer.txt(), expected, "tcp={tcp}");
    }
    // Names compare without regard to case.
    let answer = query(dns, "_ACME-Challenge.Certship.Test.", TYPE_TXT, false);
    assert_eq!(answer.txt(), expected);
    // The name exists, without an A record: NOERROR with no answer, AA and RA set.
    let answer = query(dns, CHALLENGE, TYPE_A, false);
    assert_eq!(answer.rcode, NOERROR, "{answer:?}");
    assert!(answer.records.is_empty(), "{answer:?}");
    assert!(
        answer.authoritative && answer.recursion_available,
        "{answer:?}"
    );
    // A name in the zone without records, and one outside it.
    let answer = query(
        dns,
        "_acme-challenge.missing.certship.test.",
        TYPE_TXT,
        true,
    );
    assert_eq!(answer.rcode, NXDOMAIN, "{answer:?}");
    let answer = query(dns, "_acme-challenge.example.org.", TYPE_TXT, false);
    assert_eq!(answer.rcode, REFUSED, "{answer:?}");

    // Nothing is cached: a replaced value answers at once, a deleted record is gone.
    change(
        &route53,
        &zone_id,
        txt_change(ChangeAction::Upsert, &[r#""replaced""#]),
    )
    .await;
    assert_eq!(
        query(dns, CHALLENGE, TYPE_TXT, false).txt(),
        vec![vec!["replaced".to_string()]]
    );
    change(
        &route53,
        &zone_id,
        txt_change(ChangeAction::Delete, &[r#""replaced""#]),
    )
    .await;
    assert_eq!(query(dns, CHALLENGE, TYPE_TXT, false).rcode, NXDOMAIN);

    // Pebble: the directory over HTTPS trusting the named CA, and the issuing root.
    assert_directory(&ca).await;
    let tls_ca = std::fs::read_to_string(ca.tls_ca_pem_path()).unwrap();
    let root = ca.issuing_roots_pem().await.unwrap();
    assert_eq!(certificates(&root).len(), 1, "{root}");
    assert_ne!(
        certificates(&root),
        certificates(&tls_ca),
        "the issuing root is Pebble's own, not the HTTPS CA"
    );

    // A restart keeps the directory URL and makes a new CA.
    let url = ca.directory_url();
    let restarted = Instant::now();
    ca.restart().unwrap();
    eprintln!("pebble restarted in {:?}", restarted.elapsed());
    assert_eq!(ca.directory_url(), url);
    assert_directory(&ca).await;
    let new_root = ca.issuing_roots_pem().await.unwrap();
    assert_ne!(
        certificates(&new_root),
        certificates(&root),
        "a new issuing root"
    );
    assert_eq!(
        query(dns, "nothing.certship.test.", TYPE_TXT, false).rcode,
        NXDOMAIN
    );

    // Stopped: neither Pebble nor the responder listens any more.
    ca.stop();
    let port = url
        .trim_end_matches("/dir")
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "pebble still listens"
    );
    assert!(TcpStream::connect(dns).is_err(), "r53dns still listens");
}
