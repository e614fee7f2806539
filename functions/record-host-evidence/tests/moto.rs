//! record-host-evidence against moto server's S3 and DynamoDB: the conditional write keeps the
//! newest run whatever order the notifications arrive in, on the table the template declares.

use aws_lambda_events::event::s3::S3Event;
use certship_shared::evidence::{HostEvidence, attr};
use certship_testkit::{moto::Moto, seed};
use record_host_evidence::{AppState, Settings, Summary, handler};

const TABLE: &str = "certship-evidence";
const BUCKET: &str = "certship-association-output";
const PREFIX: &str = "dev/web-0123456789ab";
const I1: &str = "i-0abc123def4567890";
const I2: &str = "i-0abc123def4567891";
const ASSOCIATION: &str = "8c3e0c6e-1c29-4b49-9a8e-5f3c0d1e2f3a";
/// Two runs' ids, older first; the fixture's event says both were uploaded later.
const OLDER: &str = "2026-11-27T05-03-01.123Z";
const NEWER: &str = "2026-11-27T05-03-05.000Z";

struct Cloud {
    _moto: Moto,
    state: AppState,
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn cloud() -> Cloud {
    let moto = Moto::start().unwrap();
    let config = moto.sdk_config("us-east-1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    seed::evidence_table(&dynamodb, TABLE).await.unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let state = AppState::new(
        &config,
        Settings {
            evidence_table_name: TABLE.into(),
        },
    );
    Cloud {
        _moto: moto,
        state,
        s3,
        dynamodb,
    }
}

impl Cloud {
    /// Uploads one run's stdout, with `serial` in its report, and returns its key.
    async fn upload(&self, instance: &str, run_id: &str, serial: &str) -> String {
        let key =
            format!("{PREFIX}/{instance}/{ASSOCIATION}/{run_id}/awsrunShellScript/Install/stdout");
        let report = format!(
            r#"{{"cert_name":"web","secret_version_id":"v-{serial}","serial":"{serial}","status":"unchanged","changed":false,"reloaded":false,"rolled_back":false}}"#
        );
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(format!("checking\n{report}\n").into_bytes().into())
            .send()
            .await
            .unwrap();
        key
    }

    /// Delivers the notification of `key`, as S3 would.
    async fn notify(&self, key: &str) -> Summary {
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/s3-association-output.json"))
                .unwrap();
        event["Records"][0]["s3"]["bucket"]["name"] = BUCKET.into();
        event["Records"][0]["s3"]["object"]["key"] = key.into();
        let event: S3Event = serde_json::from_value(event).unwrap();
        handler(&self.state, event).await.unwrap()
    }

    async fn recorded(&self, instance: &str) -> HostEvidence {
        let item = self
            .dynamodb
            .get_item()
            .table_name(TABLE)
            .set_key(Some(HostEvidence::key("web-0123456789ab", instance)))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(item[attr::TAG_VALUE].as_s().unwrap(), "dev");
        HostEvidence::from_item(&item).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_newest_run_stays_recorded_whatever_order_its_notifications_arrive_in() {
    let cloud = cloud().await;

    // given two runs on one host whose older one's notification comes last
    let (old_1, new_1) = (
        cloud.upload(I1, OLDER, "0A0A").await,
        cloud.upload(I1, NEWER, "0B0B").await,
    );
    assert_eq!(cloud.notify(&new_1).await.recorded, 1);
    let late = cloud.notify(&old_1).await;

    // then the late, older run is left alone
    assert_eq!((late.recorded, late.stale), (0, 1));
    let i1 = cloud.recorded(I1).await;
    assert_eq!(
        (i1.run_id.as_deref(), i1.serial.as_deref()),
        (Some(NEWER), Some("0B0B"))
    );

    // and in order, the newer run replaces the older
    let (old_2, new_2) = (
        cloud.upload(I2, OLDER, "0A0A").await,
        cloud.upload(I2, NEWER, "0B0B").await,
    );
    assert_eq!(cloud.notify(&old_2).await.recorded, 1);
    assert_eq!(cloud.notify(&new_2).await.recorded, 1);
    assert_eq!(cloud.recorded(I2).await.run_id.as_deref(), Some(NEWER));

    // and the same notification delivered twice is recorded once
    let again = cloud.notify(&new_2).await;
    assert_eq!((again.recorded, again.stale), (0, 1));
}
