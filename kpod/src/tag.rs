//! `kpod tag` and `kpod rmi`.

use crate::cli::{RmiArgs, TagArgs};
use anyhow::{bail, Result};
use kpod_core::storage::write::{names, StoreWriter};
use kpod_core::storage::{Store, StoreOptions};

/// Runs `kpod tag`.
pub fn tag(store_opts: &StoreOptions, args: &TagArgs) -> Result<()> {
    let new: Vec<String> = args
        .names
        .iter()
        .map(|n| names::normalize(n))
        .collect::<Result<_, _>>()?;
    let store = Store::open(store_opts)?;
    let image = store.resolve_image(&args.image)?;
    if image.read_only {
        bail!(
            "{} is in a read-only additional image store and cannot be tagged",
            image.describe()
        );
    }
    let writer = StoreWriter::new(&store)?;
    for name in &new {
        writer.tag(&image.id, name)?;
    }
    Ok(())
}

/// Runs `kpod rmi`: as podman, a name of an image with several names only
/// loses that name (unless `--force`); otherwise the image goes, with the
/// layers no other image or container uses. Prints `Untagged:`/`Deleted:` lines.
pub fn rmi(store_opts: &StoreOptions, args: &RmiArgs) -> Result<()> {
    let store = Store::open(store_opts)?;
    let writer = StoreWriter::new(&store)?;
    let mut failed = None;
    for reference in &args.images {
        if let Err(err) = rmi_one(&store, &writer, reference, args.force) {
            if args.images.len() > 1 {
                eprintln!("Error: {err:#}");
            }
            failed = Some(err);
        }
    }
    match failed {
        Some(err) if args.images.len() == 1 => Err(err),
        Some(_) => bail!("some images could not be removed"),
        None => Ok(()),
    }
}

fn rmi_one(store: &Store, writer: &StoreWriter<'_>, reference: &str, force: bool) -> Result<()> {
    let image = store.resolve_image(reference)?;
    if image.read_only {
        bail!(
            "{} is in a read-only additional image store and cannot be removed",
            image.describe()
        );
    }
    // A name (not an ID) of an image that has other names: untag only.
    let by_name = image
        .names
        .iter()
        .find(|n| store_name_matches(n, reference))
        .cloned();
    if let (Some(name), false) = (&by_name, force) {
        if image.names.len() > 1 {
            writer.untag(&image.id, name)?;
            println!("Untagged: {name}");
            return Ok(());
        }
    }
    if by_name.is_none() && image.names.len() > 1 && !force {
        bail!(
            "image {} has several names ({}): remove them one by one, or all with --force",
            image.short_id(),
            image.names.join(", ")
        );
    }
    for name in &image.names {
        println!("Untagged: {name}");
    }
    writer.remove_image(&image.id)?;
    println!("Deleted: {}", image.id);
    Ok(())
}

/// Whether the user's `reference` names the stored `name` (as resolution
/// would: exact, or a short name that normalises to it).
fn store_name_matches(name: &str, reference: &str) -> bool {
    if name == reference {
        return true;
    }
    kpod_core::storage::resolve::Reference::parse(reference)
        .is_some_and(|r| r.candidates().iter().any(|c| c == name))
}
