//! The cache on a small file system: an artifact too large for it answers 500 naming the
//! cause and leaves nothing behind, in the cache or the target; the index stays consistent;
//! smaller artifacts still work.
#![allow(clippy::unwrap_used)]

use singularity_s3_downloader::cache::INDEX_FILE_NAME;
use singularity_test_support::SmallFs;

use crate::support::binary::{Setup, check_index};
use crate::support::http::{BUCKET, md5_hex, request, tree};
use crate::support::random_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_too_large_for_the_cache_answers_500_and_leaves_nothing_behind() {
    let setup = Setup::with_s3("");
    let _fs = SmallFs::mount(&setup.cache(), 4 << 20);
    let large = random_bytes(6 << 20, 1);
    let small = random_bytes(1 << 20, 2);
    setup.s3().s5cmd_put(BUCKET, "full/large.jar", &large);
    setup.s3().s5cmd_put(BUCKET, "full/small.jar", &small);
    let mut child = setup.spawn();
    setup.wait_healthy(&mut child).await;
    let target = setup.mesos().join("task");
    std::fs::create_dir_all(&target).unwrap();

    for md5 in [Some(md5_hex(&large)), None] {
        let body = request("full/large.jar", "large.jar", md5.as_deref(), &target);
        let (status, message) = setup.post(&body).await;
        assert_eq!(status, 500, "{message}");
        assert!(message.contains("No space left on device"), "{message}");
        let cached: Vec<String> = tree(&setup.cache())
            .into_iter()
            .filter(|name| !name.starts_with(INDEX_FILE_NAME))
            .collect();
        assert!(cached.is_empty(), "left in the cache: {cached:?}");
        assert!(
            tree(&target).is_empty(),
            "left in the target: {:?}",
            tree(&target)
        );
    }

    let body = request(
        "full/small.jar",
        "small.jar",
        Some(&md5_hex(&small)),
        &target,
    );
    assert_eq!(setup.post(&body).await, (200, String::new()));
    assert!(std::fs::read(target.join("small.jar")).unwrap() == small);
    assert_eq!(
        setup
            .metric("s3_downloader_requests_total{code=\"500\"}")
            .await,
        Some(2.0)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(check_index(&setup.cache()).await, 1);
}
