//! A [`FileSource`] in memory, for the tests.

use crate::{Entry, FileSource};
use std::collections::HashMap;
use std::io;

/// File contents by name.
pub(crate) struct Memory(pub HashMap<Vec<u8>, Vec<u8>>);

impl FileSource for Memory {
    type File = io::Cursor<Vec<u8>>;

    fn open(&mut self, name: &[u8]) -> Result<Self::File, String> {
        self.0
            .get(name)
            .cloned()
            .map(io::Cursor::new)
            .ok_or_else(|| format!("no file {:?}", Entry::display_name(name)))
    }
}
