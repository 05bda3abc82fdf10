//! The container image: how the Dockerfile builds it, and its default
//! command line run as the container would run it (same user id when the
//! test can, same working directory on a fresh data volume, same
//! environment and nothing else).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::dockerfile::{final_stage, stages};
use crate::files::{read, repo};
use crate::process::{
    LLMGW, Launch, ScratchDir, client, free_ports, running_as_root, wait_http_ok,
};

#[test]
fn the_dockerfile_caches_dependencies_and_runs_unprivileged() {
    let path = repo().join("Dockerfile");
    let stages = stages(&path);
    assert!(stages.len() >= 2, "a multi-stage build");
    // The stage that copies the whole tree must have built the dependency
    // graph before it (from manifests and stubs), or every source edit
    // rebuilds every dependency.
    let build = stages
        .iter()
        .find(|stage| {
            stage
                .iter()
                .any(|(keyword, rest)| keyword == "COPY" && rest == ". .")
                && stage
                    .iter()
                    .any(|(keyword, rest)| keyword == "RUN" && rest.contains("cargo build"))
        })
        .expect("a stage that builds the sources");
    let first_build = build
        .iter()
        .position(|(keyword, rest)| keyword == "RUN" && rest.contains("cargo build"))
        .expect("cargo build");
    let copy_all = build
        .iter()
        .position(|(keyword, rest)| keyword == "COPY" && rest == ". .")
        .expect("COPY . .");
    assert!(
        first_build < copy_all,
        "dependencies are built before the sources are copied"
    );
    for stage in &stages {
        for (keyword, rest) in stage {
            if keyword == "RUN" && rest.contains("cargo build") {
                assert!(rest.contains("--locked"), "cargo build --locked: {rest}");
            }
        }
    }

    let image = final_stage(&path);
    let (uid, gid) = image.user.expect("USER");
    assert!(uid != 0 && gid != 0, "the image runs as a non-root user");
    assert!(
        image.volumes.contains(&image.workdir),
        "the working directory ({}) is the data volume ({:?}): ./data is on it",
        image.workdir,
        image.volumes
    );
    // Every port a service of the image listens on by default, or in the
    // compose and Kubernetes configurations.
    let defaults = [
        llmgw_edge::Config::default().listen.port(),
        llmgw_router::Config::default().listen.port(),
        llmgw_quota::Config::default().listen.port(),
        llmgw_billing::Config::default().listen.port(),
        llmgw_billing::Config::default().admin_listen.port(),
    ];
    for port in defaults {
        assert!(image.expose.contains(&port), "EXPOSE {port}");
    }
    assert_eq!(
        image.healthcheck.get(..2),
        Some(&["llmgw".to_owned(), "probe".to_owned()][..])
    );
    assert!(
        image.entrypoint.is_empty(),
        "the command is the whole command line"
    );
    assert!(
        !image.runs.iter().any(|run| run.contains("curl")),
        "no HTTP client in the image: the health check is `llmgw probe`"
    );

    let ignored = read(&repo().join(".dockerignore"));
    for needed in ["target/", ".git", "deploy/"] {
        assert!(
            ignored.lines().any(|line| line.trim() == needed),
            ".dockerignore leaves out {needed}"
        );
    }
}

/// The binary the child runs: the build's own, or (when the child's user
/// cannot reach it, e.g. under a private home directory) a copy in `dir`.
fn binary_for(user: Option<(u32, u32)>, dir: &Path) -> PathBuf {
    let Some((uid, gid)) = user else {
        return PathBuf::from(LLMGW);
    };
    let reachable = std::process::Command::new(LLMGW)
        .arg("--version")
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if reachable {
        return PathBuf::from(LLMGW);
    }
    let copy = dir.join("llmgw");
    std::fs::copy(LLMGW, &copy).expect("copy the binary");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

use std::os::unix::process::CommandExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_command_starts_serves_and_passes_its_health_check() {
    let image = final_stage(&repo().join("Dockerfile"));
    // As the container runs it: its user when this test may switch to it.
    let user = running_as_root().then_some(image.user.expect("USER"));
    if user.is_none() {
        eprintln!("not root: the command runs as this test's user, not the image's USER");
    }
    // The data volume: a fresh directory owned by the image's user.
    let volume = ScratchDir::new("volume");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(volume.path(), Some(uid), Some(gid)).expect("chown the volume");
    }
    let bin_dir = ScratchDir::new("bin");
    let binary = binary_for(user, bin_dir.path());

    // The image's environment and nothing else, but for the ports: the
    // edge keeps its address (0.0.0.0) on a free port, and the services a
    // container would keep to itself listen on free loopback ports, so the
    // test runs beside others on one machine.
    let [edge_port] = free_ports();
    let mut env = vec![("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned())];
    for (key, value) in &image.env {
        let value = if key == "LLMGW_EDGE__LISTEN" {
            let listen: SocketAddr = value.parse().expect("an address");
            assert!(
                listen.ip().is_unspecified(),
                "the edge listens on every interface: {value}"
            );
            SocketAddr::new(listen.ip(), edge_port).to_string()
        } else {
            value.clone()
        };
        env.push((key.clone(), value));
    }
    for key in [
        "LLMGW_ROUTER__LISTEN",
        "LLMGW_QUOTA__LISTEN",
        "LLMGW_BILLING__LISTEN",
        "LLMGW_BILLING__ADMIN_LISTEN",
    ] {
        env.push((key.to_owned(), "127.0.0.1:0".to_owned()));
    }
    let launch = |name, args: Vec<String>| Launch {
        name,
        program: &binary,
        args,
        env: env.clone(),
        clear_env: true,
        cwd: Some(volume.path().to_owned()),
        user,
    };
    // With the image's own environment (port 8080 included), demo mode
    // keeps the edge where the image puts it instead of moving it to
    // loopback (the test's port differs from the default, so the run below
    // could not tell).
    let as_built = llmgw::GatewayConfig::load_from(None, &image.env, llmgw::config::Scope::All)
        .expect("the image's environment is a valid configuration");
    assert!(as_built.edge_listen_explicit && as_built.edge.listen.ip().is_unspecified());
    assert_eq!(image.cmd.first().map(String::as_str), Some("llmgw"));
    let mut gateway = launch("the image's CMD", image.cmd[1..].to_vec()).spawn();
    wait_http_ok(
        &format!("http://127.0.0.1:{edge_port}/readyz"),
        &mut [&mut gateway],
    )
    .await;

    // Reached through an address other than 127.0.0.1 (still this machine):
    // only a listener on 0.0.0.0 answers there, as one behind `docker run
    // -p` must.
    let answer: Value = client()
        .post(format!("http://127.0.0.2:{edge_port}/v1/chat/completions"))
        .bearer_auth(llmgw::demo::DEV_KEY)
        .json(&json!({"model": llmgw::demo::DEMO_MODEL, "messages": [{"role": "user", "content": "Hello!"}]}))
        .send()
        .await
        .expect("the edge answers on a non-loopback address")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("JSON");
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!content.is_empty(), "an answer: {answer}");
    // ./data resolved to the volume, which the image's user could write.
    assert!(
        volume.path().join("data/llmgw.db").exists(),
        "{}",
        gateway.output()
    );
    // Its spools, each in a directory of its own, on the volume too.
    for spool in [
        "data/spool",
        "data/audit-spool/edge",
        "data/audit-spool/router",
    ] {
        assert!(
            volume.path().join(spool).join("lock").is_file(),
            "{spool}\n{}",
            gateway.output()
        );
    }

    health_check(&image.healthcheck, edge_port, &launch).await;

    let status = gateway.terminate(Duration::from_secs(40)).await;
    assert!(
        status.success(),
        "docker stop: a clean exit\n{}",
        gateway.output()
    );
}

/// Runs the HEALTHCHECK's command line in the running container's
/// environment (the edge's published port in place of 8080).
async fn health_check<'a>(
    command: &[String],
    edge_port: u16,
    launch: &impl Fn(&'a str, Vec<String>) -> Launch<'a>,
) {
    let args = command[1..]
        .iter()
        .map(|arg| arg.replace(":8080/", &format!(":{edge_port}/")))
        .collect();
    let (status, output) = launch("HEALTHCHECK", args).run().await;
    assert!(status.success(), "the health check passes\n{output}");
}
