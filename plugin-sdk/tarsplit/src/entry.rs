//! One tar-split entry, and the checksum that stands for a file's content.

/// The CRC-64 tar-split stores for file content (slice-by-16 tables: about
/// 2 GB/s here, four times the default single table).
pub static CRC64: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_GO_ISO);

/// One tar-split entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Raw tar bytes to emit as they are.
    Segment(Vec<u8>),
    /// A file's content, to be read from the layer's tree.
    File {
        /// The entry's name in the tar (raw bytes).
        name: Vec<u8>,
        /// Content length.
        size: u64,
        /// CRC-64 of the content, when recorded (files of size 0 have none).
        crc: Option<u64>,
    },
}

impl Entry {
    /// The file name as text (lossy for names that are not UTF-8).
    pub fn display_name(name: &[u8]) -> String {
        String::from_utf8_lossy(name).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_go() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO))
        assert_eq!(CRC64.checksum(b"123456789"), 0xb90956c775a41001);
    }
}
