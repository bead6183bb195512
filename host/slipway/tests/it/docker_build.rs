//! The Dockerfile builder against this machine's Docker Engine: `FROM
//! scratch` builds from tar and zip contexts, a failing step, a time limit,
//! and contexts refused before they reach the engine.

use std::io::{Cursor, Read, Write};
use std::process::Command;
use std::time::Duration;

use slipway_domain::image::context::{BuildContext, ContextError};
use slipway_domain::image::docker::{BuildError, BuildOptions, DockerBuilder};

const DOCKERFILE: &str = "FROM scratch\n\
    ARG GREETING\n\
    COPY hello.txt /hello.txt\n\
    COPY app/ /app/\n\
    LABEL greeting=$GREETING\n\
    CMD [\"/app/run\"]\n";

fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap()
}

fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, content) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        zip.start_file(*path, options).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn docker(args: &[&str]) -> Vec<u8> {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A file of `image`, read through a created (never started) container.
fn file_in(image: &str, path: &str) -> String {
    let container = String::from_utf8(docker(&["create", image]))
        .unwrap()
        .trim()
        .to_string();
    let archive = docker(&["cp", &format!("{container}:{path}"), "-"]);
    docker(&["rm", &container]);
    let mut tar = tar::Archive::new(archive.as_slice());
    let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text
}

/// Removes the test's images however the test ends.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

#[tokio::test]
async fn dockerfile_contexts_build_on_the_docker_engine() {
    let builder = DockerBuilder::connect().unwrap();
    let run = std::process::id();
    let from_tar = format!("slipway-build-test/tar:{run}");
    let from_zip = format!("slipway-build-test/zip:{run}");
    let _images = Images(vec![from_tar.clone(), from_zip.clone()]);

    // A tar of a directory, with a build argument and a label.
    let archive = tar_of(&[
        ("Dockerfile", DOCKERFILE),
        ("hello.txt", "hello from a tar\n"),
        ("app/run", "#!/bin/false\n"),
    ]);
    let mut options = BuildOptions::new(&from_tar);
    options.build_args.insert("GREETING".into(), "hi".into());
    options
        .labels
        .insert("org.opencontainers.image.source".into(), "slipway".into());
    let context = BuildContext::from_archive(&archive).unwrap();
    let built = builder.build(context, &options).await.unwrap();
    assert!(built.id.starts_with("sha256:"), "{built:?}");
    assert!(
        built.log.iter().any(|l| l.contains("COPY hello.txt")),
        "{:?}",
        built.log
    );
    let inspected: serde_json::Value =
        serde_json::from_slice(&docker(&["image", "inspect", &from_tar])).unwrap();
    let image = &inspected[0];
    assert_eq!(image["Id"], built.id.as_str());
    assert_eq!(image["Config"]["Labels"]["greeting"], "hi");
    assert_eq!(
        image["Config"]["Labels"]["org.opencontainers.image.source"],
        "slipway"
    );
    assert_eq!(file_in(&from_tar, "/hello.txt"), "hello from a tar\n");

    // A zip with the Dockerfile in a subdirectory.
    let archive = zip_of(&[
        ("build/Dockerfile", DOCKERFILE),
        ("hello.txt", "hello from a zip\n"),
        ("app/run", "#!/bin/false\n"),
    ]);
    let mut options = BuildOptions::new(&from_zip);
    options.dockerfile = "build/Dockerfile".into();
    let context = BuildContext::from_archive(&archive).unwrap();
    builder.build(context, &options).await.unwrap();
    assert_eq!(file_in(&from_zip, "/hello.txt"), "hello from a zip\n");
    assert_eq!(file_in(&from_zip, "/app/run"), "#!/bin/false\n");
}

#[tokio::test]
async fn failing_and_refused_builds_say_why() {
    let builder = DockerBuilder::connect().unwrap();
    let tag = format!("slipway-build-test/failing:{}", std::process::id());
    let _images = Images(vec![tag.clone()]);
    let options = BuildOptions::new(&tag);

    // A step that fails: the engine's message comes back with the log so far.
    let archive = tar_of(&[("Dockerfile", "FROM scratch\nCOPY missing.txt /\n")]);
    let context = BuildContext::from_archive(&archive).unwrap();
    match builder.build(context, &options).await {
        Err(BuildError::Failed { message, log }) => {
            assert!(message.contains("missing.txt"), "{message}");
            assert!(log.iter().any(|l| l.contains("FROM scratch")), "{log:?}");
        }
        other => panic!("expected a failed build: {other:?}"),
    }

    // A Dockerfile that is not in the context is named before any build.
    let archive = tar_of(&[("hello.txt", "hi\n")]);
    let context = BuildContext::from_archive(&archive).unwrap();
    match builder.build(context, &options).await {
        Err(BuildError::Context(ContextError::NoDockerfile(path))) => {
            assert_eq!(path, "Dockerfile")
        }
        other => panic!("expected a missing Dockerfile: {other:?}"),
    }

    // Past its time limit, the build is stopped.
    let archive = tar_of(&[("Dockerfile", DOCKERFILE), ("hello.txt", "hi\n")]);
    let context = BuildContext::from_archive(&archive).unwrap();
    let mut hurried = options.clone();
    hurried.time_limit = Duration::from_millis(1);
    match builder.build(context, &hurried).await {
        Err(BuildError::TimedOut(limit)) => assert_eq!(limit, Duration::from_millis(1)),
        other => panic!("expected a time-out: {other:?}"),
    }
}
