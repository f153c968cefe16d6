//! Request validation and routing: malformed bodies and missing fields (400 naming the field),
//! wrong path (404), wrong method (405), health, and bodies without a Content-Type.

use serde_json::json;

use crate::support::http::{self, Daemon, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_json_is_a_400() {
    let daemon = Daemon::start().await;
    for body in ["", "{", "not json", "[1,2]", r#"{"targetDirectory": 5}"#] {
        let response = daemon
            .http
            .post(format!("{}/download", daemon.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, text) = http::answer(response).await;
        assert_eq!(status, 400, "{body:?}: {text}");
        assert!(text.starts_with("invalid request body: "), "{text}");
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_missing_field_is_named() {
    let daemon = Daemon::start().await;
    let target = daemon.target("task");
    let full = request("k", "f.jar", None, &target);
    let cases = [
        ("targetDirectory", None),
        ("s3Artifact", None),
        ("s3Artifact", Some("filename")),
        ("s3Artifact", Some("s3Bucket")),
        ("s3Artifact", Some("s3ObjectKey")),
    ];
    for (field, inner) in cases {
        let mut body = full.clone();
        let name = match inner {
            None => {
                body.as_object_mut().unwrap().remove(field);
                field.to_owned()
            }
            Some(inner) => {
                body[field].as_object_mut().unwrap().remove(inner);
                format!("{field}.{inner}")
            }
        };
        let (status, text) = daemon.post(&body).await;
        assert_eq!(status, 400, "{name}: {text}");
        assert_eq!(
            text,
            format!("invalid request body: missing field `{name}`")
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusable_fields_are_named() {
    let daemon = Daemon::start().await;
    let target = daemon.target("task");
    let cases = [
        ("s3Artifact.filesize", json!({"filesize": "big"})),
        ("s3Artifact.md5sum", json!({"md5sum": "not-an-md5"})),
        (
            "s3Artifact.filename",
            json!({"filename": "../../etc/passwd"}),
        ),
        ("s3Artifact.s3Bucket", json!({"s3Bucket": ""})),
        ("timeoutMillis", json!({"timeoutMillis": -1})),
    ];
    for (field, change) in cases {
        let mut body = request("k", "f.jar", None, &target);
        for (key, value) in change.as_object().unwrap() {
            if key == "timeoutMillis" {
                body[key] = value.clone();
            } else {
                body["s3Artifact"][key] = value.clone();
            }
        }
        let (status, text) = daemon.post(&body).await;
        assert_eq!(status, 400, "{field}: {text}");
        assert!(text.contains(field), "{field}: {text}");
    }
    assert_eq!(daemon.s3.get_requests(), 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_paths_and_methods() {
    let daemon = Daemon::start().await;
    let (status, text) = daemon.get("/nowhere").await;
    assert_eq!((status, text.as_str()), (404, "no endpoint at /nowhere"));
    let response = daemon
        .http
        .post(format!("{}/download/extra", daemon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let (status, text) = daemon.get("/download").await;
    assert_eq!(
        (status, text.as_str()),
        (405, "method GET is not allowed on /download")
    );
    let response = daemon
        .http
        .put(format!("{}/download", daemon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);

    assert_eq!(daemon.get("/healthz").await, (200, "ok".to_owned()));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_without_content_type_is_accepted() {
    let daemon = Daemon::start().await;
    let md5 = daemon.put("plain/a.txt", b"no content type");
    let target = daemon.target("task");
    let body = request("plain/a.txt", "a.txt", Some(&md5), &target);
    let response = daemon
        .http
        .post(format!("{}/download", daemon.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let (status, text) = http::answer(response).await;
    assert_eq!((status, text.as_str()), (200, ""));
    assert_eq!(
        std::fs::read(target.join("a.txt")).unwrap(),
        b"no content type"
    );

    // The Java executor's exact shape, unknown fields included, is accepted.
    let target = daemon.target("task-java");
    let java = json!({
        "targetDirectory": target,
        "s3Artifact": {
            "name": "a", "filename": "a.txt", "md5sum": md5.to_uppercase(),
            "filesize": 15, "s3Bucket": http::BUCKET, "s3ObjectKey": "plain/a.txt",
            "isArtifactList": false, "somethingNew": 1
        },
        "timeoutMillis": 180000
    });
    let (status, text) = daemon.post(&java).await;
    assert_eq!((status, text.as_str()), (200, ""));
    daemon.stop().await;
}
