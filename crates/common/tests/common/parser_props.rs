//! Property tests of the parsers and formatters other daemons' files go through: task ids,
//! S3 key patterns and `.properties` files. Bounded case counts; `PROPTEST_CASES=N` runs more.

use std::path::PathBuf;

use proptest::prelude::*;
use singularity_common::config::{self, ConfigClass, ConfigSources};
use singularity_common::keyfmt::{UploadKeyContext, format_upload_key_in, key_prefix_for_listing};
use singularity_common::task_id::TaskId;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config.failure_persistence = None;
    config
}

/// One segment of a key pattern: literal text or a token.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./-]{0,8}",
        Just("%filename".to_owned()),
        Just("%fileext".to_owned()),
        Just("%index".to_owned()),
        Just("%s".to_owned()),
        Just("%guid".to_owned()),
        Just("%host".to_owned()),
        Just("%Y/%m/%d/%H".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn task_ids_print_back_as_parsed(
        request in "[a-z][a-z0-9_]{0,12}(-[a-z0-9_]{1,6}){0,3}",
        deploy in "[a-z0-9_]{1,10}",
        started in 0u64..5_000_000_000_000,
        instance in 0u32..10_000,
        host in "[a-z0-9_]{1,12}",
        rack in "[a-z0-9_]{1,8}",
    ) {
        let text = format!("{request}-{deploy}-{started}-{instance}-{host}-{rack}");
        let id: TaskId = text.parse().unwrap();
        prop_assert_eq!(id.to_string(), text);
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,80}") {
        if let Ok(id) = text.parse::<TaskId>() {
            prop_assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn keys_expand_every_file_token_and_keep_the_listing_prefix(
        segments in prop::collection::vec(segment(), 0..8),
        filename in "[a-zA-Z0-9_.-]{1,20}",
        dir in "(/[a-z]{1,5}){0,3}",
        mtime in 0i64..4_102_444_800_000,
        index in 0usize..100_000,
    ) {
        let pattern: String = segments.concat();
        let context = UploadKeyContext {
            filename: &format!("{dir}/{filename}"),
            mtime_millis: mtime,
            hostname: Some("host-1"),
            index,
            guid: Some("00000000-0000-0000-0000-000000000000".to_owned()),
        };
        let key = format_upload_key_in(&pattern, &context, &chrono::Utc);
        for token in ["%filename", "%index", "%guid", "%host", "%Y", "%m", "%d", "%H"] {
            prop_assert!(!key.contains(token), "{token} left in {key} from {pattern}");
        }
        if !dir.is_empty() {
            prop_assert!(!key.contains(&format!("{dir}/{filename}")), "{key}");
        }
        let prefix = key_prefix_for_listing(&pattern);
        if !prefix.contains('%') {
            prop_assert!(key.starts_with(prefix), "{key} does not start with {prefix}");
        }
    }

    #[test]
    fn properties_files_of_any_bytes_load_or_are_refused_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.properties");
        std::fs::write(&path, &bytes).unwrap();
        let sources = ConfigSources {
            config_dir: dir.path().join("none"),
            files: vec![PathBuf::from(&path)],
        };
        let _ = config::load(&sources, &ConfigClass::ALL);
    }
}
