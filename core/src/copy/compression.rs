//! Choosing the compression layers are sent with, from the options and what
//! the destination wants done to layers.

use super::options::CopyOptions;
use crate::compress::CompressionFormat;
use crate::{Error, Result};
use kpod_plugin_sdk::{CompressionAlgorithm, LayerCompression};

/// How this copy compresses layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompressionPlan {
    /// The compression layers are sent with; `None` for uncompressed.
    pub target: Option<CompressionFormat>,
    /// The level for `target` (0 when uncompressed).
    pub level: i32,
    /// Compressions a blob the destination already has may have to be reused.
    pub acceptable: Vec<CompressionAlgorithm>,
}

impl CompressionPlan {
    /// The algorithm of `target`.
    pub fn algorithm(&self) -> CompressionAlgorithm {
        self.target
            .map(CompressionFormat::algorithm)
            .unwrap_or(CompressionAlgorithm::None)
    }
}

/// Decides layer compression: `--disable-compression` sends tars; a destination
/// that compresses gets `--compression-format` (gzip by default); one that keeps
/// layers gets the asked format, else the tars (or a gzip blob it already has);
/// one that takes uncompressed layers gets tars whatever was asked.
pub(crate) fn choose_compression(
    opts: &CopyOptions,
    desired: LayerCompression,
) -> Result<CompressionPlan> {
    if opts.disable_compression && opts.compression.is_some() {
        return Err(Error::InvalidInput(
            "--disable-compression and --compression-format cannot be used together".into(),
        ));
    }
    let target = if opts.disable_compression {
        None
    } else {
        match desired {
            LayerCompression::Compress => Some(opts.compression.unwrap_or(CompressionFormat::Gzip)),
            LayerCompression::Keep => opts.compression,
            LayerCompression::Decompress => {
                if let Some(format) = opts.compression {
                    log::warn!(
                        "the destination takes uncompressed layers: ignoring --compression-format {format}"
                    );
                }
                None
            }
        }
    };
    let level = match target {
        Some(format) => format.level(opts.compression_level)?,
        None => 0,
    };
    let acceptable = match target {
        None if desired == LayerCompression::Keep && !opts.disable_compression => {
            vec![CompressionAlgorithm::None, CompressionAlgorithm::Gzip]
        }
        None => vec![CompressionAlgorithm::None],
        Some(format) => vec![format.algorithm()],
    };
    Ok(CompressionPlan {
        target,
        level,
        acceptable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(opts: &CopyOptions, desired: LayerCompression) -> CompressionPlan {
        choose_compression(opts, desired).unwrap()
    }

    #[test]
    fn a_compressing_destination_gets_gzip_unless_asked_otherwise() {
        let p = plan(&CopyOptions::default(), LayerCompression::Compress);
        assert_eq!(p.target, Some(CompressionFormat::Gzip));
        assert_eq!(p.acceptable, [CompressionAlgorithm::Gzip]);
        assert_eq!(p.algorithm(), CompressionAlgorithm::Gzip);
        let zstd = CopyOptions {
            compression: Some(CompressionFormat::Zstd),
            compression_level: Some(7),
            ..Default::default()
        };
        let p = plan(&zstd, LayerCompression::Compress);
        assert_eq!(p.target, Some(CompressionFormat::Zstd));
        assert_eq!(p.level, 7);
        assert_eq!(p.acceptable, [CompressionAlgorithm::Zstd]);
    }

    #[test]
    fn a_keeping_destination_takes_tars_or_a_gzip_it_has() {
        let p = plan(&CopyOptions::default(), LayerCompression::Keep);
        assert_eq!(p.target, None);
        assert_eq!(p.level, 0);
        assert_eq!(
            p.acceptable,
            [CompressionAlgorithm::None, CompressionAlgorithm::Gzip]
        );
        let gzip = CopyOptions {
            compression: Some(CompressionFormat::Gzip),
            ..Default::default()
        };
        assert_eq!(
            plan(&gzip, LayerCompression::Keep).target,
            Some(CompressionFormat::Gzip)
        );
    }

    #[test]
    fn uncompressed_wins_where_asked_or_needed() {
        let zstd = CopyOptions {
            compression: Some(CompressionFormat::Zstd),
            ..Default::default()
        };
        let p = plan(&zstd, LayerCompression::Decompress);
        assert_eq!(p.target, None);
        assert_eq!(p.acceptable, [CompressionAlgorithm::None]);
        let disabled = CopyOptions {
            disable_compression: true,
            ..Default::default()
        };
        for desired in [LayerCompression::Compress, LayerCompression::Keep] {
            let p = plan(&disabled, desired);
            assert_eq!(p.target, None);
            assert_eq!(p.acceptable, [CompressionAlgorithm::None]);
        }
    }

    #[test]
    fn contradictory_or_out_of_range_options_are_refused() {
        let both = CopyOptions {
            disable_compression: true,
            compression: Some(CompressionFormat::Gzip),
            ..Default::default()
        };
        let err = choose_compression(&both, LayerCompression::Compress).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        let level = CopyOptions {
            compression_level: Some(42),
            ..Default::default()
        };
        assert!(choose_compression(&level, LayerCompression::Compress).is_err());
        // The level of a format that is not used is not checked.
        assert!(choose_compression(&level, LayerCompression::Decompress).is_ok());
    }
}
