//! Reading an image from a `docker save` archive (`kpod pull
//! docker-archive:PATH[:NAME:TAG|:@N]`, `kpod load`): the archive library's
//! [`ArchiveImage`] does the reading; this names the archive in messages as
//! `docker-archive:PATH`.

use crate::reference::ArchiveSourceReference;
use kpod_docker_archive::ArchiveImage;
use kpod_plugin_sdk::PluginError;

/// An image source over one image of a `docker save` archive.
pub type DockerArchiveSource = ArchiveImage;

/// Opens the image `reference` names: indexes the archive, chooses the
/// image, reads its config and digests every layer file (streaming).
pub fn open(reference: &ArchiveSourceReference) -> Result<DockerArchiveSource, PluginError> {
    let shown = format!("docker-archive:{}", reference.path.display());
    ArchiveImage::open(&reference.path, &reference.selector, &shown)
}
