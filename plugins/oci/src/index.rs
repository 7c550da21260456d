//! `index.json` of an OCI layout, edited without disturbing what kpod does not
//! change: every JSON object is kept as an ordered list of keys and raw
//! values, so unknown fields and their order survive byte for byte.

use kpod_plugin_sdk::{media_types, PluginError};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::{to_raw_value, RawValue};
use std::fmt;

/// The annotation that names an image in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A JSON object whose members keep their order and raw text.
#[derive(Debug, Clone, Default)]
pub struct OrderedObject(pub Vec<(String, Box<RawValue>)>);

impl OrderedObject {
    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// `key`'s value as a string, when it is one.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    /// Sets `key` to `value`, in place when present, else at the end.
    pub fn set(&mut self, key: &str, value: &impl Serialize) -> Result<(), PluginError> {
        let raw = to_raw_value(value)
            .map_err(|e| PluginError::other(format!("oci: encoding {key}: {e}")))?;
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = raw,
            None => self.0.push((key.to_string(), raw)),
        }
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }
}

impl Serialize for OrderedObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((key, value)) = access.next_entry::<String, Box<RawValue>>()? {
                    // A repeated key: the last one wins, as most readers do.
                    members.retain(|(k, _)| *k != key);
                    members.push((key, value));
                }
                Ok(OrderedObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A manifest to add to an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewManifest {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The name (`org.opencontainers.image.ref.name`) to give it, if any.
    pub tag: Option<String>,
}

/// An image index, as read from `index.json`.
#[derive(Debug, Clone)]
pub struct Index {
    top: OrderedObject,
    manifests: Vec<OrderedObject>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        let mut top = OrderedObject::default();
        // Values that always serialise.
        let _ = top.set("schemaVersion", &2);
        let _ = top.set("mediaType", &media_types::OCI_INDEX);
        Index {
            top,
            manifests: Vec::new(),
        }
    }

    /// Parses `index.json`; `what` names the file in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, PluginError> {
        let invalid = |why: String| PluginError::invalid_input(format!("oci: {what}: {why}"));
        let top: OrderedObject = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a JSON object: {e}")))?;
        let manifests = match top.get("manifests") {
            None => Vec::new(),
            Some(raw) if raw.get() == "null" => Vec::new(),
            Some(raw) => serde_json::from_str::<Vec<OrderedObject>>(raw.get())
                .map_err(|e| invalid(format!("\"manifests\" is not a list of objects: {e}")))?,
        };
        Ok(Index { top, manifests })
    }

    /// The manifest entries.
    pub fn manifests(&self) -> &[OrderedObject] {
        &self.manifests
    }

    /// The index as JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PluginError> {
        let mut top = self.top.clone();
        top.set("manifests", &self.manifests)?;
        serde_json::to_vec(&top)
            .map_err(|e| PluginError::other(format!("oci: encoding index.json: {e}")))
    }

    /// Adds `new` as containers/image does: its name is taken away from any
    /// other entry that carries it; an unnamed entry with the same digest is
    /// reused (keeping its other fields); otherwise a new entry is appended.
    pub fn add(&mut self, new: &NewManifest) -> Result<(), PluginError> {
        if let Some(tag) = &new.tag {
            for entry in &mut self.manifests {
                if ref_name(entry).as_deref() == Some(tag.as_str()) {
                    set_ref_name(entry, None)?;
                }
            }
        }
        if let Some(entry) = self.manifests.iter_mut().find(|e| {
            e.get_str("digest").as_deref() == Some(new.digest.as_str()) && ref_name(e).is_none()
        }) {
            if let Some(tag) = &new.tag {
                set_ref_name(entry, Some(tag))?;
            }
            return Ok(());
        }
        let mut entry = OrderedObject::default();
        entry.set("mediaType", &new.media_type)?;
        entry.set("digest", &new.digest)?;
        entry.set("size", &new.size)?;
        if let Some(tag) = &new.tag {
            set_ref_name(&mut entry, Some(tag))?;
        }
        self.manifests.push(entry);
        Ok(())
    }
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

/// The entry's `org.opencontainers.image.ref.name`, when set and not empty.
pub fn ref_name(entry: &OrderedObject) -> Option<String> {
    let annotations: OrderedObject = serde_json::from_str(entry.get("annotations")?.get()).ok()?;
    annotations.get_str(REF_NAME).filter(|n| !n.is_empty())
}

/// Sets or (with `None`) removes the entry's ref.name annotation, keeping its
/// other annotations; an annotation map left empty is removed.
fn set_ref_name(entry: &mut OrderedObject, name: Option<&str>) -> Result<(), PluginError> {
    let mut annotations: OrderedObject = entry
        .get("annotations")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    match name {
        Some(name) => annotations.set(REF_NAME, &name)?,
        None => annotations.remove(REF_NAME),
    }
    if annotations.0.is_empty() {
        entry.remove("annotations");
    } else {
        entry.set("annotations", &annotations)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpod_plugin_sdk::Digest;

    fn new(digest: char, tag: Option<&str>) -> NewManifest {
        NewManifest {
            media_type: media_types::OCI_MANIFEST.to_string(),
            digest: Digest::from_hex(&digest.to_string().repeat(64))
                .unwrap()
                .to_string(),
            size: 10,
            tag: tag.map(str::to_string),
        }
    }

    fn tags(index: &Index) -> Vec<(String, Option<String>)> {
        index
            .manifests()
            .iter()
            .map(|e| (e.get_str("digest").unwrap()[7..8].to_string(), ref_name(e)))
            .collect()
    }

    #[test]
    fn unknown_fields_and_order_survive() {
        let text = r#"{"schemaVersion":2,"zeta":{"b":1,"a":[1, 2]},"manifests":[{"size":5,"digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","mediaType":"x","platform":{"os":"linux","architecture":"amd64"},"annotations":{"z":"1","org.opencontainers.image.ref.name":"v1"}}],"annotations":{"k":"v"}}"#;
        let mut index = Index::parse(text.as_bytes(), "index.json").unwrap();
        assert_eq!(String::from_utf8(index.to_bytes().unwrap()).unwrap(), text);
        index.add(&new('b', Some("v1"))).unwrap();
        let out = String::from_utf8(index.to_bytes().unwrap()).unwrap();
        assert!(out.starts_with(r#"{"schemaVersion":2,"zeta":{"b":1,"a":[1, 2]},"manifests":[{"size":5,"digest":"sha256:aaaa"#), "{out}");
        assert!(
            out.contains(
                r#""platform":{"os":"linux","architecture":"amd64"},"annotations":{"z":"1"}}"#
            ),
            "{out}"
        );
        assert!(out.ends_with(r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":10,"annotations":{"org.opencontainers.image.ref.name":"v1"}}],"annotations":{"k":"v"}}"#), "{out}");
    }

    #[test]
    fn the_tag_moves_and_other_images_stay() {
        let mut index = Index::new();
        index.add(&new('a', Some("v1"))).unwrap();
        index.add(&new('b', Some("v2"))).unwrap();
        index.add(&new('c', Some("v1"))).unwrap();
        assert_eq!(
            tags(&index),
            vec![
                ("a".into(), None),
                ("b".into(), Some("v2".into())),
                ("c".into(), Some("v1".into()))
            ]
        );
        // Re-tagging an untagged entry reuses it.
        index.add(&new('a', Some("v3"))).unwrap();
        assert_eq!(index.manifests().len(), 3);
        assert_eq!(tags(&index)[0], ("a".into(), Some("v3".into())));
        // The same image under the same tag again: no duplicate.
        index.add(&new('c', Some("v1"))).unwrap();
        assert_eq!(index.manifests().len(), 3);
        // An untagged push of an image already listed untagged: no duplicate.
        index.add(&new('d', None)).unwrap();
        index.add(&new('d', None)).unwrap();
        assert_eq!(index.manifests().len(), 4);
        // A manifest listed under another tag gets its own entry.
        index.add(&new('b', Some("v4"))).unwrap();
        assert_eq!(index.manifests().len(), 5);
        let round = Index::parse(&index.to_bytes().unwrap(), "x").unwrap();
        assert_eq!(tags(&round), tags(&index));
    }

    #[test]
    fn broken_index_files_are_reported() {
        for bad in [
            &b"[]"[..],
            b"{",
            b"{\"manifests\":3}",
            b"{\"manifests\":[1]}",
        ] {
            let err = Index::parse(bad, "/x/index.json").unwrap_err();
            assert!(err.message.starts_with("oci: /x/index.json: "), "{err}");
        }
        assert!(Index::parse(b"{\"schemaVersion\":2}", "x")
            .unwrap()
            .manifests()
            .is_empty());
    }
}
