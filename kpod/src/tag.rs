//! `kpod tag` and `kpod rmi`.

use crate::cli::{RmiArgs, TagArgs};
use anyhow::{bail, Result};
use kpod_core::storage::write::{names, StoreWriter};
use kpod_core::storage::{Image, Store, StoreOptions};

/// Runs `kpod tag`.
pub fn tag(store_opts: &StoreOptions, args: &TagArgs) -> Result<()> {
    let new: Vec<String> = args
        .names
        .iter()
        .map(|n| names::normalize(n))
        .collect::<Result<_, _>>()?;
    let store = Store::open(store_opts)?;
    let image = writable(store.resolve_image(&args.image)?, "tagged")?;
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
    let image = writable(store.resolve_image(reference)?, "removed")?;
    if image.names.len() > 1 && !force {
        // A name (not an ID) of an image that has other names: untag only.
        let Some(name) = image
            .names
            .iter()
            .find(|n| store_name_matches(n, reference))
        else {
            bail!(
                "image {} has several names ({}): remove them one by one, or all with --force",
                image.short_id(),
                image.names.join(", ")
            );
        };
        writer.untag(&image.id, name)?;
        println!("Untagged: {name}");
        return Ok(());
    }
    writer.remove_image(&image.id)?;
    for name in &image.names {
        println!("Untagged: {name}");
    }
    println!("Deleted: {}", image.id);
    Ok(())
}

/// `image`, unless it lives in a read-only additional image store, which
/// cannot be `what` ("tagged", "removed").
fn writable(image: Image, what: &str) -> Result<Image> {
    if image.read_only {
        bail!(
            "{} is in a read-only additional image store and cannot be {what}",
            image.describe()
        );
    }
    Ok(image)
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
