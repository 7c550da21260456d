use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn r(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn the_most_specific_namespace_wins() {
    let dir = dir_with(&[
        (
            "a.yaml",
            "default-docker:\n  lookaside: https://sigs.example/default\n\
             docker:\n  reg.example.com:\n    lookaside: https://sigs.example/host\n    lookaside-staging: file:///staging/host\n",
        ),
        (
            "b.yaml",
            "docker:\n  reg.example.com/ns/app:\n    sigstore: https://sigs.example/old\n    sigstore-staging: file:///staging/old\n  \
             reg.example.com/ns:\n    use-sigstore-attachments: true\n  '*.example.org':\n    lookaside: file:///wild\n",
        ),
        ("ignored.yml", "default-docker: [not, parsed]\n"),
    ]);
    let conf = RegistriesD::load(dir.path()).unwrap();
    let top = |t: &str, w: bool| conf.configured_top_level(&r(t), w).map(str::to_string);
    assert_eq!(
        top("reg.example.com/ns/app:1", false).unwrap(),
        "https://sigs.example/old"
    );
    assert_eq!(
        top("reg.example.com/ns/app:1", true).unwrap(),
        "file:///staging/old"
    );
    // reg.example.com/ns has no lookaside setting: the host's applies.
    assert_eq!(
        top("reg.example.com/ns/other:1", false).unwrap(),
        "https://sigs.example/host"
    );
    assert_eq!(
        top("reg.example.com/ns/other:1", true).unwrap(),
        "file:///staging/host"
    );
    assert_eq!(top("a.b.example.org/x:1", true).unwrap(), "file:///wild");
    assert_eq!(
        top("quay.io/x:1", true).unwrap(),
        "https://sigs.example/default"
    );

    let base = conf
        .lookaside_base(&r("reg.example.com/ns/app:1"), false)
        .unwrap();
    let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
    assert_eq!(
        base.signature_url(&digest, 0).as_str(),
        format!("https://sigs.example/old/ns/app@sha256={HEX}/signature-1")
    );
    assert!(base.file_dir().is_none());
    let e = base
        .write_file_signatures(&digest, &[b"x".to_vec()])
        .unwrap_err();
    assert!(e.message.contains("Configure a lookaside-staging"), "{e}");
}

#[test]
fn duplicates_across_files_and_bad_yaml_are_errors() {
    let dir = dir_with(&[
        ("a.yaml", "docker:\n  quay.io:\n    lookaside: file:///a\n"),
        ("b.yaml", "docker:\n  quay.io:\n    lookaside: file:///b\n"),
    ]);
    let e = RegistriesD::load(dir.path()).unwrap_err();
    assert!(
        e.message
            .contains(r#""docker" namespace "quay.io" defined both in"#),
        "{e}"
    );
    let dir = dir_with(&[
        ("a.yaml", "default-docker:\n  lookaside: file:///a\n"),
        ("b.yaml", "default-docker:\n  lookaside: file:///b\n"),
    ]);
    let e = RegistriesD::load(dir.path()).unwrap_err();
    assert!(
        e.message.contains(r#""default-docker" defined both in"#),
        "{e}"
    );
    let dir = dir_with(&[("a.yaml", "docker: [1, 2\n")]);
    let e = RegistriesD::load(dir.path()).unwrap_err();
    assert!(e.message.starts_with("parsing "), "{e}");
    assert!(!e.message.contains('\n'), "{e}");
    let none = RegistriesD::load(&dir.path().join("missing")).unwrap();
    assert_eq!(none, RegistriesD::default());
    let empty = dir_with(&[("a.yaml", "")]);
    assert_eq!(
        RegistriesD::load(empty.path()).unwrap(),
        RegistriesD::default()
    );
}

#[test]
fn file_lookaside_write_then_read() {
    let store = tempfile::tempdir().unwrap();
    let conf_dir = dir_with(&[(
        "l.yaml",
        &format!(
            "default-docker:\n  lookaside: file://{}\n",
            store.path().display()
        ),
    )]);
    let conf = RegistriesD::load(conf_dir.path()).unwrap();
    let reference = r("localhost:5000/team/app:1");
    let base = conf.lookaside_base(&reference, true).unwrap();
    assert_eq!(base.file_dir().unwrap(), store.path().join("team/app"));
    let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
    let three = vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
    base.write_file_signatures(&digest, &three).unwrap();
    assert_eq!(
        std::fs::read(
            store
                .path()
                .join(format!("team/app@sha256={HEX}/signature-2"))
        )
        .unwrap(),
        b"two"
    );
    let read = conf.lookaside_base(&reference, false).unwrap();
    assert_eq!(read.read_file_signatures(&digest).unwrap(), three);
    // Fewer signatures replace the old set; stale ones are removed.
    base.write_file_signatures(&digest, &three[..1]).unwrap();
    assert_eq!(
        read.read_file_signatures(&digest).unwrap(),
        three[..1].to_vec()
    );
    let other = Digest::of(b"other");
    assert!(read.read_file_signatures(&other).unwrap().is_empty());
}
