//! Turning registry answers and transport failures into one-line
//! [`PluginError`]s.

use kpod_plugin_sdk::error::one_line;
use kpod_plugin_sdk::{ErrorKind, PluginError};
use serde::Deserialize;

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A registry's error answer: the HTTP status and the `{"errors":[...]}` codes.
#[derive(Debug, Clone)]
pub struct RegistryError {
    /// The HTTP status.
    pub status: u16,
    /// The registry's error codes (`MANIFEST_INVALID`, `UNAUTHORIZED`, ...).
    pub codes: Vec<String>,
    /// `CODE: message; CODE: message`, or the HTTP reason when the body had none.
    pub detail: String,
}

impl RegistryError {
    /// Reads the body of a failed response.
    pub async fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let body = &body[..body.len().min(64 * 1024)];
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let items = parsed.map(|b| b.errors).unwrap_or_default();
        let codes: Vec<String> = items.iter().map(|e| e.code.clone()).collect();
        let detail = if items.is_empty() {
            let text = String::from_utf8_lossy(body);
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            if first.is_empty() || first.starts_with('<') || first.starts_with('{') {
                status.canonical_reason().unwrap_or("no reason").to_string()
            } else {
                first.chars().take(200).collect()
            }
        } else {
            items
                .iter()
                .map(|e| {
                    if e.message.is_empty() {
                        e.code.clone()
                    } else {
                        format!("{}: {}", e.code, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        RegistryError {
            status: status.as_u16(),
            codes,
            detail,
        }
    }

    /// Whether any code is `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }

    /// The error kind the status and codes call for.
    pub fn kind(&self) -> ErrorKind {
        match self.status {
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            429 | 500..=599 => ErrorKind::Network,
            _ if self.has_code("DIGEST_INVALID") || self.has_code("SIZE_INVALID") => {
                ErrorKind::Integrity
            }
            _ => ErrorKind::Other,
        }
    }

    /// The error as a [`PluginError`] of [`RegistryError::kind`], saying `what`
    /// was being done.
    pub fn into_error(self, what: &str) -> PluginError {
        let kind = self.kind();
        self.into_error_of(kind, what)
    }

    /// The error as a [`PluginError`] of `kind`.
    pub fn into_error_of(self, kind: ErrorKind, what: &str) -> PluginError {
        let label = match self.status {
            401 => "unauthorized".to_string(),
            403 => "denied".to_string(),
            s => format!("HTTP {s}"),
        };
        PluginError::new(kind, format!("{what}: {label}: {}", self.detail))
    }
}

/// A one-line description of a transport error with all its causes
/// (`error sending request ...: invalid peer certificate: UnknownIssuer`),
/// without request URLs and with a hint for TLS trouble.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = strip_urls(&one_line(err));
    let lower = line.to_lowercase();
    if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        line.push_str(" (the server may speak plain HTTP: use --tls-verify=false for it)");
    } else if lower.contains("certificate") && !lower.contains("--cert-dir") {
        line.push_str(" (certificate not trusted: add its CA with --cert-dir or /etc/containers/certs.d/<host:port>/, or use --tls-verify=false)");
    }
    line
}

/// Drops reqwest's ` for url (...)` parts: the caller names what it was doing,
/// and upload URLs carry long opaque state.
fn strip_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" for url (") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " for url (".len()..];
        match after.find(')') {
            Some(j) => rest = &after[j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A network-kind error for a failed request.
pub fn network(what: &str, err: &reqwest::Error) -> PluginError {
    PluginError::network(format!("{what}: {}", describe(err)))
}
