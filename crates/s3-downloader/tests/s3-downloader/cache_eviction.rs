//! The cache bound: least recently used entries go first, leased entries stay.
#![allow(clippy::unwrap_used)]

use crate::support::fetch::{Env, MIB, settings};
use crate::support::random_bytes;

#[tokio::test]
async fn least_recently_used_entries_are_evicted_and_leased_ones_kept() {
    let env = Env::new().await;
    let mut artifacts = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let data = random_bytes(MIB, name.as_bytes()[0].into());
        artifacts.push(env.put(&format!("lru/{name}.bin"), &data).await);
    }
    let [a, b, c, d] = &artifacts[..] else {
        unreachable!()
    };
    let cache_name = |artifact: &singularity_common::records::S3Artifact| {
        format!(
            "{}-{}",
            artifact.md5sum.as_deref().unwrap(),
            artifact.filename
        )
    };
    // Room for two and a half entries.
    let fetcher = env.fetcher(settings(), (5 * MIB / 2) as u64).await;

    let lease_a = fetcher.fetch(a).await.unwrap();
    drop(fetcher.fetch(b).await.unwrap());
    drop(fetcher.fetch(c).await.unwrap());
    // b was used less recently than c, and a is leased.
    let mut expected = vec![cache_name(a), cache_name(c)];
    expected.sort();
    assert_eq!(env.cached_files(), expected);
    assert_eq!(fetcher.cache_stats().bytes, 2 * MIB as u64);
    assert!(std::fs::metadata(&lease_a.path).is_ok());
    drop(lease_a);

    // A hit counts as a use: c is now the least recently used.
    drop(fetcher.fetch(a).await.unwrap());
    drop(fetcher.fetch(d).await.unwrap());
    let mut expected = vec![cache_name(a), cache_name(d)];
    expected.sort();
    assert_eq!(env.cached_files(), expected);
    assert_eq!(
        fetcher.cache().entries_by_last_use(),
        [cache_name(a), cache_name(d)]
    );

    // Fetched again, b costs a new download.
    let served = env.s3.bytes_served();
    assert!(!fetcher.fetch(b).await.unwrap().cache_hit);
    assert_eq!(env.s3.bytes_served(), served + MIB as u64);
}

#[tokio::test]
async fn an_entry_larger_than_the_bound_is_served_then_evicted() {
    let env = Env::new().await;
    let small = env.put("big/small.bin", &random_bytes(MIB / 2, 1)).await;
    let big = env.put("big/big.bin", &random_bytes(3 * MIB, 2)).await;
    let fetcher = env.fetcher(settings(), 2 * MIB as u64).await;

    drop(fetcher.fetch(&small).await.unwrap());
    let cached = fetcher.fetch(&big).await.unwrap();
    let copy = cached.clone();
    // Everything else made way; the big entry stays while leased.
    assert_eq!(env.cached_files().len(), 1);
    assert!(cached.path.exists());
    drop(cached);
    assert!(copy.path.exists());
    let path = copy.path.clone();
    drop(copy);
    assert!(!path.exists());
    assert_eq!(fetcher.cache_stats().entries, 0);
    assert!(env.cached_files().is_empty());
}
