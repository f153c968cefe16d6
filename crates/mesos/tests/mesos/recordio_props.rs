//! Property tests of the RecordIO decoder: any records, cut into chunks anywhere, decode to
//! the same records; garbage never panics. Bounded case counts; `PROPTEST_CASES=N` runs more.

use proptest::prelude::*;
use singularity_mesos::recordio::{Decoder, encode};

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config.failure_persistence = None;
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_chunking_gives_back_the_records(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            decoded.extend(decoder.feed(&stream[pair[0]..pair[1]]).unwrap());
        }
        prop_assert_eq!(decoded, records);
        prop_assert!(decoder.is_idle());
    }

    #[test]
    fn garbage_is_an_error_or_records_never_a_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let mut decoder = Decoder::new();
        let mut failed = None;
        for chunk in &chunks {
            match decoder.feed(chunk) {
                Ok(_) => prop_assert!(failed.is_none(), "recovered after an error"),
                Err(e) => {
                    if let Some(first) = &failed {
                        prop_assert_eq!(first, &e.to_string());
                    }
                    failed = Some(e.to_string());
                }
            }
        }
    }
}
