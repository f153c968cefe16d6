//! S3 key formatting, both stages, table-driven.

use chrono::{FixedOffset, Utc};
use pretty_assertions::assert_eq;

use singularity_common::keyfmt::{
    TaskKeyTokens, UploadKeyContext, format_task_key_pattern, format_upload_key,
    format_upload_key_in, key_prefix_for_listing,
};
use singularity_common::task_id::TaskId;

const TASK: &str = "myreq-dep1-1668780000000-1-host_a-rack1";
/// 2022-11-18T14:20:34.567Z
const MTIME: i64 = 1_668_781_234_567;
const ROTATED: &str = "service.log-202211181668781234.log.gz";
const GUID: &str = "123e4567-e89b-42d3-a456-426614174000";

fn tokens(group: Option<&str>, tag: Option<&str>) -> TaskKeyTokens {
    TaskKeyTokens::new(&TASK.parse::<TaskId>().expect("valid task id"), group, tag)
}

fn ctx<'a>(filename: &'a str, hostname: Option<&'a str>, index: usize) -> UploadKeyContext<'a> {
    UploadKeyContext {
        filename,
        mtime_millis: MTIME,
        hostname,
        index,
        guid: Some(GUID.to_owned()),
    }
}

fn offset(hours: i32, minutes: i32) -> FixedOffset {
    let secs = hours * 3600 + hours.signum() * minutes * 60;
    FixedOffset::east_opt(secs).expect("offset within a day")
}

#[test]
fn spec_example_through_both_stages() {
    let stage1 = format_task_key_pattern(
        "%requestId/%Y/%m/%taskId_%index-%s-%filename",
        &tokens(None, None),
    );
    // This is the s3KeyFormat of the spec's metadata example.
    assert_eq!(
        stage1,
        "myreq/%Y/%m/myreq-dep1-1668780000000-1-host_a-rack1_%index-%s-%filename"
    );
    assert_eq!(
        format_upload_key_in(&stage1, &ctx(ROTATED, Some("agent1"), 0), &Utc),
        "myreq/2022/11/myreq-dep1-1668780000000-1-host_a-rack1_0-1668781234567-service.log-202211181668781234.log.gz"
    );
}

#[test]
fn stage1_tokens() {
    let table: [(&str, Option<&str>, Option<&str>, &str); 12] = [
        ("%requestId", None, None, "myreq"),
        ("%deployId", None, None, "dep1"),
        ("%host", None, None, "host_a"),
        ("%taskId", None, None, TASK),
        ("%group", None, None, "default"),
        ("%group", Some("platform"), None, "platform"),
        ("%tag", None, None, ""),
        ("%tag", None, Some("mytag"), "mytag"),
        ("a/%tag/b", None, None, "a//b"),
        ("%requestId-%requestId", None, None, "myreq-myreq"),
        (
            "%group/%tag/%requestId/%deployId/%host/%taskId",
            Some("g"),
            Some("t"),
            "g/t/myreq/dep1/host_a/myreq-dep1-1668780000000-1-host_a-rack1",
        ),
        // Upload-time tokens pass through untouched.
        (
            "%Y/%m/%d/%H/%s/%index/%filename/%fileext/%guid",
            None,
            None,
            "%Y/%m/%d/%H/%s/%index/%filename/%fileext/%guid",
        ),
    ];
    for (pattern, group, tag, want) in table {
        assert_eq!(
            format_task_key_pattern(pattern, &tokens(group, tag)),
            want,
            "{pattern}"
        );
    }
}

#[test]
fn stage1_host_is_the_sanitized_host() {
    let id: TaskId = "r-d-1-1-ip_10_0_0_1-us_east_1".parse().unwrap();
    let t = TaskKeyTokens::new(&id, None, None);
    assert_eq!(format_task_key_pattern("%host", &t), "ip_10_0_0_1");
}

#[test]
fn stage1_order_lets_earlier_values_feed_later_tokens() {
    // A group value that spells a later token gets that token replaced too.
    assert_eq!(
        format_task_key_pattern("%group", &tokens(Some("%deployId"), None)),
        "dep1"
    );
    // An earlier token's text is not looked at again.
    assert_eq!(
        format_task_key_pattern("%tag", &tokens(None, Some("%requestId"))),
        "%requestId"
    );
}

#[test]
fn stage2_each_token_alone() {
    let table: [(&str, &str, Option<&str>, usize, &str); 16] = [
        ("%filename", ROTATED, None, 0, ROTATED),
        ("%fileext", ROTATED, None, 0, ".gz"),
        ("%fileext", "service.log", None, 0, ".log"),
        ("%fileext", "README", None, 0, "%fileext"),
        ("%fileext", ".bashrc", None, 0, ".bashrc"),
        ("%fileext", "trailing.", None, 0, "."),
        ("%guid", ROTATED, None, 0, GUID),
        ("%host", ROTATED, None, 0, "%host"),
        (
            "%host",
            ROTATED,
            Some("agent1.example.com"),
            0,
            "agent1.example.com",
        ),
        ("%Y", ROTATED, None, 0, "2022"),
        ("%m", ROTATED, None, 0, "11"),
        ("%d", ROTATED, None, 0, "18"),
        ("%H", ROTATED, None, 0, "14"),
        ("%s", ROTATED, None, 0, "1668781234567"),
        ("%index", ROTATED, None, 0, "0"),
        ("%index", ROTATED, None, 17, "17"),
    ];
    for (pattern, filename, host, index, want) in table {
        assert_eq!(
            format_upload_key_in(pattern, &ctx(filename, host, index), &Utc),
            want,
            "{pattern} {filename}"
        );
    }
}

#[test]
fn stage2_repeated_tokens_are_all_replaced() {
    assert_eq!(
        format_upload_key_in(
            "%Y%Y/%s-%s/%index%index/%filename|%filename/%guid/%guid/%host%host",
            &ctx("a.log", Some("h"), 3),
            &Utc
        ),
        format!("20222022/{MTIME}-{MTIME}/33/a.log|a.log/{GUID}/{GUID}/hh")
    );
}

#[test]
fn stage2_one_guid_per_key_random_when_not_given() {
    let mut c = ctx("a.log", None, 0);
    c.guid = None;
    let key = format_upload_key_in("%guid/%guid", &c, &Utc);
    let (a, b) = key.split_once('/').unwrap();
    assert_eq!(a, b);
    let parsed = uuid::Uuid::parse_str(a).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(a, a.to_lowercase());
    let other = format_upload_key_in("%guid", &c, &Utc);
    assert_ne!(other, a);
}

#[test]
fn stage2_date_tokens_follow_the_time_zone() {
    // (mtime, tz, %Y/%m/%d/%H)
    let table = [
        (MTIME, offset(0, 0), "2022/11/18/14"),
        (MTIME, offset(10, 0), "2022/11/19/00"),
        (MTIME, offset(-14, 30), "2022/11/17/23"),
        (MTIME, offset(5, 30), "2022/11/18/19"),
        // 2022-11-30T23:30Z: next month one hour east.
        (1_669_851_000_000, offset(1, 0), "2022/12/01/00"),
        // 2022-12-31T23:30Z: next year one hour east.
        (1_672_529_400_000, offset(1, 0), "2023/01/01/00"),
        (1_672_529_400_000, offset(0, 0), "2022/12/31/23"),
        (0, offset(0, 0), "1970/01/01/00"),
        (0, offset(-1, 0), "1969/12/31/23"),
    ];
    for (mtime, tz, want) in table {
        let mut c = ctx("a.log", None, 0);
        c.mtime_millis = mtime;
        assert_eq!(
            format_upload_key_in("%Y/%m/%d/%H", &c, &tz),
            want,
            "{mtime} {tz}"
        );
        // %s is the instant, whatever the zone.
        assert_eq!(format_upload_key_in("%s", &c, &tz), mtime.to_string());
    }
}

#[test]
fn stage2_local_zone_is_the_default() {
    let c = ctx(ROTATED, Some("h"), 2);
    let pattern = "%Y/%m/%d/%H/%s/%index/%filename/%host";
    assert_eq!(
        format_upload_key(pattern, &c),
        format_upload_key_in(pattern, &c, &chrono::Local)
    );
}

#[test]
fn stage2_takes_the_basename() {
    assert_eq!(
        format_upload_key_in(
            "%filename %fileext",
            &ctx("/a/b.c/service.log", None, 0),
            &Utc
        ),
        "service.log .log"
    );
    assert_eq!(
        format_upload_key_in("%fileext", &ctx("/a/b.c/README", None, 0), &Utc),
        "%fileext"
    );
}

#[test]
fn stage2_order_interactions() {
    let table: [(&str, &str, Option<&str>, &str); 7] = [
        // The file name is inserted first, so tokens inside it are replaced later.
        ("%filename", "a%sb.log", None, "a1668781234567b.log"),
        ("%filename", "x%index.log", None, "x4.log"),
        ("%filename", "%Y.log", None, "2022.log"),
        // ...but not the ones already done.
        ("%filename", "%filename.log", None, "%filename.log"),
        ("%fileext", "a.%s", None, ".1668781234567"),
        // A hostname is inserted before the date tokens.
        ("%host", "a.log", Some("h%d"), "h18"),
        // A stage-1 token left in the pattern is eaten by %d.
        ("%deployId", "a.log", None, "18eployId"),
    ];
    for (pattern, filename, host, want) in table {
        assert_eq!(
            format_upload_key_in(pattern, &ctx(filename, host, 4), &Utc),
            want,
            "{pattern} {filename}"
        );
    }
    // A name without a dot keeps %fileext, which no later token touches.
    assert_eq!(
        format_upload_key_in("%filename%fileext", &ctx("noext", None, 0), &Utc),
        "noext%fileext"
    );
}

#[test]
fn listing_prefix() {
    let table = [
        (
            "%requestId/%Y/%m/%taskId_%index-%s-%filename",
            "%requestId/%Y/%m/%taskId_",
        ),
        (
            "myreq/%Y/%m/myreq-dep1-1668780000000-1-host_a-rack1_%index-%s-%filename",
            "myreq/%Y/%m/myreq-dep1-1668780000000-1-host_a-rack1_",
        ),
        ("a/%s/%index", "a/"),
        ("a/%filename", "a/"),
        ("a/b%fileext", "a/b"),
        ("a/%Y/%m/%d/%H/%guid", "a/%Y/%m/%d/%H/%guid"),
        ("", ""),
        ("%index", ""),
    ];
    for (pattern, want) in table {
        assert_eq!(key_prefix_for_listing(pattern), want, "{pattern}");
    }
}
