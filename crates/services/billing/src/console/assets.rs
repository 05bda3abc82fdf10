//! The console's files, embedded at compile time from
//! `crates/services/billing/console/` (plain HTML, CSS and ES modules, and
//! the vendored chart library: no front-end build step).

use axum::response::{IntoResponse as _, Response};
use http::{HeaderValue, header};

pub(super) struct Asset {
    /// Under `/ui/assets/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_str!(concat!("../../console/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The page itself, at `/ui/`.
pub(super) const INDEX: &Asset = &asset!("index.html", HTML);

pub(super) const ASSETS: &[Asset] = &[
    asset!("console.css", CSS),
    asset!("js/api.js", JS),
    asset!("js/app.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/money.js", JS),
    asset!("js/overview.js", JS),
    asset!("js/request.js", JS),
    asset!("js/tenants.js", JS),
    asset!("js/usage.js", JS),
    asset!("vendor/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", CSS),
];

pub(super) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

pub(super) fn response(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }

    /// Every front-end file is embedded (documentation and licences stay in
    /// the tree), so a new file cannot be forgotten.
    #[test]
    fn every_console_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut found = Vec::new();
        files(&root, &root, &mut found);
        found.retain(|path| !path.ends_with(".md") && !path.ends_with(".LICENSE"));
        found.sort();
        let mut embedded: Vec<String> = ASSETS
            .iter()
            .map(|asset| asset.path.to_owned())
            .chain([INDEX.path.to_owned()])
            .collect();
        embedded.sort();
        assert_eq!(found, embedded);
    }

    /// What the Content-Security-Policy would block anyway, kept out of
    /// our own files: inline scripts, inline styles, inline handlers.
    #[test]
    fn no_inline_script_or_style() {
        for asset in ASSETS.iter().chain([INDEX]) {
            if asset.path.starts_with("vendor/") {
                continue;
            }
            let text = asset.body;
            for forbidden in [
                " style=",
                "<style",
                " onclick=",
                " onload=",
                "javascript:",
                "innerHTML",
                "eval(",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} contains {forbidden:?}",
                    asset.path
                );
            }
        }
        for tag in INDEX.body.split("<script").skip(1) {
            let open = tag.split('>').next().unwrap();
            assert!(
                open.contains(" src=\"/ui/assets/"),
                "inline or foreign script: <script{open}>"
            );
        }
    }
}
