use super::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// The entries of an archive: name -> (type, content or link target).
fn entries(archive: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut out = Vec::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        if kind == tar::EntryType::Symlink {
            data = entry.link_name_bytes().unwrap().into_owned();
        } else {
            entry.read_to_end(&mut data).unwrap();
        }
        out.push((name, kind, data));
    }
    out
}

fn content<'a>(entries: &'a [(String, tar::EntryType, Vec<u8>)], name: &str) -> &'a [u8] {
    &entries
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"))
        .2
}

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"created":"2024-01-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":[]}}"#;

#[test]
fn writes_the_docker_save_layout() {
    let (l1, l2) = (b"first layer".to_vec(), vec![7u8; 1000]);
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let mut w = ArchiveWriter::new(Vec::new());
    w.write_layer(&d1, l1.len() as u64, &mut &l1[..]).unwrap();
    w.write_layer(&d2, l2.len() as u64, &mut &l2[..]).unwrap();
    // The same layer again is not written twice.
    w.write_layer(&d1, l1.len() as u64, &mut &b""[..]).unwrap();
    let config = w.write_config(CONFIG).unwrap();
    assert_eq!(config, Digest::of(CONFIG));
    let tags = [
        Reference::parse("busybox").unwrap(),
        Reference::parse("localhost:5000/a/b:v1").unwrap(),
    ];
    w.add_image(&config, &[d1.clone(), d2.clone()], &tags)
        .unwrap();
    let archive = w.finish().unwrap();
    assert_eq!(archive.len() % 512, 0);
    let e = entries(&archive);

    assert_eq!(content(&e, &format!("{}.tar", d1.hex())), l1);
    assert_eq!(content(&e, &format!("{}.tar", d2.hex())), l2);
    assert_eq!(content(&e, &format!("{}.json", config.hex())), CONFIG);
    let manifest: Vec<ManifestItem> = serde_json::from_slice(content(&e, "manifest.json")).unwrap();
    assert_eq!(
        manifest,
        vec![ManifestItem {
            config: format!("{}.json", config.hex()),
            repo_tags: vec![
                "docker.io/library/busybox:latest".into(),
                "localhost:5000/a/b:v1".into()
            ],
            layers: vec![format!("{}.tar", d1.hex()), format!("{}.tar", d2.hex())],
        }]
    );
    let raw_manifest = String::from_utf8(content(&e, "manifest.json").to_vec()).unwrap();
    assert!(
        raw_manifest.starts_with(r#"[{"Config":""#),
        "{raw_manifest}"
    );

    // Legacy layers: two directories chained by parent, top one with config keys.
    let legacy: Vec<&(String, tar::EntryType, Vec<u8>)> =
        e.iter().filter(|(n, _, _)| n.ends_with("/json")).collect();
    assert_eq!(legacy.len(), 2);
    let base: BTreeMap<String, Value> = serde_json::from_slice(&legacy[0].2).unwrap();
    let top: BTreeMap<String, Value> = serde_json::from_slice(&legacy[1].2).unwrap();
    let base_id = base["id"].as_str().unwrap().to_string();
    let top_id = top["id"].as_str().unwrap().to_string();
    assert!(!base.contains_key("parent"));
    assert_eq!(top["parent"], Value::String(base_id.clone()));
    assert_eq!(top["os"], "linux");
    assert_eq!(top["container"], Value::Null);
    assert_eq!(content(&e, &format!("{base_id}/VERSION")), b"1.0");
    let link = e
        .iter()
        .find(|(n, _, _)| *n == format!("{top_id}/layer.tar"))
        .unwrap();
    assert_eq!(link.1, tar::EntryType::Symlink);
    assert_eq!(link.2, format!("../{}.tar", d2.hex()).into_bytes());

    let repositories: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(content(&e, "repositories")).unwrap();
    assert_eq!(repositories["docker.io/library/busybox"]["latest"], top_id);
    assert_eq!(repositories["localhost:5000/a/b"]["v1"], top_id);

    // Same input, same bytes.
    let mut again = ArchiveWriter::new(Vec::new());
    again
        .write_layer(&d1, l1.len() as u64, &mut &l1[..])
        .unwrap();
    again
        .write_layer(&d2, l2.len() as u64, &mut &l2[..])
        .unwrap();
    let c = again.write_config(CONFIG).unwrap();
    again.add_image(&c, &[d1, d2], &tags).unwrap();
    assert_eq!(again.finish().unwrap(), archive);
}

#[test]
fn untagged_images_have_an_empty_repositories_file() {
    let layer = b"x".to_vec();
    let d = Digest::of(&layer);
    let mut w = ArchiveWriter::new(Vec::new());
    w.write_layer(&d, 1, &mut &layer[..]).unwrap();
    let c = w.write_config(CONFIG).unwrap();
    w.add_image(&c, &[d], &[]).unwrap();
    let e = entries(&w.finish().unwrap());
    assert_eq!(content(&e, "repositories"), b"{}");
    assert!(String::from_utf8_lossy(content(&e, "manifest.json")).contains(r#""RepoTags":[]"#));
}

#[test]
fn data_that_does_not_match_is_an_error_and_stops_the_writer() {
    let d = Digest::of(b"announced");
    let mut w = ArchiveWriter::new(Vec::new());
    let err = w.write_layer(&d, 9, &mut &b"different"[..]).unwrap_err();
    assert_eq!(err.kind, kpod_plugin_sdk::ErrorKind::Integrity);
    assert!(
        w.write_config(CONFIG).is_err(),
        "the writer is unusable after a failure"
    );

    let mut w = ArchiveWriter::new(Vec::new());
    let err = w.write_layer(&d, 100, &mut &b"announced"[..]).unwrap_err();
    assert!(err.message.contains("expected 100 bytes"), "{err}");
    let mut w = ArchiveWriter::new(Vec::new());
    let err = w.write_layer(&d, 3, &mut &b"announced"[..]).unwrap_err();
    assert!(
        err.message.contains("more than the announced 3 bytes"),
        "{err}"
    );
}

#[test]
fn images_need_their_blobs() {
    let mut w = ArchiveWriter::new(Vec::new());
    let c = w.write_config(CONFIG).unwrap();
    let err = w.add_image(&c, &[Digest::of(b"missing")], &[]).unwrap_err();
    assert!(err.message.contains("was not written"), "{err}");
    let err = w.add_image(&Digest::of(b"nope"), &[], &[]).unwrap_err();
    assert!(err.message.contains("config"), "{err}");
}

#[test]
fn raw_values_are_compacted_like_go() {
    assert_eq!(
        go_compact("{ \"Cmd\" : [\"a && b\", \"<x>\"],\n \"s\": \"q\\\" \\\\ \" }"),
        r#"{"Cmd":["a \u0026\u0026 b","\u003cx\u003e"],"s":"q\" \\ "}"#
    );
    assert_eq!(go_compact("\"keep  spaces\""), "\"keep  spaces\"");
}

#[test]
fn headers_carry_go_style_numeric_fields() {
    let layer = b"x".to_vec();
    let d = Digest::of(&layer);
    let mut w = ArchiveWriter::new(Vec::new());
    w.write_layer(&d, 1, &mut &layer[..]).unwrap();
    let archive = w.out;
    let header = &archive[..512];
    assert_eq!(&header[108..116], b"0000000\0", "uid");
    assert_eq!(&header[116..124], b"0000000\0", "gid");
    assert_eq!(
        &header[154..156],
        b"\0 ",
        "checksum ends with NUL and space"
    );
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    assert_eq!(
        std::str::from_utf8(&header[148..154]).unwrap(),
        format!("{sum:06o}")
    );
}
