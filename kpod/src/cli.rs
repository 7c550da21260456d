//! The command line, as clap structures.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Push container images from local storage to anywhere.
#[derive(Debug, Parser)]
#[command(name = "kpod", version, about, propagate_version = true)]
pub struct Cli {
    /// Storage root directory (graphroot) of containers/storage.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Storage state directory (runroot) of containers/storage.
    #[arg(long, global = true, value_name = "DIR")]
    pub runroot: Option<PathBuf>,

    /// Storage driver: overlay or vfs.
    #[arg(long, global = true, value_name = "NAME")]
    pub storage_driver: Option<String>,

    /// Directory searched for transport plugins before all others.
    #[arg(long, global = true, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// Log messages at this level and above.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn)]
    pub log_level: LogLevel,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Progress details.
    Info,
    /// Debugging details.
    Debug,
    /// Everything.
    Trace,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Push an image from local storage to a destination.
    Push(Box<PushArgs>),
    /// List the transport plugins found, and those that failed to load.
    Plugins(PluginsArgs),
    /// List images in local storage.
    Images(ImagesArgs),
    /// Copy an image from a source into local storage.
    Pull(PullArgs),
    /// Load the images of a `docker save` archive into local storage.
    Load(LoadArgs),
    /// Add a name to an image in local storage.
    Tag(TagArgs),
    /// Remove images from local storage (or one name of an image with several).
    Rmi(RmiArgs),
}

/// `kpod plugins`.
#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// Internal: load this one plugin file and print what it is, as JSON (each
    /// plugin is confirmed in a process of its own).
    #[arg(long, hide = true, value_name = "FILE")]
    pub confirm: Option<PathBuf>,
}

/// How to reach a registry (shared by push and pull).
#[derive(Debug, Args, Default)]
pub struct AccessArgs {
    /// Registry credentials USER[:PASSWORD] (prompted for when missing on a terminal).
    #[arg(long, value_name = "USER[:PASS]")]
    pub creds: Option<String>,

    /// Directory with TLS material: CA certificates (*.crt), client certificate and key (*.cert, *.key).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Require HTTPS and verify certificates (--tls-verify=false allows plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,

    /// Authentication file (default: $REGISTRY_AUTH_FILE, then podman's and docker's locations).
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
}

/// `kpod pull` options.
#[derive(Debug, Args)]
#[command(
    after_help = "SOURCE is TRANSPORT:DETAILS, e.g. oci:/tmp/layout:tag, dir:/tmp/img, \
docker-archive:/tmp/img.tar[:name:tag|:@N], docker://registry.example.com/ns/img:tag. \
A name without transport means docker://NAME."
)]
pub struct PullArgs {
    /// Where to read the image: TRANSPORT:DETAILS.
    pub source: String,

    /// Name to give the image in local storage (short names go under localhost/).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Registry access.
    #[command(flatten)]
    pub access: AccessArgs,

    /// From a list of images for several platforms, pull this one
    /// (OS/ARCH[/VARIANT], default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,

    /// Retry a failed pull this many times.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retry: u32,
}

/// `kpod load` options.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive to read (`docker save` format, possibly gzip'd); standard input when absent or `-`.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Print only the loaded names (or IDs).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `kpod tag` options.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The local image: ID, ID prefix, name, name:tag or name@digest.
    pub image: String,
    /// New names (short names go under localhost/, a missing tag means latest).
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `kpod rmi` options.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images: ID, ID prefix, name, name:tag or name@digest.
    #[arg(required = true)]
    pub images: Vec<String>,

    /// Remove the image even when it has several names (all of them go).
    #[arg(short, long)]
    pub force: bool,
}

/// `kpod images` options.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Output format: table or json.
    #[arg(long, value_enum, default_value_t = ImagesFormat::Table)]
    pub format: ImagesFormat,
}

/// Output formats of `kpod images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    /// A table like `podman images`.
    Table,
    /// JSON for scripts.
    Json,
}

/// Layer compression formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionFormat {
    /// gzip (the default where compression is wanted).
    Gzip,
    /// zstd (OCI manifests only).
    Zstd,
}

/// Manifest formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    /// OCI image manifest.
    Oci,
    /// Docker image manifest, schema 2.
    V2s2,
}

/// `kpod push` options.
#[derive(Debug, Args)]
#[command(
    after_help = "DESTINATION is TRANSPORT:DETAILS, e.g. dir:/tmp/img, oci:/tmp/layout:tag, \
docker-archive:/tmp/img.tar:name:tag, docker://registry.example.com/ns/img:tag. \
Without DESTINATION the image goes to docker://IMAGE. Run `kpod plugins` for the installed transports."
)]
pub struct PushArgs {
    /// The local image: ID, ID prefix, name, name:tag or name@digest.
    pub image: String,

    /// Where to push: TRANSPORT:DETAILS (default docker://IMAGE).
    pub destination: Option<String>,

    /// Registry access.
    #[command(flatten)]
    pub access: AccessArgs,

    /// Do not compress layers.
    #[arg(short = 'D', long)]
    pub disable_compression: bool,

    /// Compression format for layers.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub compression_format: Option<CompressionFormat>,

    /// Compression level (gzip 1-9, zstd 1-22).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=22))]
    pub compression_level: Option<i32>,

    /// Manifest format to write, instead of the destination's preference.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ManifestFormat>,

    /// Print nothing while pushing.
    #[arg(short, long)]
    pub quiet: bool,

    /// Do not copy signatures of the source image.
    #[arg(long)]
    pub remove_signatures: bool,

    /// Signature policy file to check the source image against.
    #[arg(long, value_name = "FILE")]
    pub signature_policy: Option<PathBuf>,

    /// Sign the pushed image with this GPG key.
    #[arg(long, value_name = "KEY")]
    pub sign_by: Option<String>,

    /// Write the digest of the pushed manifest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,

    /// Retry a failed push this many times.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retry: u32,

    /// Layers copied at once (default: chosen for this machine).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
}
