//! JSON read with containers/image's "paranoid" strictness: duplicate keys,
//! unknown keys, missing keys and values of the wrong type are errors, where
//! `serde_json::Value` would silently keep the last duplicate.
//!
//! Used for the simple-signing payload and for policy.json, whose security
//! depends on no typo or smuggled second key being ignored.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A JSON value that keeps every key of an object, duplicates included, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// Parses a whole document (trailing data is an error).
pub(crate) fn parse(bytes: &[u8]) -> Result<Node, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

impl Node {
    /// What kind of value this is, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }

    /// The string, or an error naming `what`.
    pub(crate) fn as_str(&self, what: &str) -> Result<&str, String> {
        match self {
            Node::String(s) => Ok(s),
            other => Err(format!("{what}: a string expected, got {}", other.kind())),
        }
    }

    /// The elements of an array, or an error naming `what`.
    pub(crate) fn as_array(&self, what: &str) -> Result<&[Node], String> {
        match self {
            Node::Array(items) => Ok(items),
            other => Err(format!("{what}: an array expected, got {}", other.kind())),
        }
    }

    /// The entries of an object with duplicate keys refused, or an error.
    pub(crate) fn entries(&self) -> Result<Vec<(&str, &Node)>, String> {
        let Node::Object(pairs) = self else {
            return Err(format!("JSON object expected, got {}", self.kind()));
        };
        let mut out: Vec<(&str, &Node)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("Duplicate key {key:?}"));
            }
            out.push((key, value));
        }
        Ok(out)
    }

    /// An object with exactly the keys `fields`, each once, returned in that order.
    pub(crate) fn exact_fields<const N: usize>(
        &self,
        fields: [&str; N],
    ) -> Result<[&Node; N], String> {
        let entries = self.entries()?;
        if let Some((key, _)) = entries.iter().find(|(k, _)| !fields.contains(k)) {
            return Err(format!("Unknown key {key:?}"));
        }
        let mut out = [&Node::Null; N];
        for (slot, field) in out.iter_mut().zip(fields) {
            *slot = entries
                .iter()
                .find(|(k, _)| *k == field)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("Key {field:?} missing in a JSON object"))?;
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut pairs = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            pairs.push((key, value));
        }
        Ok(Node::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_unknown_and_missing_keys_are_errors() {
        let node = parse(br#"{"a":1,"b":"x","a":2}"#).unwrap();
        assert_eq!(node.entries().unwrap_err(), r#"Duplicate key "a""#);
        let node = parse(br#"{"a":1,"c":2}"#).unwrap();
        assert_eq!(node.exact_fields(["a"]).unwrap_err(), r#"Unknown key "c""#);
        assert_eq!(
            node.exact_fields(["a", "b", "c"]).unwrap_err(),
            r#"Key "b" missing in a JSON object"#
        );
        let [a, c] = node.exact_fields(["a", "c"]).unwrap();
        assert_eq!(a, &Node::Number(1.into()));
        assert_eq!(
            c.as_str("c").unwrap_err(),
            "c: a string expected, got a number"
        );
        assert!(parse(b"{} x").is_err());
        assert_eq!(
            parse(b"[1]").unwrap().entries().unwrap_err(),
            "JSON object expected, got an array"
        );
    }
}
