//! Finding registry credentials the way podman does: auth files
//! (`containers/auth.json`, docker's `config.json`) and docker credential
//! helpers. Secrets are never put into error messages.

use crate::env::Environment;
use base64::Engine as _;
use kpod_plugin_sdk::reference::{Reference, DEFAULT_DOMAIN};
use kpod_plugin_sdk::{Credentials, PluginError};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One auth file (`auth.json` or docker's `config.json`).
#[derive(Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials for `reference`: from `explicit` (`--creds`) when given, else from
/// the first auth file (see [`Environment::auth_files`]) that has an entry or a
/// credential helper for the registry. `Ok(None)` means anonymous.
pub fn lookup(
    env: &Environment,
    explicit: Option<&Credentials>,
    auth_file: Option<&str>,
    reference: &Reference,
) -> Result<Option<Credentials>, PluginError> {
    if let Some(creds) = explicit {
        return Ok(Some(creds.clone()));
    }
    let explicit_file = auth_file.filter(|f| !f.is_empty());
    for (i, path) in env.auth_files(auth_file).iter().enumerate() {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if i == 0 && explicit_file.is_some() {
                    return Err(PluginError::not_found(format!(
                        "auth file {}: does not exist",
                        path.display()
                    )));
                }
                continue;
            }
            Err(e) => {
                return Err(PluginError::from_io(
                    format!("reading auth file {}", path.display()),
                    e,
                ))
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let file: AuthFile = serde_json::from_str(&text).map_err(|e| {
            PluginError::invalid_input(format!("auth file {}: not valid JSON: {e}", path.display()))
        })?;
        if let Some(creds) = from_file(&file, path, reference)? {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// The keys under which an auth file may hold credentials for `reference`, most
/// specific first: `host/ns/repo`, `host/ns`, `host`.
fn candidate_keys(reference: &Reference) -> Vec<String> {
    let mut keys = Vec::new();
    let mut name = reference.name();
    loop {
        keys.push(name.clone());
        match name.rfind('/') {
            Some(i) => name.truncate(i),
            None => break,
        }
    }
    keys
}

/// Normalises an auth-file key: drops `http(s)://` and a trailing `/v1/`,
/// `/v2/` or `/`, and spells Docker Hub `docker.io`.
fn normalize_key(key: &str) -> String {
    let mut k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    for suffix in ["/v1/", "/v2/", "/v1", "/v2", "/"] {
        if let Some(stripped) = k.strip_suffix(suffix) {
            k = stripped.to_string();
            break;
        }
    }
    match k.split_once('/') {
        Some((host, rest)) if is_docker_hub(host) => format!("{DEFAULT_DOMAIN}/{rest}"),
        None if is_docker_hub(&k) => DEFAULT_DOMAIN.to_string(),
        _ => k,
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

fn from_file(
    file: &AuthFile,
    path: &Path,
    reference: &Reference,
) -> Result<Option<Credentials>, PluginError> {
    let host = reference.domain();
    // A helper configured for this very registry wins.
    for (key, helper) in &file.cred_helpers {
        if normalize_key(key) == host {
            return helper_get(helper, host);
        }
    }
    let auths: HashMap<String, &AuthEntry> = file
        .auths
        .iter()
        .map(|(k, v)| (normalize_key(k), v))
        .collect();
    for key in candidate_keys(reference) {
        if let Some(entry) = auths.get(&key) {
            if let Some(creds) = decode_entry(entry, path, &key)? {
                return Ok(Some(creds));
            }
        }
    }
    if let Some(store) = file.creds_store.as_deref().filter(|s| !s.is_empty()) {
        return helper_get(store, host);
    }
    Ok(None)
}

fn decode_entry(
    entry: &AuthEntry,
    path: &Path,
    key: &str,
) -> Result<Option<Credentials>, PluginError> {
    let bad = |why: &str| {
        PluginError::invalid_input(format!(
            "auth file {}: entry {key:?}: {why}",
            path.display()
        ))
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not valid base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" is not base64 of USER:PASSWORD"))?;
        return Ok(Some(Credentials {
            username: user.into(),
            password: pass.trim_end_matches('\n').into(),
        }));
    }
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: user.as_str().into(),
            password: pass.as_str().into(),
        }));
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the registry on stdin.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credentials>, PluginError> {
    if helper.is_empty() || helper.contains('/') {
        return Err(PluginError::invalid_input(format!(
            "invalid credential helper name {helper:?}"
        )));
    }
    let program = format!("docker-credential-{helper}");
    let server = if host == DEFAULT_DOMAIN {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PluginError::from_io(format!("running credential helper {program}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported through its status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PluginError::from_io(format!("running credential helper {program}"), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let said = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if said.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(PluginError::unauthorized(format!(
            "credential helper {program} failed for {host}: {}",
            said.trim().lines().next().unwrap_or("no message")
        )));
    }
    let answer: HelperAnswer = serde_json::from_str(stdout.trim()).map_err(|_| {
        PluginError::other(format!(
            "credential helper {program}: answer for {host} is not the expected JSON"
        ))
    })?;
    if answer.username == "<token>" {
        // An identity token (OAuth2 refresh token) is not supported yet.
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username.into(),
        password: answer.secret.into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn order_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment {
            home: Some(dir.path().join("home")),
            xdg_runtime_dir: Some(dir.path().join("run")),
            xdg_config_home: Some(dir.path().join("home/.config")),
            ..Environment::default()
        };
        let r = Reference::parse("reg.example:5000/ns/app:1").unwrap();
        assert!(lookup(&env, None, None, &r).unwrap().is_none());
        write(
            &dir.path().join("home"),
            ".docker/config.json",
            &format!(
                r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{}"}}}}}}"#,
                b64("docker:d")
            ),
        );
        assert_eq!(
            lookup(&env, None, None, &r)
                .unwrap()
                .unwrap()
                .username
                .as_str(),
            "docker"
        );
        write(
            &dir.path().join("run"),
            "containers/auth.json",
            &format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}},"reg.example:5000/ns/app":{{"auth":"{}"}}}}}}"#,
                b64("host:h"),
                b64("repo:r")
            ),
        );
        let c = lookup(&env, None, None, &r).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("repo", "r"));
        let other = Reference::parse("reg.example:5000/other").unwrap();
        assert_eq!(
            lookup(&env, None, None, &other)
                .unwrap()
                .unwrap()
                .username
                .as_str(),
            "host"
        );
        let explicit = write(
            dir.path(),
            "mine.json",
            &format!(
                r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}}}}}}"#,
                b64("mine:m")
            ),
        );
        assert_eq!(
            lookup(&env, None, Some(&explicit), &r)
                .unwrap()
                .unwrap()
                .username
                .as_str(),
            "mine"
        );
        let given = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(
            lookup(&env, Some(&given), Some(&explicit), &r)
                .unwrap()
                .unwrap(),
            given
        );
        let missing = dir.path().join("nope.json");
        let e = lookup(&env, None, Some(missing.to_str().unwrap()), &r).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
    }

    #[test]
    fn bad_files_are_one_line_errors_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "a.json",
            r#"{"auths":{"h":{"auth":"c2VjcmV0"}}}"#,
        );
        let r = Reference::parse("h.x/a").unwrap();
        assert!(lookup(&Environment::empty(), None, Some(&f), &r)
            .unwrap()
            .is_none());
        let r = Reference::parse("h/a").unwrap();
        let _ = r; // "h/a" is docker.io/h/a: no entry
        let f = write(
            dir.path(),
            "b.json",
            r#"{"auths":{"h.x":{"auth":"c2VjcmV0"}}}"#,
        );
        let r = Reference::parse("h.x/a").unwrap();
        let e = lookup(&Environment::empty(), None, Some(&f), &r).unwrap_err();
        assert!(!e.message.contains("secret"), "{e}");
        let f = write(dir.path(), "c.json", "{not json");
        assert!(lookup(&Environment::empty(), None, Some(&f), &r).is_err());
    }

    #[test]
    fn docker_hub_keys() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("http://h:5000"), "h:5000");
    }
}
