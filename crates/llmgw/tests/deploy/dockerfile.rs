//! The Dockerfile's final stage, read as `docker build` reads it: what the
//! image runs (user, working directory, environment, command, health check)
//! and declares (volumes, ports).

use std::path::Path;

use crate::files::read;

#[derive(Debug, Default)]
pub struct FinalStage {
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub user: Option<(u32, u32)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The HEALTHCHECK's `CMD [...]`.
    pub healthcheck: Vec<String>,
    pub volumes: Vec<String>,
    pub expose: Vec<u16>,
    /// Every RUN's shell text.
    pub runs: Vec<String>,
}

/// Instructions, one per logical line: continuations joined, comments and
/// the parser directive dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let whole = std::mem::take(&mut pending);
        let whole = whole.trim();
        if whole.is_empty() {
            continue;
        }
        let (keyword, rest) = whole.split_once(char::is_whitespace).unwrap_or((whole, ""));
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
    }
    out
}

/// `["a", "b"]` (exec form); shell form is refused: it would need a shell.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text)
        .unwrap_or_else(|error| panic!("{text:?} is not in exec form ([\"...\"]): {error}"))
}

/// `A=1 B="two words"` or the legacy `A 1`.
fn env_pairs(text: &str) -> Vec<(String, String)> {
    if !text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .contains('=')
    {
        let (key, value) = text.split_once(char::is_whitespace).expect("ENV KEY VALUE");
        return vec![(key.to_owned(), value.trim().to_owned())];
    }
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("ENV KEY=VALUE");
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        pairs.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim();
    }
    pairs
}

/// Each stage's instructions, its FROM first.
pub fn stages(path: &Path) -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions(&read(path)) {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(instruction);
        }
    }
    stages
}

pub fn final_stage(path: &Path) -> FinalStage {
    let instructions = instructions(&read(path));
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    let mut stage = FinalStage::default();
    for (keyword, rest) in &instructions[last_from + 1..] {
        match keyword.as_str() {
            "ENV" => stage.env.extend(env_pairs(rest)),
            "WORKDIR" => stage.workdir = rest.clone(),
            "USER" => {
                let (uid, gid) = rest.split_once(':').unwrap_or((rest, rest));
                let number = |id: &str| {
                    id.parse().unwrap_or_else(|_| {
                        panic!(
                            "USER {rest}: numeric ids, so Kubernetes' runAsNonRoot can check them"
                        )
                    })
                };
                stage.user = Some((number(uid), number(gid)));
            }
            "ENTRYPOINT" => stage.entrypoint = exec_form(rest),
            "CMD" => stage.cmd = exec_form(rest),
            "HEALTHCHECK" => {
                let (_, command) = rest.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
                stage.healthcheck = exec_form(command.trim());
            }
            "VOLUME" => stage.volumes.extend(exec_form(rest)),
            "EXPOSE" => stage.expose.extend(rest.split_whitespace().map(|port| {
                port.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .expect("EXPOSE port")
            })),
            "RUN" => stage.runs.push(rest.clone()),
            _ => {}
        }
    }
    stage
}

#[test]
fn env_forms() {
    assert_eq!(
        env_pairs(r#"A=1 B="two words"  C=x"#),
        vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "two words".to_owned()),
            ("C".to_owned(), "x".to_owned())
        ]
    );
    assert_eq!(env_pairs("A one"), vec![("A".to_owned(), "one".to_owned())]);
}
