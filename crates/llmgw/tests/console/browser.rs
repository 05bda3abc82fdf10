//! A real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) with `fantoccini`. Each [`Browser`] is its own session with
//! its own profile (cookies) and download directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(30);

/// chromium and chromedriver, if both are installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    };
    Some((
        find(&["chromium", "chromium-browser", "google-chrome"])?,
        find(&["chromedriver"])?,
    ))
}

/// A running chromedriver; killed when dropped.
pub struct Driver {
    url: String,
    chromium: PathBuf,
    _process: Child,
}

impl Driver {
    pub async fn start(chromium: PathBuf, chromedriver: &Path) -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("port").port()
        };
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = async {
            loop {
                let status = http.get(format!("{url}/status")).send().await;
                if let Ok(status) = status
                    && let Ok(body) = status.json::<Value>().await
                    && body["value"]["ready"] == true
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(DEADLINE, ready)
            .await
            .expect("chromedriver ready in 30 s");
        Driver {
            url,
            chromium,
            _process: process,
        }
    }

    /// A new browser session with its own profile and download directory.
    pub async fn browser(&self, downloads: &Path) -> Browser {
        std::fs::create_dir_all(downloads).expect("download directory");
        let profile = downloads.join("profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": self.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--window-size=1400,1200",
                    "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("browser session");
        Browser {
            client,
            downloads: downloads.to_path_buf(),
        }
    }
}

pub struct Browser {
    pub client: Client,
    pub downloads: PathBuf,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    /// The element, once the page shows it (within 30 s).
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css} within 30 s: {error}"))
    }

    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("text")
    }

    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {css}: {error}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("type");
    }

    /// Runs `script` (a function body: `arguments[0]`... are `args`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// Runs an async `script`; it calls `arguments[arguments.length - 1]`
    /// with its result.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}\n{script}"))
    }

    /// `fetch` from the page, with its cookie: `{status, text}`.
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        headers: Value,
        body: Option<&str>,
    ) -> (u16, String) {
        let answer = self
            .js_async(
                "const [method, path, headers, body, done] = arguments;
                 fetch(path, {method, headers, body: body ?? undefined, credentials: 'same-origin'})
                   .then(async (r) => done({status: r.status, text: await r.text()}))
                   .catch((e) => done({status: 0, text: String(e)}));",
                vec![json!(method), json!(path), headers, json!(body)],
            )
            .await;
        (
            u16::try_from(answer["status"].as_u64().unwrap_or(0)).unwrap_or(0),
            answer["text"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Waits until `condition` (a JS expression) is true.
    pub async fn until(&self, condition: &str) {
        let script = format!("return Boolean({condition});");
        let wait = async {
            while self.js(&script, vec![]).await != Value::Bool(true) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("not true within 30 s: {condition}"));
    }

    /// Saves a screenshot of the window as `dir/name`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(dir).expect("screenshot directory");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// The first file downloaded into this session's directory whose name
    /// starts with `prefix`, once complete.
    pub async fn downloaded(&self, prefix: &str) -> String {
        let wait = async {
            loop {
                let found = std::fs::read_dir(&self.downloads)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path())
                    .find(|path| {
                        let name = path
                            .file_name()
                            .and_then(|name| name.to_str())
                            .unwrap_or("");
                        name.starts_with(prefix) && !name.ends_with(".crdownload")
                    });
                if let Some(path) = found {
                    return std::fs::read_to_string(path).expect("download readable");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no download {prefix}* within 30 s"))
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
