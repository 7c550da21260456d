//! `kpod images`.

use crate::cli::{ImagesArgs, ImagesFormat};
use anyhow::Result;
use kpod_core::storage::{image_rows, images_json, images_table, Store};

/// Prints the images of `store`.
pub fn run(store: &Store, args: &ImagesArgs) -> Result<()> {
    match args.format {
        ImagesFormat::Table => print!("{}", images_table(&image_rows(store)?)),
        ImagesFormat::Json => println!("{}", images_json(store)?),
    }
    Ok(())
}
