//! JSON text as Go's `encoding/json` writes it, for the legacy layer metadata
//! that must be byte for byte what containers/image writes (keys sorted, raw
//! values compacted with `<`, `>` and `&` escaped).

use std::collections::BTreeMap;

/// `text` as a JSON string.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "null".to_string())
}

/// A JSON object of already-encoded values, keys in order.
pub(crate) fn json_object(members: &BTreeMap<&str, String>) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Compacts valid JSON text as Go's `json.Marshal` does with a raw message:
/// white space outside strings removed, `<`, `>`, `&`, U+2028 and U+2029
/// escaped (they can only occur inside strings).
pub(crate) fn go_compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            match c {
                _ if escaped => {
                    escaped = false;
                    out.push(c);
                    continue;
                }
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c.is_ascii_whitespace() {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out
}
