use super::*;
use crate::host::PluginHandle;

/// Claims `one` and `two`; every entry point says which transport it saw, so
/// a test can tell a call that reached the plugin from one the SDK refused.
struct Two;

impl Plugin for Two {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-two", "0")
            .transport("one", "first")
            .transport("two", "second")
    }
    fn parse_reference(transport: &str, reference: &str) -> Result<String, PluginError> {
        Ok(format!("{transport}:{reference}"))
    }
    fn parse_source_reference(transport: &str, reference: &str) -> Result<String, PluginError> {
        Ok(format!("source {transport}:{reference}"))
    }
    fn open_destination(
        transport: &str,
        _: &str,
        _: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        Err(PluginError::not_found(format!("destination {transport}")))
    }
    fn open_source(
        transport: &str,
        _: &str,
        _: &PushOptions,
    ) -> Result<Box<dyn Source>, PluginError> {
        Err(PluginError::not_found(format!("source {transport}")))
    }
}

/// Claims nothing at all.
struct Nothing;

impl Plugin for Nothing {
    fn info() -> PluginMeta {
        PluginMeta::new("kpod-nothing", "0")
    }
    fn parse_reference(_: &str, _: &str) -> Result<String, PluginError> {
        panic!("the SDK let an unclaimed transport through")
    }
    fn open_destination(
        _: &str,
        _: &str,
        _: &PushOptions,
    ) -> Result<Box<dyn Destination>, PluginError> {
        panic!("the SDK let an unclaimed transport through")
    }
}

/// The errors of all four entry points of `handle` for `transport`.
fn answers(handle: &PluginHandle, transport: &str) -> Vec<Result<String, PluginError>> {
    let options = PushOptions::default();
    vec![
        handle.parse_reference(transport, "x"),
        handle.parse_source_reference(transport, "x"),
        handle
            .open_destination(transport, "x", &options)
            .map(|_| "opened".to_string()),
        handle
            .open_source(transport, "x", &options)
            .map(|_| "opened".to_string()),
    ]
}

#[test]
fn a_transport_the_plugin_does_not_claim_is_refused_by_every_entry_point() {
    let handle = PluginHandle::new(root_module::<Two>());
    for wrong in ["three", "", "ONE", "one:"] {
        for answer in answers(&handle, wrong) {
            let err = answer.expect_err(wrong);
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
            assert_eq!(
                err.message.as_str(),
                format!(
                    "the kpod-two plugin does not handle the {wrong:?} transport (it handles: one, two)"
                )
            );
        }
    }
    let nothing = PluginHandle::new(root_module::<Nothing>());
    for answer in answers(&nothing, "one") {
        let err = answer.expect_err("nothing is claimed");
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
        assert!(err.message.ends_with("(it handles: none)"), "{err}");
    }
}

#[test]
fn a_claimed_transport_reaches_the_plugin() {
    let handle = PluginHandle::new(root_module::<Two>());
    for transport in ["one", "two"] {
        let [parsed, source, dest, opened]: [Result<String, PluginError>; 4] =
            answers(&handle, transport).try_into().unwrap();
        assert_eq!(parsed.unwrap(), format!("{transport}:x"));
        assert_eq!(source.unwrap(), format!("source {transport}:x"));
        assert_eq!(
            dest.unwrap_err(),
            PluginError::not_found(format!("destination {transport}"))
        );
        assert_eq!(
            opened.unwrap_err(),
            PluginError::not_found(format!("source {transport}"))
        );
    }
}
