//! The official OpenAI Python SDK as the client, in a virtualenv of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::child::run_bounded;
use super::gateway::{AllInOne, LOGS};
use crate::harness::{self, KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_streaming_json_and_errors() {
    let python = sdk_python().await;

    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let gateway = AllInOne::start(mock, 5, LOGS).await;

    let (status, output) = run_sdk_script(&python, "openai_sdk.py", &gateway.url("/v1"), &[]).await;
    println!("openai_sdk.py ({status}):\n{output}");
    assert!(
        status.success(),
        "openai_sdk.py failed ({status}):\n{output}\n--- gateway ---\n{}",
        gateway.proc.output()
    );
}

/// Runs `tests/sdk/<script>` with the venv's Python against the gateway at
/// `base_url` (the test key, model `mock`, plus `env`), with nothing from
/// the caller's environment that would change what the SDK sends (proxies,
/// organisation, logging). Returns the exit status and the output.
pub(crate) async fn run_sdk_script(
    python: &Path,
    script: &str,
    base_url: &str,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(python);
    command
        .arg(sdk_dir().join(script))
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_MODEL", "mock")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .envs(env.iter().copied());
    for name in [
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    run_bounded(command, Duration::from_secs(120))
        .await
        .unwrap_or_else(|output| panic!("{script} did not finish in time:\n{output}"))
}

pub(crate) fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// A virtualenv with `tests/sdk/requirements.txt` installed (created once,
/// under the target dir); returns its Python.
pub(crate) async fn sdk_python() -> PathBuf {
    // Tests of this binary that use the SDK run in parallel: one builds the
    // venv, the others wait for it (the staging name is per process).
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _building = BUILDING.lock().await;
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        // Built aside and renamed, so an interrupted run leaves no half venv.
        let staging = venv.with_file_name(format!("sdk-venv.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&staging);
        let (status, output) = run_bounded(create, Duration::from_secs(120))
            .await
            .unwrap_or_else(|output| panic!("python3 -m venv did not finish:\n{output}"));
        assert!(
            status.success(),
            "cannot create a virtualenv with `python3 -m venv` (this test needs Python 3 \
             with the venv module): {status}\n{output}"
        );
        if std::fs::rename(&staging, &venv).is_err() {
            // Someone else made it meanwhile.
            let _ = std::fs::remove_dir_all(&staging);
        }
        assert!(
            python.exists(),
            "no {} after creating the venv",
            python.display()
        );
    }
    let requirements = sdk_dir().join("requirements.txt");
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements);
    let (status, output) = run_bounded(install, Duration::from_secs(600))
        .await
        .unwrap_or_else(|output| {
            panic!(
                "pip install -r {} did not finish in 10 minutes (is PyPI reachable?):\n{output}",
                requirements.display()
            )
        });
    assert!(
        status.success(),
        "pip could not install {} into {} (is PyPI reachable?): {status}\n{output}",
        requirements.display(),
        venv.display()
    );
    python
}
